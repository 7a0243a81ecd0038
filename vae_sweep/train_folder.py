"""One training run into a folder: what `vae-sweep train` does, as a function."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from results_folder import save_checkpoint
from results_folder.storage import write_parquet
from vae_core.config import TrainConfig
from vae_core.data import load_mnist
from vae_core.device import resolve_device
from vae_core.errors import ConfigError
from vae_core.evaluate import Evaluation, evaluate
from vae_core.train import train


@dataclass(frozen=True)
class TrainedFolder:
    """How a run into a folder ended; the numbers are None when it diverged."""

    epochs: int  # epochs written to metrics.parquet
    diverged: bool
    device: str
    precision: str
    data: str  # the data source used: mnist or mnist-5k
    val_mean: float | None = None  # the last epoch's mean validation negative ELBO
    test: Evaluation | None = None  # the final model on the test set


def train_to_folder(config: TrainConfig, out: str | Path, *, force: bool = False) -> TrainedFolder:
    """Train, writing metrics.parquet and model.pt into `out` after every epoch.

    Everything that can be checked is checked before the folder is touched, so a bad
    option leaves nothing behind.
    """
    out = Path(out)
    _check_out(out, force=force)
    resolve_device(config.device)  # fail on a missing GPU before loading anything
    data = load_mnist(config.data, config.data_root)

    bar = tqdm(total=config.epochs, desc="train", unit="epoch", disable=not sys.stderr.isatty())
    rows: list[dict] = []

    def report(metrics: dict, state: dict | None) -> None:
        out.mkdir(parents=True, exist_ok=True)
        write_parquet(pd.DataFrame(rows + [metrics]), str(out / "metrics.parquet"))
        rows.append(metrics)
        if state is not None:
            save_checkpoint(state, out / "model.pt")
        bar.set_postfix(train=f"{metrics['train_loss']:.1f}", val=f"{metrics['val_loss']:.1f}")
        bar.update(1)

    try:
        result = train(config, report, data=data)
    finally:
        bar.close()
    done = TrainedFolder(
        epochs=len(result.history),
        diverged=result.diverged,
        device=result.device,
        precision=result.precision,
        data=data.source,
    )
    if result.diverged or not result.history:
        return done
    test = evaluate(result.model, data.test_x.to(result.device), precision=result.precision)
    return replace(done, val_mean=result.history[-1]["val_mean"], test=test)


def _check_out(out: Path, *, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"--out {out} is not empty; pass --force to overwrite it")
