"""The t-SNE pieces: stratified sampling, the table and the figure's traces."""

import numpy as np
import pytest

from analysis.tsne import embed, map_trustworthiness, stratified_sample, tsne_figure, tsne_table


@pytest.fixture
def labels():
    return np.repeat(np.arange(10), [100, 120, 80, 90, 110, 100, 95, 105, 100, 100])


def test_stratified_sample_keeps_each_digit_share_and_is_seeded(labels):
    idx = stratified_sample(labels, 500)
    assert len(idx) == 500 and len(set(idx)) == 500 and (np.diff(idx) > 0).all()
    counts = np.bincount(labels[idx], minlength=10)
    assert np.abs(counts - np.bincount(labels) / 2).max() <= 1
    assert (stratified_sample(labels, 500) == idx).all()
    assert len(stratified_sample(labels, None)) == len(labels)
    assert len(stratified_sample(labels, 5000)) == len(labels)


@pytest.mark.parametrize("z_dim, panels", [(2, 2), (5, 1)])
def test_one_trace_per_digit_and_panel(labels, z_dim, panels):
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(len(labels), z_dim))
    table = tsne_table(np.arange(len(labels)), labels, latents, rng.normal(size=(len(labels), 2)))
    assert list(table.columns[:4]) == ["test_index", "label", "tsne_x", "tsne_y"]
    assert [c for c in table.columns if c.startswith("mu_")] == [f"mu_{d}" for d in range(z_dim)]
    fig = tsne_figure(table, title="t")
    assert len(fig.data) == 10 * panels
    assert [t.name for t in fig.data if t.showlegend] == [str(d) for d in range(10)]
    assert sum(len(t.x) for t in fig.data[:10]) == len(labels)
    assert "test image #%{customdata}" in fig.data[0].hovertemplate


def test_embedding_separates_clusters_and_is_trustworthy():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10, size=(4, 8))
    latents = np.concatenate([c + rng.normal(size=(60, 8)) for c in centres])
    coords = embed(latents)
    assert coords.shape == (240, 2) and np.isfinite(coords).all()
    assert (embed(latents) == coords).all()  # random_state fixed: the same map every time
    assert map_trustworthiness(latents, coords) > 0.9
