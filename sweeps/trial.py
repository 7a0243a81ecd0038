"""One Ray Tune trial: `vae_core.train` with its per-epoch report turned into `tune.report`.

Ray 2.60: inside a Tune trainable only `ray.tune.report` / `ray.tune.get_checkpoint` work (the
`ray.train.*` forms raise), and a checkpoint is a directory that Ray copies to storage before
`report` returns, so a temporary directory per epoch is enough.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import ray
from ray import tune

from results_folder import load_checkpoint, save_checkpoint
from results_folder.layout import CHECKPOINT_FILE
from sweeps import IMPORT_STARTED_AT
from sweeps.worker_data import WorkerData
from vae_core.config import TrainConfig
from vae_core.device import resolve_device, resolve_precision
from vae_core.step import uses_cuda_graph
from vae_core.train import train

if TYPE_CHECKING:
    from sweeps.trainer import Trainers

# When this worker process had the trial's code imported (Ray Tune, torch, vae_core): with the
# trials' start and epoch times, where a sweep's first seconds go (bench/sweep_overhead.py).
CODE_IMPORTED_AT = time.time()


def run_trial(
    config: dict, data: WorkerData | None = None, trainers: Trainers | None = None
) -> None:
    """The trainable: `config` is a TrainConfig's fields; `data` comes through the object
    store (`tune.with_parameters`), fetched once per worker, not loaded by every trial.
    With `trainers` instead (--streams: sweeps.trainer's), the Trainer of the trial's GPU
    trains it, and the trial relays its epochs."""
    # Ray Train logs every persisted checkpoint at INFO, which the driver would print each epoch.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    train_config = TrainConfig(**config)
    state = _restore()
    history = state["history"] if state else []
    if trainers:
        _relay(trainers, train_config, state, history)
        return
    report = TuneReport(train_config, history, trains_on(train_config))
    splits = data.on(resolve_device(train_config.device))
    train(train_config, report, state, data=splits)


def _relay(trainers: Trainers, config: TrainConfig, state: dict | None, history: list) -> None:
    """Train on this trial's Trainer one epoch at a time, each reported before the next is
    asked for. When Tune stops the trial, its report raises (SystemExit) and the run is
    stopped too; where Tune ends this process before that, the run stops on seeing it gone."""
    trainer = trainers.of_this_trial()
    trial_id = tune.get_context().get_trial_id()
    try:
        # The Trainer says where the run trains: this process has no CUDA context to ask.
        process = (ray.get_runtime_context().get_node_id(), os.getpid())
        where = ray.get(
            trainer.start.remote(trial_id, config.to_dict(), state, trainers.data, process)
        )
        report = TuneReport(config, history, where)
        while (epoch := ray.get(trainer.next_epoch.remote(trial_id))) is not None:
            report.saved(*epoch)
    except ray.exceptions.RayTaskError as err:  # the run's own error, not Ray's wrapper
        raise err.as_instanceof_cause() from None
    finally:
        # Waited for, so that the trial's slot goes to the next trial only once its run is off
        # the Trainer (a run Tune stopped waits at its report, and ends at once).
        with contextlib.suppress(ray.exceptions.RayActorError):  # a Trainer gone for good
            ray.get(trainer.stop.remote(trial_id))


def trains_on(config: TrainConfig) -> dict:
    """The device type and precision `train` will use for `config`, as the tables record."""
    device = resolve_device(config.device)
    graph = uses_cuda_graph(device, config.cuda_graph, config.compile)
    precision = resolve_precision(
        config.precision, device, batch_size=config.batch_size, graph=graph
    )
    return {"device": device.type, "precision": precision}


def save_epoch(state: dict, root: str | None = None) -> tuple[str, float]:
    """Write an epoch's checkpoint state into a new folder under `root` (the system's
    temporary folder by default); returns the folder and the seconds the writing took."""
    folder = tempfile.mkdtemp(prefix="vae-sweep-ckpt-", dir=root)
    t0 = time.perf_counter()
    try:
        save_checkpoint(state, Path(folder) / CHECKPOINT_FILE)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder, time.perf_counter() - t0


def _restore() -> dict | None:
    """The latest checkpoint of this trial, when Ray restarts it after a failure or resume."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return load_checkpoint(Path(folder) / CHECKPOINT_FILE)


