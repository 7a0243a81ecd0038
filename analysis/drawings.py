"""What the best model draws: test digits and their reconstructions, samples from the prior,
and the outlier test images beside their reconstructions."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from analysis.evaluation import prior_samples, reconstructions
from analysis.image_grid import image_grid
from analysis.report_tables import nats
from analysis.summary import TestNumbers
from vae_core.data import MnistSplits
from vae_core.model import ConvVAE

RECON_PER_DIGIT = 2  # test digits of each class shown beside their reconstructions
PRIOR_SAMPLES = 40  # four rows of ten
OUTLIERS_SHOWN = 10  # worst outlier test images drawn: one row at half the page's width


def digit_figures(model: ConvVAE, data: MnistSplits) -> dict[str, go.Figure]:
    """Test digits above their reconstructions, and samples from the prior."""
    images = data.test_x[_per_digit(data.test_y.numpy(), RECON_PER_DIGIT)]
    recon = reconstructions(model, images.to(next(model.parameters()).device))
    rows, labels = [], []
    for r in range(RECON_PER_DIGIT):
        part = slice(r * 10, (r + 1) * 10)
        rows += [images[part].squeeze(1).float().numpy() / 255, recon[part]]
        labels += ["original", "reconstruction"]
    prior = prior_samples(model, PRIOR_SAMPLES)
    return {
        "reconstructions": image_grid(rows, labels),
        "prior-samples": image_grid(
            [prior[i : i + 10] for i in range(0, PRIOR_SAMPLES, 10)], [""] * (PRIOR_SAMPLES // 10)
        ),
    }


def outlier_figure(
    model: ConvVAE, data: MnistSplits, test: TestNumbers
) -> tuple[go.Figure | None, list[tuple[int, int, str]]]:
    """The worst outlier test images above their reconstructions, captioned with their test
    index and negative ELBO; and a table of every listed one (index, digit, value)."""
    listed = test.outlier_images
    rows = [(o.index, int(data.test_y[o.index]), nats(o.loss)) for o in listed]
    if not listed:
        return None, rows
    idx = [o.index for o in listed[:OUTLIERS_SHOWN]]
    images = data.test_x[idx]
    recon = reconstructions(model, images.to(next(model.parameters()).device))
    fig = image_grid(
        [images.squeeze(1).float().numpy() / 255, recon],
        ["test image", "reconstruction"],
        captions=[f"#{o.index}<br>{nats(o.loss)}" for o in listed[:OUTLIERS_SHOWN]],
    )
    return fig, rows


def _per_digit(labels: np.ndarray, per_digit: int) -> list[int]:
    """Test indices ordered round by round: the r-th image of digit 0, 1, ..., 9."""
    firsts = [np.flatnonzero(labels == d)[:per_digit] for d in range(10)]
    return [int(firsts[d][r]) for r in range(per_digit) for d in range(10)]
