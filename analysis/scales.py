"""Axis ranges and ticks for the report's figures: robust to trials whose loss blew up."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vae_core.evaluate import OUTLIER_IQRS

# A value is off the scale of a plot when it lies more than OUTLIER_IQRS interquartile ranges
# beyond the quartiles of the sound trials' values: the rule vae_core.evaluate applies to test
# images, so that one trial whose loss reaches 1e31 does not flatten every other curve.


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


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round values (1-2-5 steps) strictly inside [low, high]."""
    raw = (high - low) / count
    magnitude = 10.0 ** np.floor(np.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = np.ceil(low / step) * step
    return [float(t) for t in np.arange(first, high, step) if low < t < high]


def log_ticks(low: float, high: float) -> list[float]:
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
