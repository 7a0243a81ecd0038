"""sweep.json, atomic writes and checkpoint files, on real files."""

import json
import os

import pytest
import torch

from results_folder import (
    load_checkpoint,
    read_sweep_json,
    save_checkpoint,
    searched_params,
    storage,
    write_sweep_json,
)
from vae_core import CheckpointError, ConvVAE, ResultsError
from vae_core.checkpoint import FORMAT


def test_sweep_json_round_trip_and_searched_parameters(tmp_path):
    record = {"name": "s", "space": {"params": {"lr": {}, "z_dim": {}, "batch_size": {}}}}
    write_sweep_json(str(tmp_path), record)
    assert read_sweep_json(str(tmp_path)) == record
    assert searched_params(record) == {"lr": "float", "z_dim": "int", "batch_size": "int"}


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "is not valid JSON"), ("[1, 2]", "must hold a JSON object")],
)
def test_a_bad_sweep_json_is_one_clear_error(tmp_path, text, message):
    (tmp_path / "sweep.json").write_text(text)
    with pytest.raises(ResultsError, match=message):
        read_sweep_json(str(tmp_path))


def test_a_missing_sweep_json_names_the_file(tmp_path):
    with pytest.raises(ResultsError, match=r"sweep\.json does not exist"):
        read_sweep_json(str(tmp_path))


@pytest.mark.parametrize(
    ("record", "message"),
    [({}, r"has no search space"), ({"space": {"params": {"depth": {}}}}, "unknown.*depth")],
)
def test_searched_parameters_need_a_known_space(record, message):
    with pytest.raises(ResultsError, match=message):
        searched_params(record)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "trials.parquet")
    storage.write_text("old", path)

    def fail(out):
        out.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        storage.write_bytes(path, fail)
    assert os.listdir(tmp_path) == ["trials.parquet"]
    assert storage.read_text(path) == "old"


def test_a_uri_path_reads_and_writes_like_a_local_one(tmp_path):
    uri = f"file://{tmp_path}/folder/x.json"
    storage.write_text(json.dumps({"a": 1}), uri)
    assert json.loads(storage.read_text(uri)) == {"a": 1}
    assert (
        storage.resolve_path(f"file://{tmp_path}", "folder/x.json")
        == f"file://{tmp_path}/folder/x.json"
    )
    assert storage.resolve_path("/r", "/abs/x") == "/abs/x"
    with storage.local_copy(uri) as local:
        assert local != str(tmp_path / "folder" / "x.json") and os.path.isfile(local)


def state():
    return {
        "format": FORMAT,
        "model": ConvVAE(2, 16).state_dict(),
        "optimizer": {},
        "epoch": 3,
        "rng": {},
        "config": {"z_dim": 2, "fc_size": 16},
    }


def test_checkpoint_round_trip_through_a_uri(tmp_path):
    saved = state()
    uri = f"file://{tmp_path}/trial/checkpoint.pt"
    assert save_checkpoint(saved, uri) == uri
    loaded = load_checkpoint(uri)
    assert loaded["epoch"] == 3
    assert all(torch.equal(loaded["model"][k], v) for k, v in saved["model"].items())
    assert len(saved["model"]) > 0 and os.listdir(tmp_path / "trial") == ["checkpoint.pt"]


def test_a_missing_checkpoint_uri_is_one_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(f"file://{tmp_path}/nothing.pt")
