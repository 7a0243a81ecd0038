"""The report's plotly figures, each built from plain tables and arrays (no file access)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from vae_core.evaluate import OUTLIER_IQRS

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


# A value is off the scale of a plot when it lies more than OUTLIER_IQRS interquartile ranges
# beyond the quartiles of the sound trials' values: the rule vae_core.evaluate applies to test
# images, so one trial whose loss reached 1e31 no longer flattens every other curve.
OFF_SCALE_COLOR = "#d62728"


def robust_range(values, *, sound=None, iqrs: float = OUTLIER_IQRS) -> tuple[float, float] | None:
    """[low, high] spanning the finite `values` within `iqrs` IQRs of the quartiles of the
    `sound` ones (default: all values), padded 5%; None when no value is finite.

    The quartiles come from the sound trials only, so a diverged trial cannot stretch the
    scale, yet its values inside the fences stay on it. The IQR counts as at least 1% of the
    median's size, so values that barely differ still get a readable span.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    ref = v if sound is None else np.asarray(sound, dtype=float)
    ref = ref[np.isfinite(ref)]
    if len(ref) == 0:
        ref = v
    if len(v) == 0:
        return None
    # "lower": each quartile is a value at or below its rank, never one interpolated towards
    # a blown-up neighbour (with 4 trials, linear interpolation puts Q3 a quarter of the way
    # to 1e31). Losses blow up, not down, so leaning low is the safe side.
    q1, median, q3 = np.percentile(ref, [25, 50, 75], method="lower")
    iqr = max(q3 - q1, 0.01 * abs(median))
    inside = v[(v >= q1 - iqrs * iqr) & (v <= q3 + iqrs * iqr)]
    low, high = float(inside.min()), float(inside.max())
    pad = 0.05 * (high - low) or 0.05 * abs(high) or 1.0
    return low - pad, high + pad


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

    A curve that ends before the others at a rung is a trial ASHA stopped there. The y axis
    spans the finite values of the trials that did not diverge (`robust_range`); every value
    beyond it, or not finite, is also drawn as a triangle on the plot's edge, so a reader sees
    the good curves and that something blew up; a diverged trial's values within the sound
    ones' fences stay on the scale.
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
    values = epochs[metric].to_numpy(dtype=float)
    sound = ~epochs["trial_id"].map(status).isin(("diverged", "error")).to_numpy()
    span = robust_range(values, sound=values[sound])
    if span is not None:
        fig.update_yaxes(range=list(span))
        _edge_markers(fig, epochs, values, span, metric=metric, status=status)
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


def _edge_markers(
    fig: go.Figure,
    epochs: pd.DataFrame,
    values: np.ndarray,
    span: tuple[float, float],
    *,
    metric: str,
    status: dict,
) -> None:
    """One trace of triangles on the top (and one on the bottom) edge of the y axis, at each
    epoch whose value lies beyond `span` or is not finite (NaN, inf: drawn at the top)."""
    low, high = span
    above = ~(values <= high) & ~(values < low)  # NaN and +inf count as above
    for side, mask, edge, symbol in (
        ("above", above, high, "triangle-up"),
        ("below", values < low, low, "triangle-down"),
    ):
        if not mask.any():
            continue
        rows = epochs[mask]
        colors = [STATUS_COLORS.get(status.get(t, "error"), "#7f7f7f") for t in rows["trial_id"]]
        text = [
            f"{t} ({status.get(t, 'error')})<br>epoch {e}: {metric} {fmt(float(v))}"
            for t, e, v in zip(rows["trial_id"], rows["epoch"], values[mask], strict=True)
        ]
        fig.add_trace(
            go.Scatter(
                x=rows["epoch"],
                y=[edge] * len(rows),
                mode="markers",
                name=f"{side} the axis ({len(rows)})",
                marker=dict(
                    symbol=symbol,
                    size=12,
                    color=colors,
                    line=dict(color=OFF_SCALE_COLOR, width=1.5),
                ),
                cliponaxis=False,
                text=text,
                hovertemplate="%{text}<br>(off the scale)<extra></extra>",
            )
        )


