"""Read a sweep's results folder: trials.parquet, epochs.parquet and sweep.json, checked.

Only the documented tables are read (never Ray's own files), so a folder copied from a cluster
or kept on object storage (s3://, gs://) analyses like a local one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd

from results_folder import storage
from vae_core.errors import ResultsError

FINISHED = ("completed", "early_stopped")  # trained without diverging or erroring
TRIAL_COLUMNS = [
    "trial_id",
    "status",
    "best_val_loss",
    "last_val_loss",
    "best_epoch",
    "epochs_run",
    "active_units",
    "wall_seconds",
    "checkpoint_path",
]
EPOCH_COLUMNS = ["trial_id", "epoch", "val_loss"]
# Every other column of trials.parquet is a searched hyperparameter (the contract gives each
# its own column), so the analysis needs no copy of the search space to find them.
CONTRACT_COLUMNS = set(TRIAL_COLUMNS) | {
    "best_val_mean",  # since issue 9, like best_val_outliers
    "best_val_recon",
    "best_val_kl",
    "best_val_outliers",
    "images_per_second",
    "device",
    "precision",
    "node_id",
    "node_ip",
    "hostname",
    "error",
}

# A later sweep's new per-trial metric (best_val_p99, ...) must not pass for a hyperparameter.
METRIC_PREFIXES = ("best_val_", "last_val_")


@dataclass(frozen=True)
class SweepResults:
    root: str  # the results folder, a local path or a URI
    trials: pd.DataFrame  # one row per trial
    epochs: pd.DataFrame  # one row per trial per epoch
    sweep: dict  # sweep.json

    @property
    def name(self) -> str:
        return str(self.sweep.get("name") or os.path.basename(self.root.rstrip("/")))

    @property
    def params(self) -> list[str]:
        """The searched hyperparameters: trials.parquet's numeric non-contract columns."""
        return [
            c
            for c in self.trials.columns
            if c not in CONTRACT_COLUMNS
            and not c.startswith(METRIC_PREFIXES)
            and pd.api.types.is_numeric_dtype(self.trials[c])
            and not pd.api.types.is_bool_dtype(self.trials[c])
        ]

    def path(self, name: str) -> str:
        return storage.join(self.root, name)

    def finished(self) -> pd.DataFrame:
        return self.trials[self.trials["status"].isin(FINISHED)]


def load_results(results_dir: str | os.PathLike) -> SweepResults:
    """Read and check the three tables of a results folder.

    Raises:
        ResultsError: a table is missing, unreadable or lacks a documented column.
    """
    root = str(results_dir)
    if not storage.is_uri(root):
        root = os.path.abspath(root)
        if not os.path.isdir(root):
            raise ResultsError(f"results folder {root} does not exist")
    trials = storage.read_parquet(storage.join(root, "trials.parquet"), columns=TRIAL_COLUMNS)
    epochs = storage.read_parquet(storage.join(root, "epochs.parquet"), columns=EPOCH_COLUMNS)
    sweep_path = storage.join(root, "sweep.json")
    try:
        sweep = json.loads(storage.read_text(sweep_path))
    except json.JSONDecodeError as err:
        raise ResultsError(f"{sweep_path} is not valid JSON ({err})") from err
    if not isinstance(sweep, dict):
        raise ResultsError(f"{sweep_path} must hold a JSON object")
    if trials.empty:
        raise ResultsError(f"{storage.join(root, 'trials.parquet')} has no trials")
    return SweepResults(root, trials, epochs, sweep)


def resolve_path(root: str, path: str) -> str:
    """A path from a table: relative to the results folder unless absolute or a URI."""
    if storage.is_uri(path) or os.path.isabs(path):
        return path
    return storage.join(root, path)


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """A local file holding `path`'s bytes, for readers that need one (torch.load, sqlite).

    Always a copy, even of a local file: opening optuna.db through sqlite may write to it, and
    the analysis must not change the sweep's files.
    """
    fs, inner = storage.resolve(path)
    with tempfile.TemporaryDirectory(prefix="vae-sweep-") as tmp:
        local = os.path.join(tmp, os.path.basename(inner))
        try:
            with fs.open_input_stream(inner) as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except FileNotFoundError as err:
            raise ResultsError(f"{path} does not exist") from err
        except OSError as err:
            raise ResultsError(f"cannot read {path}: {err}") from err
        yield local
