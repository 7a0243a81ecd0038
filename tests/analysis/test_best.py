"""Choosing the best trial: validation only, finished trials only, ties to fewer epochs."""

import math

import pandas as pd
import pytest

from analysis.best import choose_best, load_model
from results_folder import SweepResults, load_results
from results_folder.layout import EPOCHS, TRIALS
from vae_core.errors import CheckpointError, ConfigError, ResultsError


def results(rows: list[tuple], epochs: list[tuple] = ()) -> SweepResults:
    trials = pd.DataFrame(rows, columns=["trial_id", "status", "best_val_loss", "epochs_run"])
    epochs = pd.DataFrame(list(epochs), columns=["trial_id", "epoch", "val_loss", "val_recon"])
    return SweepResults("/nowhere", trials, epochs, {}, ())


def test_best_is_the_independent_argmin_of_trials_parquet(small_sweep):
    table = pd.read_parquet(small_sweep / "trials.parquet")
    ok = table[
        table["status"].isin(["completed", "early_stopped"]) & table["best_val_loss"].notna()
    ]
    expected = ok.loc[ok["best_val_loss"].idxmin(), "trial_id"]
    assert choose_best(load_results(small_sweep))["trial_id"] == expected


def test_only_searched_columns_count_as_hyperparameters(small_sweep, sweep_copy):
    # trials.parquet also holds best_val_mean, best_val_outliers: metrics, not params.
    r = load_results(small_sweep)
    assert {"best_val_mean", "best_val_outliers"} <= set(r.trials.columns)
    assert list(r.params) == ["z_dim", "fc_size", "lr"]
    # The same sweep without those columns and the epochs' val_mean, val_median, val_p99: a
    # results folder need not hold them, and reads the same without them.
    r.trials.drop(columns=["best_val_mean", "best_val_outliers"]).to_parquet(sweep_copy / TRIALS)
    r.epochs[["trial_id", "epoch", "val_loss", "val_recon", "val_kl"]].to_parquet(
        sweep_copy / EPOCHS
    )
    bare = load_results(sweep_copy)
    assert bare.params == r.params
    assert choose_best(bare)["trial_id"] == choose_best(r)["trial_id"]
    assert choose_best(r, "val_median")["trial_id"] in set(r.finished()["trial_id"])
    with pytest.raises(ConfigError, match=r"val_median, val_p99 \(.*but got 'val_outliers'"):
        choose_best(r, "val_outliers")  # a count of images, not a loss


def test_diverged_and_errored_trials_never_win():
    best = choose_best(
        results(
            [
                ("a", "diverged", 50.0, 3),
                ("b", "error", 40.0, 1),
                ("c", "early_stopped", 120.0, 1),
                ("d", "completed", 110.0, 4),
            ]
        )
    )
    assert best["trial_id"] == "d"


def test_ties_go_to_the_trial_with_fewer_epochs():
    best = choose_best(
        results(
            [
                ("a", "completed", 100.0, 4),
                ("b", "early_stopped", 100.0, 2),
                ("c", "completed", 100.0, 3),
            ]
        )
    )
    assert best["trial_id"] == "b"


def test_no_finished_trial_is_one_error_naming_the_table():
    with pytest.raises(ResultsError, match=r"trials\.parquet has no finished trial.*2 diverged"):
        choose_best(
            results(
                [
                    ("a", "diverged", math.nan, 1),
                    ("b", "diverged", math.nan, 2),
                    ("c", "completed", math.nan, 3),
                ]
            )
        )


def test_another_validation_column_is_minimised_over_epochs():
    r = results(
        [("a", "completed", 100.0, 2), ("b", "completed", 101.0, 2)],
        [
            ("a", 1, 110.0, 95.0),
            ("a", 2, 100.0, 90.0),
            ("b", 1, 120.0, 80.0),
            ("b", 2, 101.0, 85.0),
        ],
    )
    assert choose_best(r)["trial_id"] == "a"
    best = choose_best(r, "val_recon")
    assert (best["trial_id"], best["score"]) == ("b", 80.0)


def test_an_unknown_metric_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="val_loss, val_recon.*but got 'test_loss'"):
        choose_best(results([("a", "completed", 100.0, 2)], [("a", 1, 1.0, 1.0)]), "test_loss")


def test_checkpoint_weights_are_loaded_safely(small_sweep):
    r = load_results(small_sweep)
    model, state, path = load_model(r, choose_best(r))
    assert not model.training and path.endswith("checkpoint.pt")
    assert model.z_dim == state["config"]["z_dim"]


def test_a_trial_without_checkpoint_is_a_checkpoint_error(small_sweep):
    r = load_results(small_sweep)
    row = choose_best(r).copy()
    row["checkpoint_path"] = None
    with pytest.raises(CheckpointError, match=f"trial {row['trial_id']} has no checkpoint_path"):
        load_model(r, row)
