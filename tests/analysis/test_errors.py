"""Each bad input is one clear error naming the file, and leaves no analysis folder behind."""

import math

import pandas as pd
import pytest
import torch

from analysis import analyze_results
from vae_core.errors import CheckpointError, ConfigError, ResultsError


def analyze(folder, **kwargs):
    analyze_results(folder, iwae_k=2, tsne_points=200, progress=False, **kwargs)


def best_checkpoint(folder):
    trials = pd.read_parquet(folder / "trials.parquet")
    ok = trials[trials["status"].isin(["completed", "early_stopped"])]
    return folder / ok.loc[ok["best_val_loss"].idxmin(), "checkpoint_path"]


def assert_fails(folder, error, pattern, **kwargs):
    with pytest.raises(error, match=pattern) as info:
        analyze(folder, **kwargs)
    assert "\n" not in str(info.value)
    assert not (folder / "analysis").exists()


def test_truncated_trials_table(sweep_copy):
    path = sweep_copy / "trials.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert_fails(sweep_copy, ResultsError, r"trials\.parquet is not a readable Parquet table")


def test_missing_epochs_table(sweep_copy):
    (sweep_copy / "epochs.parquet").unlink()
    assert_fails(sweep_copy, ResultsError, r"epochs\.parquet does not exist")


def test_table_without_a_documented_column(sweep_copy):
    path = sweep_copy / "trials.parquet"
    pd.read_parquet(path).drop(columns=["best_val_loss"]).to_parquet(path)
    assert_fails(sweep_copy, ResultsError, r"trials\.parquet lacks the columns best_val_loss")


def test_sweep_json_that_is_not_json(sweep_copy):
    (sweep_copy / "sweep.json").write_text("{not json")
    assert_fails(sweep_copy, ResultsError, r"sweep\.json is not valid JSON")


def test_no_finished_trial(sweep_copy):
    path = sweep_copy / "trials.parquet"
    pd.read_parquet(path).assign(status="diverged", best_val_loss=math.nan).to_parquet(path)
    assert_fails(sweep_copy, ResultsError, r"trials\.parquet has no finished trial")


def test_missing_checkpoint(sweep_copy):
    checkpoint = best_checkpoint(sweep_copy)
    checkpoint.unlink()
    assert_fails(sweep_copy, CheckpointError, f"checkpoint {checkpoint} does not exist")


def test_truncated_checkpoint(sweep_copy):
    checkpoint = best_checkpoint(sweep_copy)
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    assert_fails(sweep_copy, CheckpointError, f"checkpoint {checkpoint} is corrupt or truncated")


def test_checkpoint_of_another_model(sweep_copy):
    checkpoint = best_checkpoint(sweep_copy)
    state = torch.load(checkpoint, weights_only=True)
    state["model"] = {k: v[..., :1] if v.ndim else v for k, v in state["model"].items()}
    torch.save(state, checkpoint)
    assert_fails(sweep_copy, CheckpointError, f"checkpoint {checkpoint} does not match ConvVAE")


def test_checkpoint_with_nan_weights(sweep_copy):
    checkpoint = best_checkpoint(sweep_copy)
    state = torch.load(checkpoint, weights_only=True)
    state["model"]["fc_logvar.weight"][0, 0] = math.nan
    torch.save(state, checkpoint)
    assert_fails(
        sweep_copy, CheckpointError, rf"checkpoint {checkpoint} has non-finite weights \(fc_logvar"
    )


def test_checkpoint_that_disagrees_with_the_table(sweep_copy):
    path = sweep_copy / "trials.parquet"
    trials = pd.read_parquet(path)
    trials["z_dim"] += 1
    trials.to_parquet(path)
    assert_fails(sweep_copy, CheckpointError, r"has z_dim=\d+ but trials\.parquet says")


@pytest.mark.parametrize("option, value", [("iwae_k", 0), ("tsne_points", 5)])
def test_bad_option_values(sweep_copy, option, value):
    with pytest.raises(ConfigError, match=f"{option} must be .* but got {value}"):
        analyze_results(sweep_copy, **{option: value})


def test_a_failed_analysis_keeps_the_previous_one(sweep_copy):
    earlier = sweep_copy / "analysis"
    earlier.mkdir()
    (earlier / "best_trial.json").write_text("{}")
    (sweep_copy / "epochs.parquet").unlink()
    with pytest.raises(ResultsError):
        analyze(sweep_copy)
    assert (earlier / "best_trial.json").read_text() == "{}"
