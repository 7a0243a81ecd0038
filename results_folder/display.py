"""How a hyperparameter value is written for people: in the sweep's log, its summary line, the
analysis's summary and the report's figures."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np


def format_value(value: object) -> str:
    """4 significant digits, 3 in scientific notation for very small or large numbers (a
    learning rate of 1.6e-3 reads 0.0016); None as "-", other values as str()."""
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.4g}"
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


def param_text(params: Mapping[str, object], sep: str = " ") -> str:
    """ "z_dim=12 fc_size=751 lr=0.0016": hyperparameters in one line."""
    return sep.join(f"{name}={format_value(value)}" for name, value in params.items())
