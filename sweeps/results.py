"""The result tables (trials.parquet, epochs.parquet), built from what Ray Tune reports.

A Tune callback keeps every trial's epochs in memory, rewrites both tables while the sweep
runs (when a trial finishes, else at most every 10 s, always after Ray's experiment snapshot;
atomically, through results_folder.storage, so any pyarrow filesystem works) and once more
at the end. Its state rides in Ray's snapshots, and a resume also keeps what the tables on
storage say (finished_in_tables). Columns and types are results_folder.schema's.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
from ray import tune

from results_folder import storage
from results_folder.layout import CHECKPOINT_FILE, EPOCHS, TRIALS
from results_folder.schema import EPOCH_COLUMNS, trial_columns, typed_frame
from vae_core.errors import ResultsError, one_line
from vae_core.train import EPOCH_METRICS

WHERE_KEYS = ("device", "precision", "node_id", "node_ip", "hostname")


@dataclass
class TrialLog:
    """What the tables need of one trial, gathered from its results."""

    trial_id: str
    trial_dir: str  # the trial's folder, relative to the results folder
    params: dict
    epochs: dict[int, dict] = field(default_factory=dict)  # epoch -> that epoch's metrics
    checkpoints: dict[int, str] = field(default_factory=dict)  # epoch -> checkpoint folder
    where: dict = field(default_factory=dict)  # device, precision, node of the last result
    wall_seconds: float = math.nan
    finished: str | None = None  # None while running, "terminated" or "error"
    error: str | None = None


def trial_status(*, errored: bool, diverged: bool, epochs_run: int, max_epochs: int) -> str:
    """completed / early_stopped / diverged / error: one word for how a trial ended."""
    if errored:
        return "error"
    if diverged:
        return "diverged"
    # A trial only ends before its budget when ASHA stops it (or it diverges).
    return "early_stopped" if epochs_run < max_epochs else "completed"


def finished_in_tables(results_dir: str) -> dict[str, tuple[dict, list[dict]]]:
    """Trial id -> (its trials.parquet row, its epochs.parquet rows), for every trial the
    tables on storage call finished. Ray uploads its snapshot in the background, so a driver
    killed after writing the tables can leave them knowing more than the snapshot a resume
    starts from: the resume keeps what they say (ResultsWriter, StudySearch)."""
    if not storage.exists(storage.join(results_dir, TRIALS)):
        return {}
    trials = storage.read_parquet(storage.join(results_dir, TRIALS))
    epochs = storage.read_parquet(storage.join(results_dir, EPOCHS))
    by_trial = {k: g for k, g in epochs.groupby("trial_id")}
    empty = epochs.iloc[:0]
    return {
        row["trial_id"]: (
            _plain(row),
            [_plain(e) for _, e in by_trial.get(row["trial_id"], empty).iterrows()],
        )
        for _, row in trials.iterrows()
    }


def _plain(row: pd.Series) -> dict:  # missing values as None, as Ray's results have them
    return {k: None if pd.isna(v) else v for k, v in row.items()}


def logged(row: dict, epochs: list[dict], params: list[str]) -> TrialLog:
    """A finished trial's log rebuilt from its rows in the tables (finished_in_tables)."""
    path = row.get("checkpoint_path")
    trial_dir, checkpoint = path.split("/")[:2] if path else (row["trial_id"], None)
    return TrialLog(
        trial_id=row["trial_id"],
        trial_dir=trial_dir,
        params={name: row.get(name) for name in params},
        epochs={int(e["epoch"]): {k: e.get(k) for k in EPOCH_METRICS} for e in epochs},
        checkpoints={int(row["best_epoch"]): checkpoint} if checkpoint else {},
        where={k: row.get(k) for k in WHERE_KEYS},
        wall_seconds=row.get("wall_seconds") or math.nan,
        finished="error" if row["status"] == "error" else "terminated",
        error=row.get("error"),
    )


def trial_log(logs: dict[str, TrialLog], trial, params: list[str]) -> TrialLog:
    """The trial's log, created on first sight (so tables list trials in start order)."""
    if trial.trial_id not in logs:
        logs[trial.trial_id] = TrialLog(
            trial_id=trial.trial_id,
            trial_dir=trial.storage.trial_dir_name,
            params={name: trial.config.get(name) for name in params},
        )
    return logs[trial.trial_id]


def record_result(logs: dict[str, TrialLog], trial, result: dict, params: list[str]) -> TrialLog:
    """Add one reported epoch to the trial's log (a re-run epoch replaces the old row)."""
    entry = trial_log(logs, trial, params)
    epoch = int(result["epoch"])
    entry.epochs[epoch] = {k: result.get(k) for k in EPOCH_METRICS}
    if result.get("checkpoint_dir_name"):
        entry.checkpoints[epoch] = result["checkpoint_dir_name"]
    entry.where = {k: result.get(k) for k in WHERE_KEYS}
    entry.wall_seconds = float(result.get("time_total_s", math.nan))
    return entry


def epochs_table(logs: dict[str, TrialLog]) -> pd.DataFrame:
    rows = [
        {"trial_id": t.trial_id, **row}
        for t in logs.values()
        for _, row in sorted(t.epochs.items())
    ]
    return typed_frame(rows, EPOCH_COLUMNS)


def trials_table(
    logs: dict[str, TrialLog], param_types: dict[str, str], max_epochs: int
) -> pd.DataFrame:
    """One row per finished trial; running ones appear once they end."""
    rows = [trial_row(t, max_epochs) for t in logs.values() if t.finished]
    return typed_frame(rows, trial_columns(param_types))


