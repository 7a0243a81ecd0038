"""The t-SNE map of test-set latent means: sampling, embedding, trustworthiness, table, figure."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from sklearn.manifold import TSNE, trustworthiness
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from analysis.figures import FONT

log = logging.getLogger(__name__)
SEED = 0  # the post's random_state; also seeds the stratified sample
INIT = "pca"  # the post's initialisation: stabler global layout than "random"
TRUST_K = 10  # neighbours checked by the trustworthiness score
MAX_ITER = 1000  # scikit-learn's default: 250 early-exaggeration iterations, then 750
ITERATION = re.compile(r"\[t-SNE\] Iteration (\d+):")
MIN_POINTS = 100  # t-SNE's perplexity of 30 needs several times that many points
DIGIT_COLORS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]  # plotly's D3 palette: digit d gets color d


def stratified_sample(labels: np.ndarray, n: int | None, *, seed: int = SEED) -> np.ndarray:
    """Sorted indices of `n` items with every label in its share (all items if n is None)."""
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    idx, _ = train_test_split(
        np.arange(len(labels)), train_size=n, stratify=labels, random_state=seed
    )
    return np.sort(idx)


def embed(latents: np.ndarray, *, seed: int = SEED, progress: bool = False) -> np.ndarray:
    """2-D t-SNE of (N, z_dim) latents, as in the post: init="pca", a fixed random_state."""
    start = time.perf_counter()
    tsne = TSNE(
        n_components=2,
        init=INIT,
        random_state=seed,
        max_iter=MAX_ITER,
        verbose=2 if progress else 0,
    )
    bar = tqdm(
        total=MAX_ITER,
        desc=f"t-SNE of {len(latents)} points",
        unit="it",
        disable=not progress,
        leave=False,
    )
    # scikit-learn has no callback, but logs every 50th iteration to stdout when verbose:
    # those lines move the bar (and stay off the terminal).
    with bar, contextlib.redirect_stdout(_IterationFeed(bar)):
        coords = tsne.fit_transform(latents.astype(np.float64))
    log.info("t-SNE of %d points took %.1f s", len(latents), time.perf_counter() - start)
    return coords


class _IterationFeed(io.TextIOBase):
    def __init__(self, bar: tqdm) -> None:
        self.bar = bar

    def write(self, text: str) -> int:
        if (found := ITERATION.search(text)) and int(found.group(1)) > self.bar.n:
            self.bar.update(int(found.group(1)) - self.bar.n)
        return len(text)


def map_trustworthiness(latents: np.ndarray, coords: np.ndarray, *, k: int = TRUST_K) -> float:
    """How well the map keeps each point's k latent neighbours near it (1 = perfectly)."""
    return float(trustworthiness(latents, coords, n_neighbors=k))


def tsne_table(
    indices: np.ndarray,
    labels: np.ndarray,
    latents: np.ndarray,
    coords: np.ndarray,
) -> pd.DataFrame:
    """One row per mapped test image: its index, digit, map position and latent mean."""
    table = pd.DataFrame(
        {
            "test_index": indices.astype(np.int64),
            "label": labels.astype(np.int64),
            "tsne_x": coords[:, 0].astype(np.float64),
            "tsne_y": coords[:, 1].astype(np.float64),
        }
    )
    means = pd.DataFrame(
        latents.astype(np.float32), columns=[f"mu_{d}" for d in range(latents.shape[1])]
    )
    return pd.concat([table, means], axis=1)


def tsne_figure(table: pd.DataFrame, *, title: str) -> go.Figure:
    """Scatter coloured by digit (one trace per digit); beside it the raw latents if z_dim=2."""
    raw = [c for c in table.columns if c.startswith("mu_")] == ["mu_0", "mu_1"]
    panels = [("tsne_x", "tsne_y")] + ([("mu_0", "mu_1")] if raw else [])
    fig = make_subplots(
        rows=1,
        cols=len(panels),
        horizontal_spacing=0.08,
        subplot_titles=["t-SNE of the latent means", "raw latent means (z_dim = 2)"][: len(panels)],
    )
    for col, (x, y) in enumerate(panels, start=1):
        for digit in range(10):
            rows = table[table["label"] == digit]
            fig.add_trace(
                go.Scatter(
                    x=rows[x],
                    y=rows[y],
                    mode="markers",
                    name=str(digit),
                    legendgroup=str(digit),
                    showlegend=col == 1,
                    customdata=rows["test_index"],
                    marker=dict(size=4, color=DIGIT_COLORS[digit], opacity=0.75),
                    hovertemplate=f"digit {digit}<br>test image #%{{customdata}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(showticklabels=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, zeroline=False)
    fig.update_layout(
        title=title,
        legend=dict(title="digit", itemsizing="constant"),
        height=620,
        width=None,
        margin=dict(l=20, r=20, t=80, b=20),
        font=FONT,
        template="plotly_white",
        hovermode="closest",
    )
    return fig
