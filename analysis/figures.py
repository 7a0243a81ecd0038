"""The report's plotly figures of the trials, each built from plain tables (no file access).

Pictures of digits are in image_grid.py, the t-SNE map in tsne.py, axis ranges in scales.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.scales import log_ticks, nice_ticks, robust_range
from results_folder.display import format_value, param_text

STATUS_COLORS = {
    "completed": "#1f77b4",
    "early_stopped": "#ff7f0e",
    "diverged": "#d62728",
    "error": "#7f7f7f",
}
BEST_COLOR = "#2ca02c"
OFF_SCALE_COLOR = "#d62728"  # the outline of a value drawn on the edge of its axis
FONT = dict(family="-apple-system, Segoe UI, Helvetica, Arial, sans-serif", size=13)
MARGIN = dict(l=60, r=20, t=40, b=50)


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
        row.trial_id: param_text({p: getattr(row, p) for p in params}, sep=", ")
        for row in trials.itertuples()
    }
    shown = set()
    for trial_id, rows in epochs.sort_values("epoch").groupby("trial_id", sort=True):
        if trial_id == best_id:
            continue  # drawn last, on top
        s = status.get(trial_id, "error")
        fig.add_trace(_curve(rows, metric, trial_id, s, label.get(trial_id, ""), s not in shown))
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
    _robust_y_axis(fig, epochs, metric=metric, status=status)
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


def _curve(
    rows: pd.DataFrame, metric: str, trial_id: str, status: str, label: str, legend: bool
) -> go.Scatter:
    """One trial's curve in its status's colour; `legend`: the first of its status."""
    return go.Scatter(
        x=rows["epoch"],
        y=rows[metric],
        mode="lines+markers",
        name=status.replace("_", " "),
        legendgroup=status,
        showlegend=legend,
        opacity=0.75,
        line=dict(color=STATUS_COLORS.get(status, "#7f7f7f"), width=1.5),
        marker=dict(size=5),
        hovertemplate=f"{trial_id} ({status})<br>{label}<br>epoch %{{x}}: "
        f"{metric} %{{y:.2f}}<extra></extra>",
    )


def _robust_y_axis(fig: go.Figure, epochs: pd.DataFrame, *, metric: str, status: dict) -> None:
    """The y range of the sound trials' values; the values beyond it drawn on its edges."""
    values = epochs[metric].to_numpy(dtype=float)
    sound = ~epochs["trial_id"].map(status).isin(("diverged", "error")).to_numpy()
    span = robust_range(values, sound=values[sound])
    if span is not None:
        fig.update_yaxes(range=list(span))
        _edge_markers(fig, epochs, values, span, metric=metric, status=status)


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
            f"{t} ({status.get(t, 'error')})<br>epoch {e}: {metric} {format_value(float(v))}"
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
    dims = [_param_axis(p, trials[p].astype(float), log=p in log_params) for p in params]
    metric_axis, clipped = _metric_axis(score.to_numpy(), span, metric=metric)
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
            dimensions=[*dims, metric_axis],
            labelfont=dict(size=13),
            tickfont=dict(size=11),
        )
    )
    fig.update_layout(height=380, margin=dict(l=70, r=70, t=60, b=30), font=FONT)
    return fig


def _param_axis(name: str, column: pd.Series, *, log: bool) -> dict:
    """A hyperparameter's axis; on a log one, log10 positions labelled with the values."""
    if not log:
        return dict(label=name, values=column, tickformat=".3~g")
    ticks = log_ticks(column.min(), column.max())
    return dict(
        label=f"{name} (log)",
        values=np.log10(column),
        range=[np.log10(ticks[0]), np.log10(ticks[-1])],
        tickvals=np.log10(ticks),
        ticktext=[format_value(t) for t in ticks],
    )


def _metric_axis(
    values: np.ndarray, span: tuple[float, float], *, metric: str
) -> tuple[dict, np.ndarray]:
    """The best-metric axis over `span`, and the values clipped to it: a value beyond an end
    (or not finite) sits at that end, whose tick label counts them."""
    low, high = span
    above, below = ~(values <= high) & ~(values < low), values < low
    clipped = np.where(above, high, np.where(below, low, values))
    tickvals = nice_ticks(low, high)
    ticktext = [f"{t:.4g}" for t in tickvals]
    for n, edge, sign in ((above.sum(), high, "\u2265"), (below.sum(), low, "\u2264")):
        if n:
            tickvals.append(edge)
            ticktext.append(f"{sign} {edge:.4g}: {n} off scale")
    axis = dict(
        label=f"best {metric}",
        values=clipped,
        range=[low, high],
        tickvals=tickvals,
        ticktext=ticktext,
    )
    return axis, clipped


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