def trial_row(t: TrialLog, max_epochs: int) -> dict:
    epochs = [t.epochs[e] for e in sorted(t.epochs)]
    finite = [
        (row["val_loss"], e) for e, row in sorted(t.epochs.items()) if _finite(row["val_loss"])
    ]
    best_loss, best_epoch = min(finite) if finite else (math.nan, None)
    best = t.epochs[best_epoch] if best_epoch is not None else {}
    speeds = [row["images_per_second"] for row in epochs if _finite(row["images_per_second"])]
    checkpoint = t.checkpoints.get(best_epoch)
    return {
        "trial_id": t.trial_id,
        "status": trial_status(
            errored=t.finished == "error",
            diverged=any(row["diverged"] for row in epochs),
            epochs_run=len(epochs),
            max_epochs=max_epochs,
        ),
        **t.params,
        "best_val_loss": best_loss,
        "last_val_loss": epochs[-1]["val_loss"] if epochs else math.nan,
        "best_epoch": best_epoch,
        "epochs_run": len(epochs),
        "best_val_mean": best.get("val_mean", math.nan),
        "best_val_recon": best.get("val_recon", math.nan),
        "best_val_kl": best.get("val_kl", math.nan),
        "best_val_outliers": best.get("val_outliers"),
        "active_units": best.get("active_units"),
        "wall_seconds": t.wall_seconds,
        "images_per_second": statistics.median(speeds) if speeds else math.nan,
        **{k: t.where.get(k) for k in WHERE_KEYS},
        "checkpoint_path": f"{t.trial_dir}/{checkpoint}/{CHECKPOINT_FILE}" if checkpoint else None,
        "error": t.error,
    }


def write_tables(
    results_dir: str, logs: dict[str, TrialLog], param_types: dict[str, str], max_epochs: int
) -> None:
    storage.write_parquet(epochs_table(logs), storage.join(results_dir, EPOCHS))
    storage.write_parquet(
        trials_table(logs, param_types, max_epochs), storage.join(results_dir, TRIALS)
    )


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


class StorageWriteError(ResultsError):
    """A write to the results folder failed: the sweep stops rather than fail every trial."""


# What a trial's error says when its checkpoint could not be written: no retry helps, and
# every trial after it would fail the same way.
REFUSED_WRITES = (
    "No space left on device",
    "Disk quota exceeded",
    "Read-only file system",
    "AccessDenied",
)


def _stop_if_storage_refused(trial, results_dir: str) -> None:
    try:
        text = Path(trial.error_file).read_text() if trial.error_file else ""
    except OSError:
        return
    refused = [line.strip() for line in text.splitlines() if any(w in line for w in REFUSED_WRITES)]
    if refused:
        raise StorageWriteError(
            f"trial {trial.trial_id} could not write its checkpoint under {results_dir}: "
            f"{refused[-1][:300]}"
        )


def _error_line(trial) -> str:
    """The last line of the trial's error file: the exception and its message."""
    try:
        text = Path(trial.error_file).read_text() if trial.error_file else ""
    except OSError:
        text = ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else "the trial failed (no error file)"


class ResultsWriter(tune.Callback):
    """Keeps trials.parquet and epochs.parquet up to date while the sweep runs."""

    def __init__(
        self,
        results_dir: str,
        param_types: dict[str, str],
        max_epochs: int,
        *,
        interval_s: float = 10.0,
    ) -> None:
        self.results_dir = results_dir
        self.param_types = dict(param_types)  # name -> "int" / "float", in column order
        self.max_epochs = max_epochs
        self.interval_s = interval_s  # a big sweep rewrites its tables at most this often
        self.logs: dict[str, TrialLog] = {}
        self.kept: set[str] = set()  # finished in the tables a resume started from
        self._last_write = 0.0
        self._stale = self._finished_since_write = False  # results not yet in the tables

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        for t in trials:  # all trials so far, in creation order: the tables keep that order
            trial_log(self.logs, t, list(self.param_types))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if trial.trial_id not in self.kept:
            record_result(self.logs, trial, result, list(self.param_types))
            self._stale = True

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, "terminated")

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        _stop_if_storage_refused(trial, self.results_dir)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        _stop_if_storage_refused(trial, self.results_dir)
        self._finish(trial, "error", _error_line(trial))

    def on_step_end(self, iteration, trials, **info) -> None:
        # Written here, after Ray's experiment snapshot of this step: a trial the tables call
        # finished is one a resumed sweep also knows as finished.
        due = time.monotonic() - self._last_write >= self.interval_s
        if self._finished_since_write or (self._stale and due):
            self.write()

    def on_experiment_end(self, trials, **info) -> None:
        self.write()

    def get_state(self) -> dict:
        return {"logs": self.logs}

    def set_state(self, state: dict) -> None:
        self.logs = state["logs"]
        # Finished in the tables: kept as they are, whatever Ray runs again (an errored one
        # that runs again, --resume-errored, is recorded anew).
        for trial_id, (row, epochs) in finished_in_tables(self.results_dir).items():
            if row["status"] == "error":
                continue
            if trial_id not in self.logs or not self.logs[trial_id].finished:
                self.logs[trial_id] = logged(row, epochs, list(self.param_types))
            self.kept.add(trial_id)

    def write(self) -> None:
        try:
            write_tables(self.results_dir, self.logs, self.param_types, self.max_epochs)
        except (OSError, pa.ArrowException) as err:  # the tables on storage stay as they were
            raise StorageWriteError(
                f"cannot write the result tables in {self.results_dir}: {one_line(err)}"
            ) from err
        self._last_write = time.monotonic()
        self._stale = self._finished_since_write = False

    def _finish(self, trial, how: str, error: str | None = None) -> None:
        if trial.trial_id in self.kept:
            return
        entry = trial_log(self.logs, trial, list(self.param_types))
        entry.finished, entry.error = how, error
        self._finished_since_write = True
