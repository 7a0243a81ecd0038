"""Reading plotly figures back out of a written HTML page."""

from __future__ import annotations

import base64
import json

import numpy as np


def plotly_figures(html: str) -> list[dict]:
    """The data, layout and config of every Plotly.newPlot call in a page."""
    decoder, figures, at = json.JSONDecoder(), [], 0
    while (at := html.find("Plotly.newPlot(", at)) != -1:
        pos = at + len("Plotly.newPlot(")
        values = []
        for _ in range(4):  # div id, data, layout, config
            while html[pos] in " \n\t,":
                pos += 1
            value, pos = decoder.raw_decode(html, pos)
            values.append(value)
        figures.append({"data": values[1], "layout": values[2], "config": values[3]})
        at = pos
    return figures


def array(value) -> np.ndarray:
    """A plotly JSON array: a plain list, or plotly's {"dtype", "bdata"} base64 encoding."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value)
