"""train(config, report, checkpoint): one VAE training run, the same for the CLI and a Ray trial.

No Ray, no files: progress goes out through `report(metrics, checkpoint_state)` once per epoch,
and the caller decides what to print or save.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from vae_core.checkpoint import FORMAT, check_architecture
from vae_core.config import TrainConfig
from vae_core.data import MnistSplits, load_mnist
from vae_core.device import configure_backends, resolve_device, resolve_precision
from vae_core.errors import CheckpointError
from vae_core.evaluate import Evaluation, evaluate, recalibrate_batchnorm
from vae_core.model import ConvVAE
from vae_core.schedule import LrSchedule, set_lr
from vae_core.step import (
    load_optimizer_state,
    make_optimizer,
    make_step,
    optimizer_state,
    uses_cuda_graph,
)

Report = Callable[[dict, "dict | None"], None]
DIVERGENCE_CHECK_EVERY = 50  # steps between the (host-syncing) finiteness checks
# An epoch whose mean training loss exceeds DIVERGENCE_FACTOR times the run's best epoch, or
# times COIN_FLIP_NATS before any epoch did better, has diverged: a healthy run's epochs stay
# within ~2x of each other (the first is the highest), while a blow-up grows by orders of
# magnitude, and with the bounded log-variance it usually stays finite while doing so.
DIVERGENCE_FACTOR = 10.0
COIN_FLIP_NATS = 784 * math.log(2)  # a model that calls every pixel a coin flip: 543.4 nats
# The metrics of one epoch, in order, and the kind of each: what `report` receives, and (after
# the trial id) the columns of a sweep's epochs.parquet (results_folder.schema).
EPOCH_METRICS = {
    "epoch": "int",
    "train_loss": "float",
    "val_loss": "float",  # the mean with outlier images capped (vae_core.evaluate): optimised
    "val_mean": "float",  # the plain mean negative ELBO
    "val_recon": "float",
    "val_kl": "float",
    "val_median": "float",
    "val_p99": "float",
    "val_outliers": "int",  # validation images beyond the outlier fence
    "active_units": "int",
    "epoch_seconds": "float",
    "images_per_second": "float",
    "diverged": "bool",
}
# The validation losses among them, in nats: each can pick the best trial.
VAL_COLUMNS = ("val_loss", "val_mean", "val_recon", "val_kl", "val_median", "val_p99")

# The sizes of a random generator's state: Philox's seed and offset on CUDA, 8 bytes each;
# the Mersenne Twister's state on the CPU.
CUDA_GENERATOR_STATE_BYTES = 16
CPU_GENERATOR_STATE_BYTES = torch.Generator().get_state().numel()


@dataclass
class TrainResult:
    model: ConvVAE
    history: list[dict] = field(default_factory=list)  # one metrics dict per epoch, resumed too
    diverged: bool = False
    state: dict | None = None  # the last finite checkpoint state
    device: str = "cpu"
    precision: str = "fp32"


def train(
    config: TrainConfig,
    report: Report | None = None,
    checkpoint: dict | None = None,
    *,
    data: MnistSplits | None = None,
) -> TrainResult:
    """Train a ConvVAE with Adam; resume from `checkpoint` (a loaded state) when given.

    Args:
        config: the run's settings.
        report: called after each epoch with the metrics and a checkpoint state (None when
            the run diverged: a NaN model is never handed out to be saved).
        checkpoint: a state from an earlier `report`/`load_checkpoint` to continue from.
        data: already-loaded splits (a sweep loads them once); otherwise loaded from config.

    Raises:
        DeviceError, DataError, CheckpointError: bad device, data or checkpoint.
    """
    device = resolve_device(config.device)
    graph = uses_cuda_graph(device, config.cuda_graph, config.compile)
    precision = resolve_precision(
        config.precision, device, batch_size=config.batch_size, graph=graph
    )
    configure_backends(device, config.threads)
    splits = data if data is not None else load_mnist(config.data, config.data_root)
    splits = splits.limit_train(config.train_limit).to(device)

    model, optimizer, shuffle, noise = _fresh(config, device, graph)
    result = TrainResult(model=model, device=str(device), precision=precision)
    start = 0
    if checkpoint is not None:
        start = _restore(checkpoint, config, model, optimizer, shuffle, noise)
        result.history = list(checkpoint.get("history", []))
        result.state = checkpoint
    forward = torch.compile(model) if config.compile else model
    # After the restore: a graph captures the tensors it finds, so they must hold the state.
    step = make_step(
        model, forward, optimizer, noise, splits.train_x, config.batch_size, precision, graph=graph
    )
    steps = steps_per_epoch(len(splits.train_x), config.batch_size)
    schedule = LrSchedule(config.lr_schedule, config.lr, total_steps=config.epochs * steps)
    for epoch in range(start + 1, config.epochs + 1):
        metrics = _epoch(step, splits, config, precision, shuffle, schedule, epoch, result.history)
        result.history.append(metrics)
        if metrics["diverged"]:
            result.diverged = True
            if report is not None:
                report(metrics, None)
            break
        if report is not None or epoch == config.epochs:
            result.state = _state(config, model, optimizer, shuffle, noise, epoch, result.history)
        if report is not None:
            report(metrics, result.state)
    return result


def _fresh(config: TrainConfig, device: torch.device, graph: bool):
    """The run's model, optimizer and random generators, before any checkpoint is restored."""
    # The initial weights depend on the seed alone; fork_rng leaves the caller's RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = ConvVAE(config.z_dim, config.fc_size)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config.lr, capturable=graph)
    shuffle = torch.Generator().manual_seed(config.seed)  # CPU: randperm's indices
    noise = torch.Generator(device=device).manual_seed(config.seed)  # reparameterisation
    return model, optimizer, shuffle, noise


