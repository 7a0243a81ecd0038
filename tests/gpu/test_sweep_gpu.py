"""Two trials share one GPU (0.5 each) and both train on it (skipped without CUDA)."""

from __future__ import annotations

import json

import pandas as pd

from search_spaces import load_space
from sweeps import SweepConfig, run_sweep


def test_two_trials_share_one_gpu(ray_local, make_space, tmp_path):
    assert ray_local.get("GPU", 0) >= 1
    space = load_space(make_space("shared", samples=2, epochs=2, train_limit=2000))
    outcome = run_sweep(
        SweepConfig(
            name="shared",
            space=space,
            gpus_per_trial=0.5,
            storage=str(tmp_path / "results"),
            data="mnist-5k",
        )
    )
    trials = outcome.trials
    assert len(trials) == 2 and set(trials["device"]) == {"cuda"}
    assert trials["status"].isin(["completed", "early_stopped"]).all()
    folder = tmp_path / "results" / "shared"
    record = json.loads((folder / "sweep.json").read_text())
    assert record["resources"]["gpus_per_trial"] == 0.5
    assert record["search"]["max_concurrent"] == 2  # both fit on the one GPU at once
    epochs = pd.read_parquet(folder / "epochs.parquet")
    assert (epochs["images_per_second"] > 0).all() and epochs["val_loss"].notna().all()


def test_two_trials_train_in_one_process_with_streams(ray_local, make_space, tmp_path):
    """--streams: the GPU's Trainer trains both trials, each on a stream of its own, and the
    trials report, checkpoint and stop as any trial does (tests/sweeps/test_trainer.py)."""
    space = load_space(make_space("streams", samples=2, epochs=2, train_limit=2000))
    outcome = run_sweep(
        SweepConfig(
            name="streams",
            space=space,
            gpus_per_trial=0.5,
            storage=str(tmp_path / "results"),
            data="mnist-5k",
            streams=True,
        )
    )
    trials = outcome.trials
    assert len(trials) == 2 and set(trials["device"]) == {"cuda"}
    assert trials["status"].isin(["completed", "early_stopped"]).all()
    epochs = pd.read_parquet(tmp_path / "results" / "streams" / "epochs.parquet")
    assert (epochs["images_per_second"] > 0).all() and epochs["val_loss"].notna().all()
    assert outcome.best() is not None
