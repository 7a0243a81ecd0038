"""The best-trial rule, from a table of cases."""

import math

import pandas as pd
import pytest

from results_folder import best_trial, rank_trials


def trials(*rows):
    return pd.DataFrame(rows, columns=["trial_id", "status", "best_val_loss", "epochs_run"])


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        # lowest loss wins
        ([("a", "completed", 120.0, 4), ("b", "completed", 110.0, 4)], "b"),
        # an early-stopped trial counts as finished
        ([("a", "completed", 120.0, 4), ("b", "early_stopped", 110.0, 1)], "b"),
        # diverged and failed trials never win, whatever their loss
        ([("a", "completed", 120.0, 4), ("b", "diverged", 1.0, 2), ("c", "error", 2.0, 1)], "a"),
        # a tie goes to fewer epochs, then to the smaller trial_id, whatever the row order
        ([("b", "completed", 110.0, 4), ("a", "early_stopped", 110.0, 2)], "a"),
        ([("b", "completed", 110.0, 4), ("a", "completed", 110.0, 4)], "a"),
        # a NaN or infinite loss does not count
        ([("a", "completed", math.nan, 4), ("b", "completed", 130.0, 4)], "b"),
        ([("a", "completed", -math.inf, 4), ("b", "completed", 130.0, 4)], "b"),
    ],
)
def test_best_trial(rows, expected):
    assert best_trial(trials(*rows))["trial_id"] == expected


def test_no_finished_trial_is_none():
    assert best_trial(trials(("a", "diverged", 100.0, 1), ("b", "error", math.nan, 0))) is None
    assert best_trial(trials()) is None


def test_other_scores_rank_the_same_way():
    table = trials(("a", "completed", 120.0, 4), ("b", "completed", 110.0, 4))
    scores = pd.Series([1.0, 2.0], index=table.index)  # e.g. each trial's best val_kl
    ranked = rank_trials(table, scores)
    assert list(ranked["trial_id"]) == ["a", "b"] and list(ranked["score"]) == [1.0, 2.0]
