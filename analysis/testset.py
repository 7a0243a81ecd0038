"""The best model's test-set numbers, and the checks that its weights and numbers are sound.

Validation chose the model; the test set is used here only, for the numbers it reports.
"""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import torch

from analysis.clock import Clock
from analysis.evaluation import KNN_K, iwae_bound, knn_accuracy
from analysis.summary import TestNumbers
from vae_core.data import MnistSplits
from vae_core.errors import CheckpointError
from vae_core.evaluate import OUTLIER_IQRS, Evaluation, evaluate, latent_means
from vae_core.model import ConvVAE

# Outlier test images listed in best_trial.json, worst first; `test.outliers` counts them all.
# A model that breaks on many images has a bad median already: 20 show what went wrong.
OUTLIERS_LISTED = 20


def measure_test_set(
    model: ConvVAE,
    data: MnistSplits,
    dev: torch.device,
    *,
    iwae_k: int,
    progress: bool,
    clock: Clock,
) -> tuple[TestNumbers, np.ndarray]:
    """Test negative ELBO (mean, median, 99th percentile, outliers), IWAE bound, active units
    and kNN accuracy; and the test latents."""
    test_x = data.test_x.to(dev)
    elbo = evaluate(model, test_x)  # fp32: reported numbers must not depend on the hardware
    clock.lap("test_elbo")
    iwae, iwae_se = iwae_bound(model, test_x, k=iwae_k, progress=progress)
    clock.lap("iwae")
    test_z = latent_means(model, test_x).cpu().numpy()
    train_z = latent_means(model, data.train_x.to(dev)).cpu().numpy()
    knn = knn_accuracy(train_z, data.train_y.numpy(), test_z, data.test_y.numpy())
    clock.lap("knn")
    numbers = {
        "images": len(test_x),
        "loss": elbo.loss,
        "recon": elbo.recon,
        "kl": elbo.kl,
        **outlier_numbers(elbo),
        "iwae_nll": iwae,
        "iwae_nll_stderr": iwae_se,
        "iwae_k": iwae_k,
        "active_units": elbo.active_units,
        "z_dim": model.z_dim,
        "knn_accuracy": knn,
        "knn_k": KNN_K,
    }
    return TestNumbers.from_dict(numbers), test_z


def outlier_numbers(elbo: Evaluation, listed: int = OUTLIERS_LISTED) -> dict:
    """best_trial.json's robust test statistics: the median, the 99th percentile, the mean
    with outliers capped, the fence and the outlier images (the `listed` worst, by test index).

    `elbo` must cover the whole test set in order, so its indices are test indices. A value
    that is not finite is written as null (JSON has no NaN).
    """
    return {
        "median": elbo.median,
        "p99": elbo.p99,
        "robust_loss": elbo.robust_loss,
        "outlier_fence": elbo.fence,
        "outlier_iqrs": OUTLIER_IQRS,
        "outliers": len(elbo.outliers),
        "outlier_images": [
            {"index": int(i), "loss": float(v) if math.isfinite(v) else None}
            for i, v in zip(elbo.outliers[:listed], elbo.outlier_losses[:listed], strict=True)
        ],
    }


def check_weights(model: ConvVAE, checkpoint: str) -> None:
    # Weights that load but hold NaN or inf (a checkpoint saved just before divergence) would
    # otherwise surface later as a JSON or t-SNE error far from their cause. One image far
    # out of distribution is no reason to reject a model: the evaluation counts it instead.
    bad = [
        name
        for name, t in [*model.named_parameters(), *model.named_buffers()]
        if t.is_floating_point() and not bool(t.isfinite().all())
    ]
    if bad:
        raise CheckpointError(
            f"checkpoint {checkpoint} has non-finite weights ({', '.join(bad[:5])}"
            f"{f' and {len(bad) - 5} more' if len(bad) > 5 else ''})"
        )


def check_finite(test: TestNumbers, checkpoint: str) -> None:
    # With finite weights, the bounded log-variance and float64 sums, the test numbers are
    # finite even when some images are outliers; a non-finite one means the model is broken.
    values = {f.name: getattr(test, f.name) for f in fields(test)}
    bad = [k for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise CheckpointError(
            f"checkpoint {checkpoint} gives non-finite test numbers ({', '.join(bad)})"
        )
