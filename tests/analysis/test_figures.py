"""The report's plots survive bad trials: ranges from the sound values, the rest at the edge."""

import math
import re

import numpy as np
import pandas as pd
import pytest

from analysis.figures import loss_curves, parallel_coordinates
from analysis.image_grid import image_grid
from analysis.page import render_page
from analysis.scales import robust_range
from tests.analysis.plotly_html import plotly_figures

# Five sound trials whose validation loss falls from ~200 to ~100 nats over 4 epochs, one
# completed trial whose third epoch reached 1e31, one diverged trial whose loss went to
# 140,000 and then inf, and one completed trial with a NaN epoch.
GOOD = {
    "a": [201.0, 150.0, 120.0, 110.0],
    "b": [190.0, 140.0, 115.0, 104.0],
    "c": [210.0, 160.0, 130.0, 121.0],
    "d": [198.0, 145.0, 118.0, 101.0],
    "e": [205.0, 170.0, 150.0, 140.0],
}
BAD = {
    "spike": ("completed", [195.0, 150.0, 1e31, 119.0]),
    "blew_up": ("diverged", [220.0, 1.4e5, math.inf]),
    "gap": ("completed", [200.0, math.nan, 125.0, 112.0]),
}


@pytest.fixture
def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    curves = {t: ("completed", v) for t, v in GOOD.items()} | BAD
    epochs = pd.DataFrame(
        [(t, e + 1, v) for t, (_, vs) in curves.items() for e, v in enumerate(vs)],
        columns=["trial_id", "epoch", "val_loss"],
    )
    trials = pd.DataFrame(
        {
            "trial_id": list(curves),
            "status": [s for s, _ in curves.values()],
            "lr": np.geomspace(1e-4, 1e-2, len(curves)),
            "z_dim": [2, 4, 8, 16, 2, 4, 8, 16],
        }
    )
    return epochs, trials


def edge_points(fig) -> dict[str, list[tuple[int, float]]]:
    """The off-scale marker traces: name -> [(epoch, y)]."""
    return {
        t.name.split(" (")[0]: list(zip(t.x, t.y, strict=True))
        for t in fig.data
        if t.mode == "markers"
    }


def test_loss_curves_keep_the_sound_range_and_mark_what_blew_up(tables):
    epochs, trials = tables
    fig = loss_curves(epochs, trials, metric="val_loss", best_id="d", params=["lr"], rungs=[1, 3])
    low, high = fig.layout.yaxis.range
    good = [v for vs in GOOD.values() for v in vs]
    # Every sound value is on the plot, and the axis is no taller than the sound values need.
    assert low <= min(good) and high >= max(good) + 1
    assert high < 250 and low > 80
    assert high > 220  # the diverged trial's first epoch is a sound value: on the scale
    edges = edge_points(fig)
    assert set(edges) == {"above the axis"}
    # 1e31 (completed), 140,000 and inf (diverged) and NaN, each at the top edge.
    assert sorted(e for e, _ in edges["above the axis"]) == [2, 2, 3, 3]
    assert all(y == high for _, y in edges["above the axis"])
    texts = next(t.text for t in fig.data if t.mode == "markers")
    assert any("spike" in s and "1e+31" in s for s in texts)
    assert any("blew_up" in s and "inf" in s for s in texts)
    assert any("gap" in s and "nan" in s for s in texts)
    # The curves themselves are all still drawn, the best one last.
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert len(lines) == len(GOOD) + len(BAD) and lines[-1].name == "best: d"


def test_a_sound_sweep_has_no_edge_markers_and_its_full_range(tables):
    epochs, trials = tables
    sound = epochs[epochs["trial_id"].isin(GOOD)]
    fig = loss_curves(sound, trials, metric="val_loss", best_id="d", params=[], rungs=[])
    low, high = fig.layout.yaxis.range
    assert low < 101 < 210 < high < 220
    assert edge_points(fig) == {}


def test_only_diverged_trials_still_get_a_finite_range(tables):
    epochs, trials = tables
    fig = loss_curves(
        epochs[epochs["trial_id"] == "blew_up"],
        trials,
        metric="val_loss",
        best_id="blew_up",
        params=[],
        rungs=[],
    )
    low, high = fig.layout.yaxis.range
    assert math.isfinite(low) and math.isfinite(high) and low < 220 < high


