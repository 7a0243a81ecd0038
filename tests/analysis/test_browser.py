"""report.html and tsne.html in headless Chromium, offline: every figure must render.

Needs Debian's chromium (`apt-get install -y chromium`) and Playwright's Python package;
Playwright's own browser download is never used.
"""

import os
import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing: apt-get install -y chromium"
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=FLAGS,
            headless=True,
            viewport={"width": 1400, "height": 900},
        )
        yield context
        context.close()


def render(browser, page_path: Path, screenshot: Path) -> tuple[int, int, list[str]]:
    """Open a page with every non-file request blocked; plotly figures rendered, divs, requests."""
    requests = []

    def block(route):
        requests.append(route.request.url)
        route.abort()

    page = browser.new_page()
    page.route(lambda url: not url.startswith("file:"), block)
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(page_path.as_uri(), wait_until="load")
    graphs = page.locator(".plotly-graph-div").count()
    page.wait_for_function(
        "n => document.querySelectorAll('.plotly-graph-div .main-svg').length >= n",
        arg=graphs,
        timeout=60_000,
    )
    rendered = page.evaluate("""() => [...document.querySelectorAll('.plotly-graph-div')]
        .filter(d => d.querySelector('.plot-container .main-svg') && d._fullLayout).length""")
    page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    assert not errors, errors
    return rendered, graphs, requests


@pytest.mark.parametrize("name", ["report.html", "tsne.html"])
def test_every_figure_renders_offline(browser, analyzed, tmp_path, name):
    _, out = analyzed
    shot = tmp_path / f"{name}.png"
    rendered, graphs, requests = render(browser, out / name, shot)
    assert graphs >= (5 if name == "report.html" else 1)
    assert rendered == graphs
    assert requests == []
    assert shot.stat().st_size > 10_000
    if os.environ.get("VAE_SWEEP_SCREENSHOTS"):  # keep a copy to look at
        shutil.copy(shot, Path(os.environ["VAE_SWEEP_SCREENSHOTS"]) / shot.name)


def test_a_blown_up_trial_leaves_the_report_readable(browser, sweep_copy, tmp_path):
    """One trial's loss reaches 1e31, another diverges to inf and a third's best is 6e17:
    the loss curves and the parallel coordinates keep the sound trials' range, and the page
    still renders."""
    import numpy as np
    import pandas as pd

    from analysis import analyze_results
    from tests.analysis.plotly_html import array, plotly_figures

    trials = pd.read_parquet(sweep_copy / "trials.parquet")
    epochs = pd.read_parquet(sweep_copy / "epochs.parquet")
    finished = trials["status"].isin(["completed", "early_stopped"])
    best = trials.loc[trials[finished]["best_val_loss"].idxmin(), "trial_id"]
    others = trials.loc[finished & (trials["trial_id"] != best), "trial_id"].tolist()
    assert len(others) >= 3, "the small sweep should finish at least 4 trials"
    spike, diverge, absurd = others[:3]
    epochs.loc[(epochs["trial_id"] == spike).idxmax(), "val_loss"] = 1e31
    epochs.loc[(epochs["trial_id"] == diverge).idxmax(), "val_loss"] = np.inf
    trials.loc[trials["trial_id"] == diverge, ["status", "best_val_loss"]] = ["diverged", np.nan]
    trials.loc[trials["trial_id"] == absurd, "best_val_loss"] = 6e17
    epochs.to_parquet(sweep_copy / "epochs.parquet")
    trials.to_parquet(sweep_copy / "trials.parquet")
    kept = set(trials.loc[finished, "trial_id"]) - {spike, diverge}
    sound = epochs[epochs["trial_id"].isin(kept)]["val_loss"]

    analyze_results(sweep_copy, iwae_k=2, tsne_points=100, out=tmp_path, progress=False)
    page = (tmp_path / "report.html").read_text()
    figures = dict(
        zip(
            re.findall(r'<div id="fig-([a-z-]+)" class="plotly-graph-div"', page),
            plotly_figures(page),
            strict=True,
        )
    )
    low, high = figures["loss-curves"]["layout"]["yaxis"]["range"]
    assert low <= sound.min() and sound.max() <= high < 2 * sound.max()
    (edges,) = [t for t in figures["loss-curves"]["data"] if t.get("mode") == "markers"]
    assert all(y == high for y in array(edges["y"]))  # drawn on the top edge
    assert any(t.startswith(f"{spike} (") and "1e+31" in t for t in edges["text"])
    assert any(t.startswith(f"{diverge} (diverged)") and "inf" in t for t in edges["text"])
    (parcoords,) = figures["parallel-coordinates"]["data"]
    axis = parcoords["dimensions"][-1]
    ok = trials["status"].isin(["completed", "early_stopped"]) & (trials["trial_id"] != absurd)
    scores = trials[ok]["best_val_loss"]
    assert axis["range"][0] <= scores.min() and scores.max() <= axis["range"][1]
    assert axis["range"][1] < 2 * scores.max()
    assert axis["ticktext"][-1].endswith("1 off scale")
    curves_note = page[page.index('id="loss-curves"') : page.index('id="parallel-coordinates"')]
    assert "drawn as triangles on its edge" in curves_note
    assert f"({axis['ticktext'][-1]})" in page[page.index('id="parallel-coordinates"') :]

    shot = tmp_path / "blown_up.png"
    rendered, graphs, requests = render(browser, tmp_path / "report.html", shot)
    assert rendered == graphs >= 5 and requests == []
