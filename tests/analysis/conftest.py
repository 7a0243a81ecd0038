"""Fixtures for the analysis tests: the project's small real sweep, analysed once."""

from __future__ import annotations

from pathlib import Path

import pytest

IWAE_K = 10  # small: the tests check the bound's relation to the ELBO, not its tightness
TSNE_POINTS = 300  # of the 5k sample's 500 test images, so the stratified sampling runs


@pytest.fixture(scope="session")
def analyzed(small_sweep, tmp_path_factory) -> tuple[dict, Path]:
    """analyze_results on the small sweep, into a folder of its own (the sweep is shared)."""
    from analysis import analyze_results

    out = tmp_path_factory.mktemp("analysis")
    return analyze_results(
        small_sweep, iwae_k=IWAE_K, tsne_points=TSNE_POINTS, out=out, progress=False
    ), out