def test_parallel_coordinates_clip_absurd_scores_to_the_axis_end(tables):
    _, trials = tables
    scores = pd.Series([110.0, 104.0, 121.0, 101.0, 140.0, 6e17, 101.5, math.nan])
    fig = parallel_coordinates(
        trials, scores, params=["lr", "z_dim"], log_params=["lr"], metric="val_loss"
    )
    dim = fig.data[0].dimensions[-1]
    assert dim.label == "best val_loss"
    low, high = dim.range
    assert low < 101 and 140 < high < 150
    values = np.asarray(dim.values)
    assert values[5] == values[7] == high  # 6e17 and NaN sit at the top end
    np.testing.assert_array_equal(values[[0, 1, 2, 3, 4, 6]], scores[[0, 1, 2, 3, 4, 6]])
    assert dim.ticktext[-1] == f"\u2265 {high:.4g}: 2 off scale" and dim.tickvals[-1] == high
    assert all(low < t < high for t in dim.tickvals[:-1]) and len(dim.tickvals) >= 4
    line = fig.data[0].line
    assert (line.cmin, line.cmax) == (low, high)
    assert len(fig.data[0].dimensions) == 3


def test_parallel_coordinates_without_a_finite_score_is_none(tables):
    _, trials = tables
    assert (
        parallel_coordinates(
            trials,
            pd.Series([math.nan] * len(trials)),
            params=["lr"],
            log_params=[],
            metric="val_loss",
        )
        is None
    )


@pytest.mark.parametrize(
    "values, expected",
    [
        ([100.0, 120.0, 140.0, 1e31], (98.0, 142.0)),  # 1e31 left out, 5% padding
        ([100.0, 100.0, 100.0], (95.0, 105.0)),  # no spread: 5% of the value
        ([100.0, 1e31], (95.0, 105.0)),  # two trials: the lower one sets the scale
        ([100.0, 120.0, 1e31], (99.0, 121.0)),
        ([90.0, 100.0, 110.0, 120.0, 130.0, 300.0], (79.5, 310.5)),  # 300: within 10 IQRs
        ([-1e30, 90.0, 100.0, 110.0, 120.0], (88.5, 121.5)),  # cut below as well
        ([math.nan, math.inf], None),
    ],
)
def test_robust_range(values, expected):
    span = robust_range(np.array(values))
    assert span == (pytest.approx(expected) if expected else None)


def test_image_grid_captions_each_column():
    images = np.zeros((3, 28, 28))
    fig = image_grid([images, images], ["a", "b"], captions=["#1", "#2", "#3"])
    assert list(fig.layout.xaxis.ticktext) == ["#1", "#2", "#3"]
    assert fig.layout.xaxis.visible is not False
    assert image_grid([images], [""]).layout.xaxis.visible is False


def test_the_digit_pictures_have_no_mode_bar_over_their_top_row(tables):
    # image_grid draws its first row of digits at the figure's top edge (a 5 px margin), the
    # band where plotly puts its mode bar: the page must turn the mode bar off for them.
    epochs, trials = tables
    images = np.zeros((10, 28, 28))
    pictures = ("outliers", "reconstructions", "prior-samples")
    figures = {sid: image_grid([images, images], ["a", "b"]) for sid in pictures}
    figures["loss-curves"] = loss_curves(
        epochs, trials, metric="val_loss", best_id="a", params=[], rungs=[]
    )
    page = render_page(
        title="t",
        meta=[],
        cards=[],
        best_table=[],
        test_table=[],
        outlier_table=[(3, 7, "700 nats")],
        leaderboard=trials[["trial_id", "status"]],
        best_id="a",
        figures=figures,
        notes={},
    )
    drawn = re.findall(r'<div id="fig-([a-z-]+)" class="plotly-graph-div"', page)
    configs = dict(zip(drawn, [f["config"] for f in plotly_figures(page)], strict=True))
    assert sorted(configs) == sorted([*pictures, "loss-curves"])
    for sid in pictures:
        assert figures[sid].layout.margin.t < 30  # no room above the digits for the bar
        assert configs[sid]["displayModeBar"] is False, sid
    assert configs["loss-curves"].get("displayModeBar", True) is not False  # plots keep it
