"""Two trials share one GPU (0.5 each) and both train on it, as two processes; `auto` in a Ray
this process joined takes turns, unless an MPS daemon already serves the machine (skipped
without CUDA)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from search_spaces import load_space
from sweeps import SweepConfig, run_sweep
from sweeps.mps import running_daemon
from tests.conftest import RAY_NODE_IP


@pytest.mark.parametrize("sharing", ["time-sliced", "auto"])
def test_two_trials_share_one_gpu(ray_local, make_space, tmp_path, sharing):
    chosen = "mps" if sharing == "auto" and running_daemon() else "time-sliced"
    assert ray_local.get("GPU", 0) >= 1
    space = load_space(make_space("shared", samples=2, epochs=2, train_limit=2000))
    outcome = run_sweep(
        SweepConfig(
            name="shared",
            space=space,
            gpus_per_trial=0.5,
            storage=str(tmp_path / "results"),
            data="mnist-5k",
            sharing=sharing,
        )
    )
    trials = outcome.trials
    assert len(trials) == 2 and set(trials["device"]) == {"cuda"}
    assert trials["status"].isin(["completed", "early_stopped"]).all()
    assert outcome.best() is not None
    folder = tmp_path / "results" / "shared"
    record = json.loads((folder / "sweep.json").read_text())
    assert record["resources"]["gpus_per_trial"] == 0.5
    assert record["resources"]["sharing"] == chosen
    assert record["resources"]["sharing_by_node"] == {RAY_NODE_IP: chosen}  # as trials saw it
    assert record["search"]["max_concurrent"] == 2  # both fit on the one GPU at once
    epochs = pd.read_parquet(folder / "epochs.parquet")
    assert (epochs["images_per_second"] > 0).all() and epochs["val_loss"].notna().all()
