"""Read a results folder: trials.parquet, epochs.parquet and sweep.json, checked.

Only the documented files are read (never Ray's own), so a folder copied from a cluster or kept
on object storage (s3://, gs://) reads like a local one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd

from results_folder import storage
from results_folder.layout import EPOCHS, SWEEP_JSON, TRIALS
from results_folder.schema import EPOCHS_REQUIRED, FINISHED, TRIALS_REQUIRED
from results_folder.sweep_json import read_sweep_json, searched_params
from vae_core.errors import ResultsError


@dataclass(frozen=True)
class SweepResults:
    root: str  # the results folder, a local path or a URI
    trials: pd.DataFrame  # one row per trial
    epochs: pd.DataFrame  # one row per trial per epoch
    sweep: dict  # sweep.json
    params: tuple[str, ...]  # the searched hyperparameters (sweep.json's space), in its order

    @property
    def name(self) -> str:
        return str(self.sweep.get("name") or os.path.basename(self.root.rstrip("/")))

    def path(self, name: str) -> str:
        return storage.join(self.root, name)

    def finished(self) -> pd.DataFrame:
        return self.trials[self.trials["status"].isin(FINISHED)]


def load_results(results_dir: str | os.PathLike) -> SweepResults:
    """Read and check the three files of a results folder.

    Raises:
        ResultsError: a file is missing or unreadable, a table lacks a documented column or
            a searched parameter's column, or trials.parquet has no trials.
    """
    root = str(results_dir)
    if not storage.is_uri(root):
        root = os.path.abspath(root)
        if not os.path.isdir(root):
            raise ResultsError(f"results folder {root} does not exist")
    trials_path = storage.join(root, TRIALS)
    trials = storage.read_parquet(trials_path, columns=list(TRIALS_REQUIRED))
    epochs = storage.read_parquet(storage.join(root, EPOCHS), columns=list(EPOCHS_REQUIRED))
    sweep = read_sweep_json(root)
    params = tuple(searched_params(sweep, path=storage.join(root, SWEEP_JSON)))
    missing = [p for p in params if p not in trials.columns]
    if missing:
        raise ResultsError(f"{trials_path} lacks the columns {', '.join(missing)}")
    if trials.empty:
        raise ResultsError(f"{trials_path} has no trials")
    return SweepResults(root, trials, epochs, sweep, params)
