import pytest
import torch

from results_folder import load_checkpoint, save_checkpoint
from vae_core import CheckpointError, ConvVAE
from vae_core.checkpoint import FORMAT


def state():
    model = ConvVAE(2, 16)
    return {
        "format": FORMAT,
        "model": model.state_dict(),
        "optimizer": {},
        "epoch": 1,
        "rng": {},
        "config": {"z_dim": 2, "fc_size": 16},
    }


def test_round_trip(tmp_path):
    saved = state()
    path = save_checkpoint(saved, tmp_path / "a" / "model.pt")
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 1
    for name, tensor in saved["model"].items():
        assert torch.equal(loaded["model"][name], tensor)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary left


def test_truncated_checkpoint_is_one_clear_error(tmp_path):
    path = save_checkpoint(state(), tmp_path / "model.pt")
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_foreign_and_missing_checkpoints(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a vae-sweep checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "text.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_pickled_code_is_refused(tmp_path):
    # weights_only=True: a checkpoint that would run code on load is rejected, not executed.
    torch.save({"format": FORMAT, "payload": ConvVAE(2, 16)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt")
