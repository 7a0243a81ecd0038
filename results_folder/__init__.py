"""The results folder: the one owner of its file names, table schemas and reading rules.

A sweep writes, and the analysis reads, `<storage>/<name>/`:

    trials.parquet   one row per finished trial (schema.TRIAL_COLUMNS_*)
    epochs.parquet   one row per trial per epoch (schema.EPOCH_COLUMNS)
    sweep.json       the resolved settings (sweep_json)
    optuna.db        the Optuna study
    <trial>/checkpoint_NNNNNN/checkpoint.pt   (checkpoints)
    analysis/        best_trial.json, tsne.parquet, tsne.html, report.html

Knows nothing of Ray, so `sweeps` (the writer) and `analysis` (the reader) share it without
importing each other.
"""

from results_folder.best import best_trial, rank_trials
from results_folder.checkpoints import load_checkpoint, save_checkpoint
from results_folder.reader import SweepResults, load_results
from results_folder.sweep_json import read_sweep_json, searched_params, write_sweep_json

__all__ = [
    "SweepResults",
    "best_trial",
    "load_checkpoint",
    "load_results",
    "rank_trials",
    "read_sweep_json",
    "save_checkpoint",
    "searched_params",
    "write_sweep_json",
]
