"""Trials that diverge end as `diverged`, the sweep goes on, and Optuna learns to avoid them."""

from __future__ import annotations

import math

import optuna
import pandas as pd
import pytest

from search_spaces import load_space
from sweeps import SweepConfig, run_sweep
from vae_core.train import COIN_FLIP_NATS

SAMPLES = 4


def test_diverging_trials_end_cleanly(ray_local, make_space, tmp_path):
    # Adam at lr >= 0.5 turns this VAE's loss into NaN within an epoch of 300 images; 1e-3
    # (the post's, evaluated first) trains. The second trial is the seeded sampler's first
    # random draw (lr about 1.0 here), so both kinds are certain whatever TPE picks next.
    space = load_space(make_space("wild", samples=SAMPLES, epochs=2, lr_low=1e-3, lr_high=100.0))
    outcome = run_sweep(
        SweepConfig(name="wild", space=space, storage=str(tmp_path / "results"), data="mnist-5k")
    )
    trials = outcome.trials.set_index("trial_id")
    assert len(trials) == SAMPLES and not outcome.interrupted
    diverged = trials[trials["status"] == "diverged"]
    assert 1 <= len(diverged) < SAMPLES
    assert (trials["status"] != "error").all()
    assert diverged["best_val_loss"].isna().all() and diverged["checkpoint_path"].isna().all()
    assert outcome.best() is not None and outcome.best()["status"] != "diverged"

    epochs = pd.read_parquet(tmp_path / "results" / "wild" / "epochs.parquet")
    last = epochs.groupby("trial_id").tail(1).set_index("trial_id")
    assert last.loc[diverged.index, "diverged"].all()
    assert not last.loc[diverged.index, "val_loss"].map(math.isfinite).any()

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'results' / 'wild' / 'optuna.db'}")
    study = optuna.load_study(study_name="wild", storage=storage)
    for t in study.trials:
        assert t.state != optuna.trial.TrialState.RUNNING
        if t.user_attrs["ray_trial_id"] in diverged.index:
            assert t.state == optuna.trial.TrialState.COMPLETE and t.value == COIN_FLIP_NATS
            assert t.user_attrs["status"] == "diverged"
        else:  # a finite loss, however bad (lr 0.1 can reach 1e4 nats), is told as it is
            row = trials.loc[t.user_attrs["ray_trial_id"]]
            done = row["status"] == "completed"
            assert t.value == pytest.approx(row["best_val_loss" if done else "last_val_loss"])
    storage.engine.dispose()
