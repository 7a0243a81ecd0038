"""Pictures of digits: rows of 28x28 images as one plotly figure (no model, no file access)."""

from __future__ import annotations

import numpy as np
import plotly.express as px
import plotly.graph_objects as go

from analysis.figures import FONT

GRID_WIDTH = 540  # px: a half-width column of the report


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
