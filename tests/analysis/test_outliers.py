"""Outlier test images: counted, listed by test index in best_trial.json, shown in the report."""

import json
import math
import re

import pytest
import torch

from analysis import analyze as analyze_module
from analysis.summary import summary_lines
from analysis.testset import OUTLIERS_LISTED, outlier_numbers
from tests.analysis.plotly_html import plotly_figures
from vae_core.data import MnistSplits, load_mnist
from vae_core.evaluate import outlier_text, summarize

INVERTED = [7, 123, 321]  # test images replaced by their negatives: white digits on black


def shown(value: float) -> str:
    """How the report writes a negative ELBO: 2 decimals, 3 significant digits from 1e5."""
    return f"{value:.2f}" if value < 1e5 else f"{value:.3g}"


def test_outlier_numbers_list_the_worst_twenty_by_index():
    torch.manual_seed(0)
    total = 100 + 10 * torch.randn(1000, dtype=torch.float64)
    bad = torch.arange(0, 1000, 40)  # 25 images, values rising with the index
    total[bad] = 1e4 + bad.double()
    total[999] = math.nan
    t = outlier_numbers(summarize(total, total, torch.zeros_like(total)))
    assert t["outliers"] == 26 and len(t["outlier_images"]) == OUTLIERS_LISTED == 20
    assert t["outlier_images"][0] == {"index": 999, "loss": None}  # NaN: the worst, as null
    assert [o["index"] for o in t["outlier_images"][1:4]] == [960, 920, 880]
    assert t["outlier_images"][1]["loss"] == pytest.approx(1e4 + 960)
    assert 100 < t["median"] < 102 and t["p99"] > t["median"] and t["outlier_iqrs"] == 10
    assert 110 < t["outlier_fence"] < 500  # Q3 + 10 IQR of ~N(100, 10): about 248
    assert t["robust_loss"] < 110
    json.dumps(t, allow_nan=False)  # plain JSON: no NaN or Infinity
    worst = [(o["index"], o["loss"]) for o in t["outlier_images"]]
    assert outlier_text(t["outliers"], t["outlier_fence"], worst) == (
        f"26 outlier images above {t['outlier_fence']:.2f} (test 999: nan, test 960: "
        "1.096e+04, test 920: 1.092e+04, test 880: 1.088e+04, test 840: 1.084e+04, 21 more)"
    )


def inverted_test_images(monkeypatch):
    """Analyses in this test read the 5k sample with INVERTED test images negated."""
    real = load_mnist("mnist-5k")
    test_x = real.test_x.clone()
    test_x[INVERTED] = 255 - test_x[INVERTED]
    splits = MnistSplits(
        real.train_x, real.train_y, real.val_x, real.val_y, test_x, real.test_y, source=real.source
    )
    monkeypatch.setattr(analyze_module, "load_mnist", lambda source, root: splits)


def test_inverted_digits_are_listed_and_shown(small_sweep, tmp_path, monkeypatch):
    inverted_test_images(monkeypatch)
    summary = analyze_module.analyze_results(
        small_sweep, iwae_k=2, tsne_points=100, out=tmp_path, progress=False
    )
    t = json.loads((tmp_path / "best_trial.json").read_text())["test"]
    assert t == summary["test"]
    listed = t["outlier_images"]
    assert t["outliers"] == len(listed) >= len(INVERTED)
    assert set(INVERTED) <= {o["index"] for o in listed}
    losses = [o["loss"] for o in listed]
    assert losses == sorted(losses, reverse=True) and losses[-1] > t["outlier_fence"]
    assert t["median"] < t["p99"] < t["outlier_fence"]
    assert t["robust_loss"] < t["loss"]  # the outliers pull the plain mean up
    assert math.isfinite(t["loss"]) and t["loss"] == pytest.approx(t["recon"] + t["kl"])

    text = "\n".join(summary_lines(summary))
    assert f"{t['outliers']} outlier images above {t['outlier_fence']:.2f}" in text
    assert f"test {listed[0]['index']}: " in text and "99th percentile" in text

    page = (tmp_path / "report.html").read_text()
    section = page[page.index('id="outliers"') : page.index('id="leaderboard"')]
    assert f"{t['outliers']} test images lie above the fence ({t['outlier_fence']:.2f}" in section
    for o in listed:  # the table: test index, digit, value
        assert re.search(
            rf"<tr><td>{o['index']}</td><td>\d</td><td>{re.escape(shown(o['loss']))}</td>", section
        )
    (grid,) = [f for f in plotly_figures(section)]
    captions = grid["layout"]["xaxis"]["ticktext"]
    assert captions == [f"#{o['index']}<br>{shown(o['loss'])}" for o in listed[:10]]
    assert grid["layout"]["yaxis"]["ticktext"] == ["test image", "reconstruction"]
    notes = page[page.index('id="test-set"') : page.index('id="outliers"')]
    assert "median and the 99th percentile" in notes and "10 interquartile ranges" in notes
    assert re.search(rf"outlier images</td><td class=\"l\">{t['outliers']}<", notes)
