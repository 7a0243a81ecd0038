"""`vae-sweep train` end to end, through a subprocess as a user runs it."""

import re
import subprocess
import sys

import pandas as pd
import pytest

from results_folder import load_checkpoint

FAST = [
    "--data",
    "mnist-5k",
    "--train-limit",
    "500",
    "--z-dim",
    "4",
    "--fc-size",
    "64",
    "--threads",
    "1",
]


def vae_sweep(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "vae_sweep", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_train_writes_metrics_and_model(tmp_path):
    out = tmp_path / "run"
    proc = vae_sweep("train", *FAST, "--epochs", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "test negative ELBO" in proc.stdout
    # the test set summarised as in `vae-sweep analyze`: median, 99th percentile, outliers
    assert "median" in proc.stdout and "99th percentile" in proc.stdout
    outliers = r"no outlier images \(fence [\d.]+\)|\d+ outlier images? above [\d.]+"
    assert re.search(outliers, proc.stdout)
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert metrics["epoch"].tolist() == [1, 2]
    assert {
        "train_loss",
        "val_loss",
        "val_recon",
        "val_kl",
        "val_mean",
        "val_median",
        "val_p99",
        "val_outliers",
        "active_units",
        "epoch_seconds",
        "images_per_second",
        "diverged",
    } <= set(metrics.columns)
    state = load_checkpoint(out / "model.pt")
    assert state["epoch"] == 2 and state["config"]["z_dim"] == 4

    again = vae_sweep("train", *FAST, "--epochs", "1", "--out", str(out))
    assert again.returncode == 2 and "not empty" in again.stderr
    assert pd.read_parquet(out / "metrics.parquet")["epoch"].tolist() == [1, 2]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--z-dim", "0"], "z_dim must be a positive integer, but got 0"),
        (
            ["--batch-size", "1"],
            "batch_size must be an integer of at least 2 (BatchNorm needs 2 images per batch "
            "in training), but got 1",
        ),
        (["--lr", "-0.1"], "lr must be a positive finite number, but got -0.1"),
        (["--data", "svhn"], "data must be one of auto, mnist, mnist-5k, but got 'svhn'"),
        (
            ["--data", "mnist", "--data-root", "/nonexistent/mnist"],
            "data root '/nonexistent/mnist'",
        ),
        (["--device", "cuda"], "no CUDA GPU is visible"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    out = tmp_path / "run"
    proc = vae_sweep("train", *FAST, *args, "--out", str(out))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
