"""One Ray Tune trial: `vae_core.train` with its per-epoch report turned into `tune.report`.

Ray 2.60: inside a Tune trainable only `ray.tune.report` / `ray.tune.get_checkpoint` work (the
`ray.train.*` forms raise), and a checkpoint is a directory that Ray copies to storage before
`report` returns, so a temporary directory per epoch is enough.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from pathlib import Path

import ray
from ray import tune

from results_folder import load_checkpoint, save_checkpoint
from results_folder.layout import CHECKPOINT_FILE
from sweeps.mps import running_daemon
from sweeps.worker_data import WorkerData
from vae_core.config import TrainConfig
from vae_core.device import resolve_device, resolve_precision
from vae_core.step import uses_cuda_graph
from vae_core.train import train


def run_trial(config: dict, data: WorkerData) -> None:
    """The trainable: `config` is a TrainConfig's fields; `data` comes through the object
    store (`tune.with_parameters`), fetched once per worker, not loaded by every trial."""
    # Ray Train logs every persisted checkpoint at INFO, which the driver would print each epoch.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    train_config = TrainConfig(**config)
    state = _restore()
    history = state["history"] if state else []
    report = TuneReport(history, trains_on(train_config))
    splits = data.on(resolve_device(train_config.device))
    train(train_config, report, state, data=splits)


def trains_on(config: TrainConfig) -> dict:
    """The device type and precision `train` will use for `config`, as the tables record."""
    device = resolve_device(config.device)
    graph = uses_cuda_graph(device, config.cuda_graph, config.compile)
    precision = resolve_precision(
        config.precision, device, batch_size=config.batch_size, graph=graph
    )
    return {"device": device.type, "precision": precision}


def how_gpu_is_shared(device: str) -> str | None:
    """How this process shares its GPU with the node's other trials: "mps" as a client of an
    NVIDIA MPS daemon (one serves this process where CUDA looks for it), else "time-sliced";
    None on a CPU."""
    if device != "cuda":
        return None
    return "mps" if running_daemon() else "time-sliced"


def save_epoch(state: dict) -> str:
    """Write an epoch's checkpoint state into a new temporary folder and return the folder."""
    folder = tempfile.mkdtemp(prefix="vae-sweep-ckpt-")
    try:
        save_checkpoint(state, Path(folder) / CHECKPOINT_FILE)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


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
    so far (resumed epochs included), the device and precision, the Ray node, and how the
    trial shares its GPU (sweep.json's sharing_by_node).
    """

    def __init__(self, history: list[dict], where: dict) -> None:
        self.best = min(
            (m["val_loss"] for m in history if math.isfinite(m["val_loss"])), default=math.inf
        )
        self.extra = {
            **where,
            "node_id": ray.get_runtime_context().get_node_id(),
            "gpu_sharing": how_gpu_is_shared(where["device"]),
        }

    def __call__(self, metrics: dict, state: dict | None) -> None:
        if math.isfinite(metrics["val_loss"]):
            self.best = min(self.best, metrics["val_loss"])
        # Non-finite numbers become NaN: ASHA's cut-off (np.nanpercentile) skips NaN, while
        # an inf among a rung's values would turn the cut-off into NaN and stop nothing.
        metrics = {
            k: math.nan if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in metrics.items()
        }
        metrics.update(
            self.extra, best_val_loss=self.best if math.isfinite(self.best) else math.nan
        )
        if state is None:  # diverged: nothing worth keeping
            tune.report(metrics)
            return
        folder = save_epoch(state)
        try:
            # Returns when Tune's controller lets the trial go on (never, when it stops it).
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        finally:  # also when Tune stops the trial inside its report
            shutil.rmtree(folder, ignore_errors=True)
