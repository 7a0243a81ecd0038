"""report.html and tsne.html in headless Chromium, offline: every figure must render.

Needs Debian's chromium (`apt-get install -y chromium`) and Playwright's Python package;
Playwright's own browser download is never used.
"""

import os
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
