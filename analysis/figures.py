"""The report's plotly figures, each built from plain tables and arrays (no file access)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

STATUS_COLORS = {
    "completed": "#1f77b4",
    "early_stopped": "#ff7f0e",
    "diverged": "#d62728",
    "error": "#7f7f7f",
}
BEST_COLOR = "#2ca02c"
FONT = dict(family="-apple-system, Segoe UI, Helvetica, Arial, sans-serif", size=13)
MARGIN = dict(l=60, r=20, t=40, b=50)
GRID_WIDTH = 540  # px: a half-width column of the report


def log_scaled(values: pd.Series) -> bool:
    """Positive values spanning at least a decade read better on a log axis (e.g. lr)."""
    v = values.dropna()
    return len(v) > 1 and bool((v > 0).all()) and v.max() / v.min() >= 10


def loss_curves(
    epochs: pd.DataFrame,
    trials: pd.DataFrame,
    *,
    metric: str,
    best_id: str,
    params: list[str],
    rungs: list[int],
) -> go.Figure:
    """`metric` per epoch for every trial, coloured by status; ASHA's rungs as dotted lines.

    A curve that ends before the others at a rung is a trial ASHA stopped there.
    """
    fig = go.Figure()
    status = dict(zip(trials["trial_id"], trials["status"], strict=True))
    label = {
        row.trial_id: ", ".join(f"{p}={fmt(getattr(row, p))}" for p in params)
        for row in trials.itertuples()
    }
    shown = set()
    for trial_id, rows in epochs.sort_values("epoch").groupby("trial_id", sort=True):
        if trial_id == best_id:
            continue  # drawn last, on top
        s = status.get(trial_id, "error")
        fig.add_trace(
            go.Scatter(
                x=rows["epoch"],
                y=rows[metric],
                mode="lines+markers",
                name=s.replace("_", " "),
                legendgroup=s,
                showlegend=s not in shown,
                opacity=0.75,
                line=dict(color=STATUS_COLORS.get(s, "#7f7f7f"), width=1.5),
                marker=dict(size=5),
                hovertemplate=f"{trial_id} ({s})<br>{label.get(trial_id, '')}<br>epoch %{{x}}: "
                f"{metric} %{{y:.2f}}<extra></extra>",
            )
        )
        shown.add(s)
    best = epochs[epochs["trial_id"] == best_id].sort_values("epoch")
    fig.add_trace(
        go.Scatter(
            x=best["epoch"],
            y=best[metric],
            mode="lines+markers",
            name=f"best: {best_id}",
            line=dict(color=BEST_COLOR, width=3.5),
            marker=dict(size=7),
            hovertemplate=f"best {best_id}<br>{label.get(best_id, '')}<br>epoch %{{x}}: "
            f"{metric} %{{y:.2f}}<extra></extra>",
        )
    )
    for rung in rungs:
        fig.add_vline(x=rung, line=dict(color="#999", dash="dot", width=1))
    finite = epochs[metric][np.isfinite(epochs[metric])]
    if len(finite) > 4:  # a nearly diverged trial's spike must not flatten all other curves
        low, q90 = finite.min(), finite.quantile(0.9)
        if finite.max() > q90 + 2 * (q90 - low):
            fig.update_yaxes(range=[low - 0.05 * (q90 - low), q90 + 0.5 * (q90 - low)])
    fig.update_layout(
        xaxis_title="epoch",
        yaxis_title=f"validation {metric} (nats/image)",
        legend=dict(title="trial status"),
        height=420,
        margin=MARGIN,
        font=FONT,
        template="plotly_white",
    )
    if epochs["epoch"].max() <= 20:
        fig.update_xaxes(dtick=1)
    return fig


def parallel_coordinates(
    trials: pd.DataFrame,
    scores: pd.Series,
    *,
    params: list[str],
    log_params: list[str],
    metric: str,
) -> go.Figure | None:
    """One line per finished trial across its hyperparameters, ending at its best metric."""
    ok = np.isfinite(scores.to_numpy(dtype=float))
    if ok.sum() < 1:
        return None
    rows, score = trials[ok], scores[ok].astype(float)
    dims = []
    for p in params:
        values = rows[p].astype(float)
        if p in log_params:  # log10 positions, labelled with the values themselves
            ticks = _log_ticks(values.min(), values.max())
            dims.append(
                dict(
                    label=f"{p} (log)",
                    values=np.log10(values),
                    range=[np.log10(ticks[0]), np.log10(ticks[-1])],
                    tickvals=np.log10(ticks),
                    ticktext=[fmt(t) for t in ticks],
                )
            )
        else:
            dims.append(dict(label=p, values=values, tickformat=".3~g"))
    dims.append(dict(label=f"best {metric}", values=score, tickformat=".1f"))
    fig = go.Figure(
        go.Parcoords(
            line=dict(
                color=score, colorscale="Viridis_r", showscale=True, colorbar=dict(title=metric)
            ),
            dimensions=dims,
            labelfont=dict(size=13),
            tickfont=dict(size=11),
        )
    )
    fig.update_layout(height=380, margin=dict(l=70, r=70, t=60, b=30), font=FONT)
    return fig


def _log_ticks(low: float, high: float) -> list[float]:
    """The ends, and 1-2-5 steps per decade between them not crowding an end."""
    span = np.log10(high) - np.log10(low) or 1.0
    decades = range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
    steps = [m * 10.0**d for d in decades for m in (1, 2, 5)]
    inner = [
        t
        for t in steps
        if min(np.log10(t) - np.log10(low), np.log10(high) - np.log10(t)) > 0.08 * span
    ]
    return [float(low), *inner, float(high)]


def importance_bars(importances: dict[str, float], source: str) -> go.Figure:
    names = list(importances)[::-1]  # largest at the top
    fig = go.Figure(
        go.Bar(
            x=[importances[n] for n in names],
            y=names,
            orientation="h",
            marker_color="#4c78a8",
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis_title=f"importance ({source})",
        xaxis=dict(range=[0, 1]),
        height=120 + 40 * len(names),
        margin=MARGIN,
        font=FONT,
        template="plotly_white",
    )
    return fig


def image_grid(
    rows: list[np.ndarray],
    row_labels: list[str],
    *,
    title: str | None = None,
) -> go.Figure:
    """Rows of 28x28 grey images in [0, 1] (each row (n, 28, 28)) as one picture."""
    pad, cell = 2, 28 + 2
    n = max(len(r) for r in rows)
    grid = np.full((len(rows) * cell + pad, n * cell + pad), 0.5, dtype=np.float32)
    for i, images in enumerate(rows):
        for j, image in enumerate(images):
            y, x = pad + i * cell, pad + j * cell
            grid[y : y + 28, x : x + 28] = image
    fig = px.imshow((grid * 255).astype(np.uint8), binary_string=True)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(
        tickvals=[pad + i * cell + 14 for i in range(len(rows))],
        ticktext=row_labels,
        showgrid=False,
        ticks="",
        visible=any(row_labels),
    )
    # Height from the picture's aspect at the report's half-page width, so no band is blank.
    left = 100 if any(row_labels) else 5
    height = int((GRID_WIDTH - left) * grid.shape[0] / grid.shape[1]) + 10
    fig.update_layout(
        height=height, margin=dict(l=left, r=5, t=5, b=5), font=FONT, title=title, hovermode=False
    )
    return fig


def fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.4g}"
    return str(value)
