"""One training run to a folder: what `vae-sweep train` does, as a function."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from results_folder import save_checkpoint
from results_folder.storage import write_parquet
from vae_core.config import TrainConfig
from vae_core.data import load_mnist
from vae_core.device import resolve_device
from vae_core.errors import ConfigError
from vae_core.evaluate import evaluate
from vae_core.train import TrainResult, train


def train_to_folder(config: TrainConfig, out: str | Path, *, force: bool = False) -> dict:
    """Train, writing metrics.parquet and model.pt into `out` after every epoch.

    Everything that can be checked is checked before the folder is touched, so a bad
    option leaves nothing behind. Returns the final validation and test numbers.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"--out {out} is not empty; pass --force to overwrite it")
    resolve_device(config.device)  # fail on a missing GPU before loading anything
    data = load_mnist(config.data, config.data_root)

    bar = tqdm(total=config.epochs, desc="train", unit="epoch", disable=not sys.stderr.isatty())

    def report(metrics: dict, state: dict | None) -> None:
        out.mkdir(parents=True, exist_ok=True)
        write_parquet(pd.DataFrame(result_rows + [metrics]), str(out / "metrics.parquet"))
        result_rows.append(metrics)
        if state is not None:
            save_checkpoint(state, out / "model.pt")
        bar.set_postfix(train=f"{metrics['train_loss']:.1f}", val=f"{metrics['val_loss']:.1f}")
        bar.update(1)

    result_rows: list[dict] = []
    try:
        result: TrainResult = train(config, report, data=data)
    finally:
        bar.close()
    summary = {
        "epochs": len(result.history),
        "diverged": result.diverged,
        "device": result.device,
        "precision": result.precision,
        "data": data.source,
    }
    if result.diverged or not result.history:
        return summary
    test = evaluate(result.model, data.test_x.to(result.device), precision=result.precision)
    last = result.history[-1]
    summary.update(
        val_loss=last["val_loss"],
        val_mean=last["val_mean"],
        test_loss=test.loss,
        test_recon=test.recon,
        test_kl=test.kl,
        test_median=test.median,
        test_p99=test.p99,
        test_fence=test.fence,
        test_outliers=list(test.outliers),
        test_outlier_losses=list(test.outlier_losses),
    )
    return summary
