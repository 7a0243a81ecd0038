"""The tables' columns, their types and the trial statuses: the results folder's contract.

The README's docs/results.md documents these columns; tests/results_folder/test_schema.py pins
them literally, so a change here is a deliberate, visible change of the contract.
"""

from __future__ import annotations

import pandas as pd

from vae_core.train import EPOCH_METRICS

METRIC, MODE = "val_loss", "min"  # what a sweep optimises, and in which direction
STATUSES = ("completed", "early_stopped", "diverged", "error")
FINISHED = ("completed", "early_stopped")  # trained without diverging or erroring
# pandas dtype of each kind of value: nullable ints and booleans, so a missing value stays
# missing instead of turning a column into floats or objects.
DTYPES = {"int": "Int64", "float": "float64", "bool": "boolean", "str": "string"}

# epochs.parquet: one row per trial per epoch, the epoch's metrics as vae_core.train reports them.
EPOCH_COLUMNS = {"trial_id": "string", **{k: DTYPES[v] for k, v in EPOCH_METRICS.items()}}
# trials.parquet: these, then one column per searched parameter, then TRIAL_COLUMNS_AFTER.
TRIAL_COLUMNS_BEFORE = {"trial_id": "string", "status": "string"}
TRIAL_COLUMNS_AFTER = {
    "best_val_loss": "float64",
    "last_val_loss": "float64",
    "best_epoch": "Int64",
    "epochs_run": "Int64",
    "best_val_mean": "float64",
    "best_val_recon": "float64",
    "best_val_kl": "float64",
    "best_val_outliers": "Int64",
    "active_units": "Int64",
    "wall_seconds": "float64",
    "images_per_second": "float64",
    "device": "string",
    "precision": "string",
    "node_id": "string",
    "node_ip": "string",
    "hostname": "string",
    "checkpoint_path": "string",
    "error": "string",
}
# What a reader needs of each table. Columns added later (best_val_mean, val_p99, ... in issue
# 9) are not required, so results written before them still read.
TRIALS_REQUIRED = (
    "trial_id",
    "status",
    "best_val_loss",
    "last_val_loss",
    "best_epoch",
    "epochs_run",
    "active_units",
    "wall_seconds",
    "checkpoint_path",
)
EPOCHS_REQUIRED = ("trial_id", "epoch", "val_loss")
# Python-backed strings: pandas' default string dtype writes Arrow large_string, not `string`.
STRING = pd.StringDtype("python")


def trial_columns(param_kinds: dict[str, str]) -> dict[str, str]:
    """trials.parquet's columns for a sweep searching `param_kinds` (name -> "int"/"float")."""
    params = {name: DTYPES[kind] for name, kind in param_kinds.items()}
    return {**TRIAL_COLUMNS_BEFORE, **params, **TRIAL_COLUMNS_AFTER}


def typed_frame(rows: list[dict], columns: dict[str, str]) -> pd.DataFrame:
    """`rows` as a table with exactly `columns`, each of its documented type (an empty table or
    a column of nulls keeps its type)."""
    dtypes = {k: STRING if v == "string" else v for k, v in columns.items()}
    return pd.DataFrame(rows, columns=list(columns)).astype(dtypes)
