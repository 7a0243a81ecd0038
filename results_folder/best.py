"""The best-trial rule, the one both the sweep's summary and the analysis apply.

Lowest validation score among trials that finished (completed or stopped early by ASHA) with a
finite score; ties go to the trial that ran fewer epochs (cheaper), then to trial_id, so the
choice never depends on row order. Validation picks: the test set never enters it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from results_folder.schema import FINISHED


def rank_trials(trials: pd.DataFrame, scores: pd.Series | None = None) -> pd.DataFrame:
    """The finished trials with a finite score, best first, with that score as `score`.

    Args:
        trials: trials.parquet's rows.
        scores: each trial's score, indexed like `trials`; default its best_val_loss.
    """
    scores = trials["best_val_loss"] if scores is None else scores
    scored = trials.assign(score=scores.astype(float))
    ok = scored["status"].isin(FINISHED) & np.isfinite(scored["score"].to_numpy(dtype=float))
    return scored[ok].sort_values(["score", "epochs_run", "trial_id"], kind="stable")


def best_trial(trials: pd.DataFrame, scores: pd.Series | None = None) -> pd.Series | None:
    """The best trial's row (with its `score`), or None when no trial qualifies."""
    ranked = rank_trials(trials, scores)
    return None if ranked.empty else ranked.iloc[0]
