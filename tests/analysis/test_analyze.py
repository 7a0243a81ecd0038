"""analyze_results on a finished sweep: best_trial.json, tsne.html/.parquet and report.html."""

import json
import math
import re

import pandas as pd
from plotly.offline import get_plotlyjs

from analysis import summary_lines
from analysis.page import SECTIONS
from tests.analysis.conftest import IWAE_K, TSNE_POINTS
from tests.analysis.plotly_html import array, plotly_figures


def test_best_trial_json_holds_finite_test_numbers(analyzed):
    summary, out = analyzed
    saved = json.loads((out / "best_trial.json").read_text())
    assert saved["trial_id"] == summary["trial_id"]
    test = saved["test"]
    for key in (
        "loss",
        "recon",
        "kl",
        "iwae_nll",
        "iwae_nll_stderr",
        "knn_accuracy",
        "trustworthiness",
        "median",
        "p99",
        "robust_loss",
        "outlier_fence",
    ):
        assert math.isfinite(test[key]), key
    assert test["iwae_k"] == IWAE_K and 0 <= test["active_units"] <= test["z_dim"]
    assert 0.1 < test["knn_accuracy"] <= 1 and 0.5 < test["trustworthiness"] <= 1
    assert abs(test["loss"] - test["recon"] - test["kl"]) < 1e-3
    assert saved["config"]["z_dim"] == saved["params"]["z_dim"] == test["z_dim"]
    assert saved["checkpoint"].endswith("checkpoint.pt")


def test_best_trial_json_describes_the_whole_test_set(analyzed):
    summary, out = analyzed
    test = json.loads((out / "best_trial.json").read_text())["test"]
    assert test["outlier_iqrs"] == 10 and test["outliers"] >= len(test["outlier_images"])
    assert len(test["outlier_images"]) == min(test["outliers"], 20)
    assert 0 < test["median"] <= test["p99"] and test["median"] < test["outlier_fence"]
    assert test["robust_loss"] <= test["loss"] + 1e-9
    if not test["outliers"]:  # nothing to cap: the capped mean is the mean
        assert test["robust_loss"] == test["loss"]
    for o in test["outlier_images"]:
        assert 0 <= o["index"] < test["images"] and o["loss"] > test["outlier_fence"]
    lines = summary_lines(summary)
    assert f"median {test['median']:.2f}, 99th percentile {test['p99']:.2f}" in lines[1]
    assert "outlier image" in lines[1] and "IWAE NLL" in lines[2]


def test_iwae_bound_is_no_looser_than_the_elbo(analyzed):
    test = analyzed[0]["test"]
    # Different noise draws: allow three standard errors of Monte Carlo slack.
    assert test["iwae_nll"] <= test["loss"] + 3 * test["iwae_nll_stderr"]


def test_tsne_page_has_one_trace_per_digit_and_no_network_script(analyzed):
    _, out = analyzed
    page = (out / "tsne.html").read_text()
    assert not re.search(r"<script[^>]*\ssrc=", page)
    assert page.count(get_plotlyjs()[:500]) == 1  # plotly.js itself is in the page
    (fig,) = plotly_figures(page)
    tsne = [t for t in fig["data"] if t.get("xaxis", "x") == "x"]
    assert [t["name"] for t in tsne] == [str(d) for d in range(10)]
    assert sum(len(array(t["x"])) for t in tsne) == TSNE_POINTS


def test_tsne_table_has_the_same_rows(analyzed):
    summary, out = analyzed
    table = pd.read_parquet(out / "tsne.parquet")
    assert len(table) == TSNE_POINTS == summary["tsne"]["points"]
    assert table["test_index"].is_unique and set(table["label"]) == set(range(10))
    z_dim = summary["test"]["z_dim"]
    assert list(table.columns) == [
        "test_index",
        "label",
        "tsne_x",
        "tsne_y",
        *[f"mu_{d}" for d in range(z_dim)],
    ]
    assert table[["tsne_x", "tsne_y"]].notna().all().all()


def test_report_has_every_section_and_plotly_js_once(analyzed, small_sweep):
    _, out = analyzed
    page = (out / "report.html").read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in page, section
    assert not re.search(r"<script[^>]*\ssrc=", page)
    assert page.count(get_plotlyjs()[:500]) == 1
    figures = plotly_figures(page)
    drawn = re.findall(r'<div id="fig-([a-z-]+)" class="plotly-graph-div"', page)
    assert len(figures) == len(drawn) >= 5
    assert {
        "loss-curves",
        "parallel-coordinates",
        "reconstructions",
        "prior-samples",
        "tsne",
    } <= set(drawn)
    # The digit pictures reach their figure's top edge: no mode bar may cover their first row.
    configs = dict(zip(drawn, [f["config"] for f in figures], strict=True))
    assert configs["reconstructions"]["displayModeBar"] is False
    assert configs["prior-samples"]["displayModeBar"] is False
    # sweep.json keeps its times to the millisecond; the header shows them to the second.
    started = json.loads((small_sweep / "sweep.json").read_text())["started_at"]
    assert "." in started and started.split(".")[0] in page and started not in page
    trials = pd.read_parquet(small_sweep / "trials.parquet")
    board = page[page.index('id="leaderboard"') : page.index('id="loss-curves"')]
    assert board.count("<tr") == 1 + len(trials)  # header + one row per trial
    assert all(t in board for t in trials["trial_id"])


def test_writing_left_no_temporary_files(analyzed):
    _, out = analyzed
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["best_trial.json", "report.html", "tsne.html", "tsne.parquet"]
    )


def test_another_metric_chooses_and_ranks(small_sweep, tmp_path):
    from analysis import analyze_results

    summary = analyze_results(
        small_sweep, metric="val_recon", iwae_k=2, tsne_points=100, out=tmp_path, progress=False
    )
    epochs = pd.read_parquet(small_sweep / "epochs.parquet")
    trials = pd.read_parquet(small_sweep / "trials.parquet")
    finished = trials[trials["status"].isin(["completed", "early_stopped"])]["trial_id"]
    best = epochs[epochs["trial_id"].isin(finished)].groupby("trial_id")["val_recon"].min()
    assert summary["trial_id"] == best.idxmin() and summary["score"] == best.min()
    page = (tmp_path / "report.html").read_text()
    assert "best val_recon" in page and "best val_loss" in page