def _epoch(step, splits, config, precision, shuffle, schedule, epoch, history) -> dict:
    """Train one epoch, then (unless training diverged) validate: the epoch's EPOCH_METRICS."""
    n = len(splits.train_x)
    t0 = time.perf_counter()
    train_loss = _train_epoch(step, n, config.batch_size, shuffle, schedule, epoch)
    t1 = time.perf_counter()
    diverged = training_diverged(train_loss, history)
    val = None
    if not diverged:
        recalibrate_batchnorm(
            step.model, splits.train_x, batch_size=config.batch_size, precision=precision
        )
        val = evaluate(step.model, splits.val_x, precision=precision)
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        **_val_metrics(val),
        "epoch_seconds": time.perf_counter() - t0,
        "images_per_second": n / (t1 - t0),
        "diverged": diverged,
    }


def training_diverged(train_loss: float, history: list[dict]) -> bool:
    """Whether training diverged this epoch: its loss is non-finite, or above DIVERGENCE_FACTOR
    times the best epoch's (or the coin-flip model's, if lower). Validation never decides it:
    a validation spike is an evaluation artifact, and the model may still be sound."""
    if not math.isfinite(train_loss):
        return True
    best = min(
        (m["train_loss"] for m in history if math.isfinite(m["train_loss"])),
        default=COIN_FLIP_NATS,
    )
    return train_loss > DIVERGENCE_FACTOR * min(best, COIN_FLIP_NATS)


def _val_metrics(val: Evaluation | None) -> dict:
    """The validation columns of an epoch's metrics; NaN when it was not evaluated."""
    if val is None:
        return dict.fromkeys(VAL_COLUMNS, math.nan) | {"val_outliers": 0, "active_units": 0}
    return {
        "val_loss": val.robust_loss,
        "val_mean": val.loss,
        "val_recon": val.recon,
        "val_kl": val.kl,
        "val_median": val.median,
        "val_p99": val.p99,
        "val_outliers": len(val.outliers),
        "active_units": val.active_units,
    }


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimiser steps in an epoch of n images: the full batches, and a short last one unless
    it is a single image (BatchNorm cannot normalise a batch of one in training mode)."""
    return n // batch_size + (n % batch_size >= 2)


def _train_epoch(step, n, batch_size, shuffle, schedule=None, epoch=1):
    """One pass over the n training images in a random order: full batches and the short last
    one (vae_core.step says how each runs), each at the rate `schedule` (None: the optimizer's
    own) gives its step. Returns the mean loss per image, NaN if it was not finite."""
    step.model.train()
    perm = torch.randperm(n, generator=shuffle).to(step.images.device)
    step.loss_sum.zero_()
    steps = steps_per_epoch(n, batch_size)
    first = (epoch - 1) * steps
    for i in range(steps):
        idx = perm[i * batch_size : (i + 1) * batch_size]
        if schedule is not None and not schedule.constant:  # else the rate is already set
            set_lr(step.optimizer, schedule(first + i))
        step(idx)
        if i % DIVERGENCE_CHECK_EVERY == 0 and not torch.isfinite(step.loss_sum).item():
            return math.nan
    mean = step.loss_sum.item() / n
    return mean if math.isfinite(mean) else math.nan


def _cpu(obj):
    """A deep copy on the CPU: the state must not change as training goes on.

    Copies off a GPU are only queued (into pinned memory, which non_blocking asks for): a
    blocking copy per tensor would wait on the GPU 138 times per checkpoint, and while trials
    share the GPU each wait can last one of the others' time slices. `_state` waits once.
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True, non_blocking=True)
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu(v) for v in obj]
    return obj


def _state(config, model, optimizer, shuffle, noise, epoch, history) -> dict:
    state = {
        "format": FORMAT,
        "config": config.to_dict(),
        "epoch": epoch,
        "model": _cpu(model.state_dict()),
        "optimizer": _cpu(optimizer_state(optimizer)),
        "rng": {"shuffle": shuffle.get_state(), "noise": noise.get_state()},
        "history": [dict(m) for m in history],
    }
    if noise.device.type == "cuda":  # the copies _cpu queued must land before anyone reads them
        torch.cuda.current_stream(noise.device).synchronize()
    return state


def _restore(state, config, model, optimizer, shuffle, noise) -> int:
    """Load a checkpoint state into the fresh objects; returns the epoch it ended."""
    check_architecture(state, config.to_dict(), source="the config")
    try:
        model.load_state_dict(state["model"])
        load_optimizer_state(optimizer, state["optimizer"])
        shuffle.set_state(state["rng"]["shuffle"])
        epoch = int(state["epoch"])
        _restore_noise(noise, state["rng"]["noise"], seed=config.seed, epoch=epoch)
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        raise CheckpointError(f"checkpoint does not match the model: {err}") from err
    return epoch


def _restore_noise(noise: torch.Generator, saved: torch.Tensor, *, seed: int, epoch: int) -> None:
    """The saved noise state, when it was saved on this kind of device.

    A CPU generator (Mersenne Twister, 5,056 bytes of state) and a CUDA one (Philox, 16 bytes)
    cannot take each other's state, so a checkpoint resumed on the other kind of device draws
    from a fresh stream, seeded from the run's seed and the epoch: still reproducible, though
    not the noise the original device would have drawn (which its kernels could not match).
    """
    saved = saved.cpu()  # generator states live on the CPU, whichever device they drive
    other_kind = (
        CUDA_GENERATOR_STATE_BYTES if noise.device.type == "cpu" else CPU_GENERATOR_STATE_BYTES
    )
    if saved.numel() == other_kind:
        noise.manual_seed(seed * 1_000_003 + epoch)
    else:
        noise.set_state(saved)  # any other size is a damaged checkpoint: set_state refuses it
