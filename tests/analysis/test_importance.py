"""Hyperparameter importance: from the sweep's optuna.db, or rebuilt from trials.parquet."""

import pytest

from analysis.best import trial_scores
from analysis.importance import param_importances
from results_folder import load_results


def importances(folder, metric="val_loss"):
    results = load_results(folder)
    return param_importances(results, trial_scores(results, metric), metric=metric)


def test_from_the_sweeps_study(sweep_copy):
    found = importances(sweep_copy)
    assert found is not None, "the small sweep should have enough complete trials"
    shares, source, trials = found
    assert "optuna.db" in source and trials >= 2
    assert set(shares) <= {"z_dim", "fc_size", "lr"}
    assert sum(shares.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("why", ["no database", "another metric"])
def test_rebuilt_from_the_table(sweep_copy, why):
    if why == "no database":
        (sweep_copy / "optuna.db").unlink()
    shares, source, trials = importances(
        sweep_copy, "val_loss" if why == "no database" else "val_recon"
    )
    assert "finished trials" in source
    assert set(shares) == {"z_dim", "fc_size", "lr"}
    assert sum(shares.values()) == pytest.approx(1.0)
    table = load_results(sweep_copy).finished()
    assert trials == len(table)
