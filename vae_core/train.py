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

from vae_core.checkpoint import FORMAT
from vae_core.config import TrainConfig
from vae_core.data import MnistSplits, load_mnist
from vae_core.device import configure_backends, resolve_device, resolve_precision
from vae_core.errors import CheckpointError
from vae_core.evaluate import autocast, evaluate, to_float
from vae_core.loss import negative_elbo
from vae_core.model import ConvVAE

Report = Callable[[dict, "dict | None"], None]
DIVERGENCE_CHECK_EVERY = 50  # steps between the (host-syncing) finiteness checks


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
    precision = resolve_precision(config.precision, device)
    configure_backends(device, config.threads)
    splits = data if data is not None else load_mnist(config.data, config.data_root)
    splits = splits.limit_train(config.train_limit).to(device)

    # The initial weights depend on the seed alone; fork_rng leaves the caller's RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = ConvVAE(config.z_dim, config.fc_size)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    shuffle = torch.Generator().manual_seed(config.seed)  # CPU: randperm's indices
    noise = torch.Generator(device=device).manual_seed(config.seed)  # reparameterisation
    result = TrainResult(model=model, device=str(device), precision=precision)
    start = 0
    if checkpoint is not None:
        start = _restore(checkpoint, config, model, optimizer, shuffle, noise)
        result.history = list(checkpoint.get("history", []))
        result.state = checkpoint
    forward = torch.compile(model) if config.compile else model

    n = len(splits.train_x)
    for epoch in range(start + 1, config.epochs + 1):
        t0 = time.perf_counter()
        train_loss = _train_epoch(
            forward, optimizer, splits.train_x, config.batch_size, shuffle, noise, device, precision
        )
        t1 = time.perf_counter()
        val = (
            evaluate(model, splits.val_x, precision=precision)
            if math.isfinite(train_loss)
            else {"loss": math.nan, "recon": math.nan, "kl": math.nan, "active_units": 0}
        )
        metrics = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val["loss"],
            "val_recon": val["recon"],
            "val_kl": val["kl"],
            "active_units": val["active_units"],
            "epoch_seconds": time.perf_counter() - t0,
            "images_per_second": n / (t1 - t0),
            "diverged": not (math.isfinite(train_loss) and math.isfinite(val["loss"])),
        }
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


def _train_epoch(model, optimizer, images, batch_size, shuffle, noise, device, precision):
    """One pass over `images` in a random order; returns the mean loss, NaN if it diverged."""
    model.train()
    n = len(images)
    perm = torch.randperm(n, generator=shuffle).to(device)
    loss_sum = torch.zeros((), device=device)
    for step, begin in enumerate(range(0, n, batch_size)):
        idx = perm[begin : begin + batch_size]
        if len(idx) < 2:  # BatchNorm cannot normalise a batch of one in training mode
            continue
        x = to_float(images[idx])
        with autocast(device, precision):
            logits, mu, logvar = model(x, generator=noise)
        loss = negative_elbo(logits, x, mu, logvar).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # Accumulate on the device: a per-step .item() would stall the GPU every step.
        loss_sum += loss.detach() * len(idx)
        if step % DIVERGENCE_CHECK_EVERY == 0 and not torch.isfinite(loss_sum).item():
            return math.nan
    return loss_sum.item() / n


def _cpu(obj):
    """A deep copy on the CPU: the state must not change as training goes on."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu(v) for v in obj]
    return obj


def _state(config, model, optimizer, shuffle, noise, epoch, history) -> dict:
    return {
        "format": FORMAT,
        "config": config.to_dict(),
        "epoch": epoch,
        "model": _cpu(model.state_dict()),
        "optimizer": _cpu(optimizer.state_dict()),
        "rng": {"shuffle": shuffle.get_state(), "noise": noise.get_state()},
        "history": [dict(m) for m in history],
    }


def _restore(state, config, model, optimizer, shuffle, noise) -> int:
    """Load a checkpoint state into the fresh objects; returns the epoch it ended."""
    saved = state.get("config", {})
    for key in ("z_dim", "fc_size"):
        if saved.get(key) != getattr(config, key):
            raise CheckpointError(
                f"checkpoint has {key}={saved.get(key)!r} but the config asks for "
                f"{getattr(config, key)!r}"
            )
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        shuffle.set_state(state["rng"]["shuffle"])
        noise.set_state(state["rng"]["noise"].cpu())  # generator states live on the CPU
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        raise CheckpointError(f"checkpoint does not match the model: {err}") from err
    return int(state["epoch"])