def parallel_coordinates(
    trials: pd.DataFrame,
    scores: pd.Series,
    *,
    params: list[str],
    log_params: list[str],
    metric: str,
) -> go.Figure | None:
    """One line per finished trial across its hyperparameters, ending at its best metric.

    The metric's axis spans the finite scores within `robust_range`; a score beyond it, or not
    finite, is drawn at that end of the axis, whose tick label says how many sit there.
    """
    score = scores.astype(float)
    span = robust_range(score)
    if span is None:
        return None
    low, high = span
    values = score.to_numpy()
    above, below = ~(values <= high) & ~(values < low), values < low
    clipped = np.where(above, high, np.where(below, low, values))
    dims = []
    for p in params:
        column = trials[p].astype(float)
        if p in log_params:  # log10 positions, labelled with the values themselves
            ticks = _log_ticks(column.min(), column.max())
            dims.append(
                dict(
                    label=f"{p} (log)",
                    values=np.log10(column),
                    range=[np.log10(ticks[0]), np.log10(ticks[-1])],
                    tickvals=np.log10(ticks),
                    ticktext=[fmt(t) for t in ticks],
                )
            )
        else:
            dims.append(dict(label=p, values=column, tickformat=".3~g"))
    tickvals = _nice_ticks(low, high)
    ticktext = [f"{t:.4g}" for t in tickvals]
    for n, edge, sign in ((above.sum(), high, "\u2265"), (below.sum(), low, "\u2264")):
        if n:
            tickvals.append(edge)
            ticktext.append(f"{sign} {edge:.4g}: {n} off scale")
    dims.append(
        dict(
            label=f"best {metric}",
            values=clipped,
            range=[low, high],
            tickvals=tickvals,
            ticktext=ticktext,
        )
    )
    fig = go.Figure(
        go.Parcoords(
            line=dict(
                color=clipped,
                cmin=low,
                cmax=high,
                colorscale="Viridis_r",
                showscale=True,
                colorbar=dict(title=metric),
            ),
            dimensions=dims,
            labelfont=dict(size=13),
            tickfont=dict(size=11),
        )
    )
    fig.update_layout(height=380, margin=dict(l=70, r=70, t=60, b=30), font=FONT)
    return fig


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round values (1-2-5 steps) strictly inside [low, high]."""
    raw = (high - low) / count
    magnitude = 10.0 ** np.floor(np.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = np.ceil(low / step) * step
    return [float(t) for t in np.arange(first, high, step) if low < t < high]


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
    captions: list[str] | None = None,
) -> go.Figure:
    """Rows of 28x28 grey images in [0, 1] (each row (n, 28, 28)) as one picture; `captions`
    label the columns underneath (e.g. a test index and its loss)."""
    pad, cell = 2, 28 + 2
    n = max(len(r) for r in rows)
    grid = np.full((len(rows) * cell + pad, n * cell + pad), 0.5, dtype=np.float32)
    for i, images in enumerate(rows):
        for j, image in enumerate(images):
            y, x = pad + i * cell, pad + j * cell
            grid[y : y + 28, x : x + 28] = image
    fig = px.imshow((grid * 255).astype(np.uint8), binary_string=True)
    if captions:
        fig.update_xaxes(
            tickvals=[pad + j * cell + 14 for j in range(len(captions))],
            ticktext=captions,
            tickfont=dict(size=10),
            showgrid=False,
            ticks="",
        )
    else:
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
    bottom = 40 if captions else 5
    height = int((GRID_WIDTH - left) * grid.shape[0] / grid.shape[1]) + 5 + bottom
    fig.update_layout(
        height=height,
        margin=dict(l=left, r=5, t=5, b=bottom),
        font=FONT,
        title=title,
        hovermode=False,
    )
    return fig


def fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.4g}"
    return str(value)
