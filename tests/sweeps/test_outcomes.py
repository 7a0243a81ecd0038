"""How a trial's end is named in the tables and told to Optuna (no Ray needed)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from optuna.trial import TrialState

from results_folder.schema import EPOCH_COLUMNS
from sweeps.progress import Progress
from sweeps.results import TrialLog, epochs_table, trials_table
from sweeps.searcher import optuna_outcome
from vae_core.train import COIN_FLIP_NATS

TYPES = {"z_dim": "int", "lr": "float"}


@pytest.mark.parametrize(
    ("result", "error", "expected"),
    [
        (
            {"epoch": 4, "val_loss": 120.0, "best_val_loss": 110.0, "diverged": False},
            False,
            (TrialState.COMPLETE, 110.0, "completed"),
        ),
        (
            {"epoch": 1, "val_loss": 150.0, "best_val_loss": 150.0, "diverged": False},
            False,
            (TrialState.PRUNED, None, "early_stopped"),
        ),
        (
            {"epoch": 2, "val_loss": math.nan, "best_val_loss": 160.0, "diverged": True},
            False,
            (TrialState.COMPLETE, COIN_FLIP_NATS, "diverged"),
        ),
        (
            {"epoch": 2, "val_loss": 140.0, "diverged": False},
            True,
            (TrialState.FAIL, None, "error"),
        ),
        (None, False, (TrialState.PRUNED, None, "early_stopped")),
    ],
)
def test_optuna_outcome(result, error, expected):
    assert optuna_outcome(result, error=error, max_epochs=4) == expected


def epoch(number, loss, *, diverged=False, active=3):
    return {
        "epoch": number,
        "train_loss": loss,
        "val_loss": loss,
        "val_mean": loss,
        "val_recon": loss - 5,
        "val_kl": 5.0,
        "val_median": loss - 1,
        "val_p99": loss + 50,
        "val_outliers": 0,
        "active_units": active,
        "epoch_seconds": 1.0,
        "images_per_second": 500.0,
        "diverged": diverged,
    }


def log(trial_id, losses, *, finished="terminated", error=None, diverged_last=False):
    rows = {
        i + 1: epoch(i + 1, v, diverged=diverged_last and i == len(losses) - 1)
        for i, v in enumerate(losses)
    }
    return TrialLog(
        trial_id=trial_id,
        trial_dir=trial_id,
        params={"z_dim": 4, "lr": 1e-3},
        epochs=rows,
        checkpoints={
            e: f"checkpoint_{e - 1:06d}" for e in rows if not (diverged_last and e == len(losses))
        },
        where={
            "device": "cpu",
            "precision": "fp32",
            "node_id": "n",
            "node_ip": "127.0.0.2",
            "hostname": "h",
        },
        wall_seconds=3.0,
        finished=finished,
        error=error,
    )


def test_trials_table_names_each_ending():
    logs = {
        t.trial_id: t
        for t in [
            log("done", [150.0, 120.0, 125.0]),
            log("cut", [180.0]),
            log("nan", [math.nan], diverged_last=True),
            log("late_nan", [170.0, math.nan], diverged_last=True),
            log("crash", [], finished="error", error="RuntimeError: boom"),
            log("running", [160.0], finished=None),
        ]
    }
    table = trials_table(logs, TYPES, max_epochs=3).set_index("trial_id")
    assert list(table.index) == ["done", "cut", "nan", "late_nan", "crash"]  # running: not yet
    assert list(table["status"]) == ["completed", "early_stopped", "diverged", "diverged", "error"]
    done = table.loc["done"]
    assert (done["best_val_loss"], done["best_epoch"], done["last_val_loss"]) == (120.0, 2, 125.0)
    assert done["checkpoint_path"] == "done/checkpoint_000001/checkpoint.pt"
    assert math.isnan(table.loc["nan", "best_val_loss"]) and table.isna().loc["nan", "best_epoch"]
    assert table.isna().loc["nan", "checkpoint_path"]
    assert table.loc["late_nan", "best_epoch"] == 1  # its last finite epoch is still its best
    assert table.loc["crash", "error"] == "RuntimeError: boom"
    assert table.loc["crash", "epochs_run"] == 0
    epochs = epochs_table(logs)
    assert len(epochs) == 8 and list(epochs.columns) == list(EPOCH_COLUMNS)  # running too
    assert list(epochs.loc[epochs["trial_id"] == "done", "epoch"]) == [1, 2, 3]


def test_empty_tables_keep_their_types():
    trials = trials_table({}, TYPES, max_epochs=3)
    assert str(trials["z_dim"].dtype) == "Int64" and str(trials["lr"].dtype) == "float64"
    assert str(epochs_table({})["diverged"].dtype) == "boolean"


def test_progress_table_shows_each_trial_once():
    progress = Progress(["z_dim", "lr"], samples=3, max_epochs=3)
    trials = [
        SimpleNamespace(trial_id=f"t{i}", config={"z_dim": 2 + i, "lr": 1e-3}) for i in range(3)
    ]
    for t in trials:
        progress.on_trial_start(0, trials, t)
    progress.on_trial_result(0, trials, trials[0], {"epoch": 1, "val_loss": 150.0})
    progress.on_trial_result(
        0, trials, trials[1], {"epoch": 1, "val_loss": math.nan, "diverged": True}
    )
    progress.on_trial_complete(0, trials, trials[1])
    text = progress.table()
    assert "1/3 trials finished (1 diverged), 2 running; best val loss 150.00 (t0)" in text
    assert [line.split()[0] for line in text.splitlines()[2:]] == ["t0", "t1", "t2"]


def test_sharing_by_node_is_what_each_node_s_gpu_trials_reported():
    from sweeps.driver import sharing_by_node

    results = [
        {"node_ip": "127.0.0.2", "gpu_sharing": "mps"},
        {"node_ip": "127.0.0.2", "gpu_sharing": "mps"},
        {"node_ip": "127.0.0.3", "gpu_sharing": "time-sliced"},
        {"node_ip": "127.0.0.3", "gpu_sharing": "mps"},  # a daemon started mid-sweep
        {"node_ip": "127.0.0.4", "gpu_sharing": None},  # CPU trials: nothing to say
        {},  # a trial that never reported
    ]
    assert sharing_by_node(results) == {"127.0.0.2": "mps", "127.0.0.3": "mps, time-sliced"}