class TuneReport:
    """vae_core's `report(metrics, state)` -> `tune.report(metrics, checkpoint)`.

    Adds what the result tables need and `train` does not report: the best validation loss
    so far (resumed epochs included), the device and precision, and the Ray node. Also, for
    Ray's result.json (not the tables), where the trial's time outside epochs went, which
    bench/sweep_overhead.py --folder adds up: `outside_epochs_seconds` (since the trial
    started, checkpoints before this one included), `checkpoint_seconds` (writing this epoch's
    checkpoint, before Ray copies it), `report_seconds` (the previous epoch's `tune.report`:
    Ray copying its checkpoint and waiting for Tune's controller to let the trial go on),
    `trial_started_at` and `epoch_ended_at` (Unix times of the trial's start and of this
    report: with `epoch_seconds`, when each epoch ran, and the gaps between trials), and
    `import_started_at` and `code_imported_at` (when the worker process began importing
    vae-sweep's code, and when it had imported this module).
    """

    def __init__(self, config: TrainConfig, history: list[dict], where: dict) -> None:
        self.started, self.started_at = time.perf_counter(), time.time()
        self.report_seconds = 0.0  # the last tune.report's
        self.inside = 0.0  # seconds inside this run's epochs so far
        self.best = min(
            (m["val_loss"] for m in history if math.isfinite(m["val_loss"])), default=math.inf
        )
        self.extra = {**where, "node_id": ray.get_runtime_context().get_node_id()}

    def __call__(self, metrics: dict, state: dict | None) -> None:
        self.saved(metrics, None if state is None else save_epoch(state))

    def saved(self, metrics: dict, checkpoint: tuple[str, float] | None) -> None:
        """Report an epoch whose checkpoint `save_epoch` wrote (folder, seconds), or None
        (diverged: nothing worth keeping); the folder is removed once Ray has copied it."""
        folder, written = checkpoint if checkpoint is not None else (None, 0.0)
        self.inside += metrics["epoch_seconds"]
        # This epoch's checkpoint is already written: it counts in the next report's time
        # outside, with the report that copies it, as `checkpoint_seconds` here.
        outside = time.perf_counter() - self.started - self.inside - written
        if math.isfinite(metrics["val_loss"]):
            self.best = min(self.best, metrics["val_loss"])
        # Non-finite numbers become NaN: ASHA's cut-off (np.nanpercentile) skips NaN, while
        # an inf among a rung's values would turn the cut-off into NaN and stop nothing.
        metrics = {
            k: math.nan if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in metrics.items()
        }
        metrics.update(
            self.extra,
            best_val_loss=self.best if math.isfinite(self.best) else math.nan,
            outside_epochs_seconds=outside,
            report_seconds=self.report_seconds,
            trial_started_at=self.started_at,
            epoch_ended_at=time.time(),
            import_started_at=IMPORT_STARTED_AT,
            code_imported_at=CODE_IMPORTED_AT,
        )
        if folder is None:
            self._report(metrics)
            return
        metrics["checkpoint_seconds"] = written
        try:
            self._report(metrics, tune.Checkpoint.from_directory(folder))
        finally:  # also when Tune stops the trial inside its report
            shutil.rmtree(folder, ignore_errors=True)

    def _report(self, metrics: dict, checkpoint: tune.Checkpoint | None = None) -> None:
        # Returns when Tune's controller lets the trial go on (never, when it stops it).
        t0 = time.perf_counter()
        tune.report(metrics, checkpoint=checkpoint)
        self.report_seconds = time.perf_counter() - t0
