"""analyze_results: best trial, test-set numbers, t-SNE map and report for one results folder.

Everything is computed before anything is written, so a bad table, checkpoint or option
leaves the analysis folder as it was. Files are then written one by one, each atomically,
with best_trial.json last: an analysis folder without it is an unfinished one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from dataclasses import replace
from typing import NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.best import choose_best, load_model, trial_scores
from analysis.clock import Clock
from analysis.defaults import IWAE_K, TSNE_POINTS
from analysis.page import PLOT_CONFIG
from analysis.report import build_report
from analysis.summary import AnalysisSummary, DataInfo, TestNumbers, TsneInfo
from analysis.testset import check_finite, check_weights, measure_test_set
from analysis.tsne import (
    INIT,
    MIN_POINTS,
    SEED,
    TRUST_K,
    embed,
    map_trustworthiness,
    stratified_sample,
    tsne_figure,
    tsne_table,
)
from results_folder import load_results, storage
from results_folder.layout import (
    ANALYSIS_DIR,
    ANALYSIS_FILES,
    BEST_TRIAL_JSON,
    REPORT_HTML,
    SWEEP_JSON,
    TSNE_HTML,
    TSNE_PARQUET,
)
from results_folder.reader import SweepResults
from vae_core.data import MnistSplits, load_mnist
from vae_core.device import resolve_device
from vae_core.errors import ConfigError, DataError
from vae_core.model import ConvVAE

log = logging.getLogger(__name__)


def analyze_results(
    results_dir: str | os.PathLike,
    *,
    metric: str = "val_loss",
    iwae_k: int = IWAE_K,
    tsne_points: int | None = TSNE_POINTS,
    out: str | os.PathLike | None = None,
    data_root: str | None = None,
    device: str = "auto",
    progress: bool | None = None,
) -> dict:
    """Analyse a finished sweep and write RESULTS_DIR/analysis/ (or `out`).

    Args:
        results_dir: the sweep's folder (local path or URI) holding trials.parquet,
            epochs.parquet, sweep.json and the checkpoints.
        metric: the validation column that picks the best trial (lower is better).
        iwae_k: importance samples per test image for the IWAE bound.
        tsne_points: test images on the t-SNE map (stratified by digit); None maps all.
        out: where to write; default RESULTS_DIR/analysis.
        data_root: the MNIST folder, when sweep.json's is not valid on this machine.
        device: "auto" (a GPU when visible), "cpu" or "cuda".
        progress: progress bars on stderr; None shows them when stderr is a terminal.

    Returns:
        The contents of best_trial.json.

    Raises:
        ResultsError, CheckpointError, DataError, ConfigError: each names the bad file/value.
    """
    _check_options(iwae_k, tsne_points)
    progress = sys.stderr.isatty() if progress is None else progress
    clock = Clock()
    chosen = _choose(results_dir, metric, data_root)
    clock.lap("load")
    dev = resolve_device(device)
    check_weights(chosen.model, chosen.checkpoint)
    model, data = chosen.model.to(dev), chosen.data
    test, test_z = measure_test_set(model, data, dev, iwae_k=iwae_k, progress=progress, clock=clock)
    check_finite(test, chosen.checkpoint)
    table, test = _tsne_map(test_z, data.test_y.numpy(), tsne_points, test, progress, clock)
    tsne = TsneInfo(points=len(table), of=len(test_z), seed=SEED, init=INIT)
    summary = _summarise(chosen, metric, test, tsne, device=str(dev), out=out)
    tsne_fig = tsne_figure(
        table,
        title=f"{summary.sweep}: t-SNE of {len(table):,} test-set "
        f"latent means, best trial {summary.trial_id}",
    )
    page = build_report(chosen.results, chosen.scores, summary, model, data, tsne_fig)
    clock.lap("report")
    seconds, cpu_seconds = clock.totals()
    summary = replace(summary, seconds=seconds, cpu_seconds=cpu_seconds, files=ANALYSIS_FILES)
    record = summary.to_dict()
    _write(_files(table, tsne_fig, page, record), summary.out)
    return record


class _Chosen(NamedTuple):
    """The results folder read, each trial's score, the best trial and what it needs."""

    results: SweepResults
    scores: pd.Series
    best: pd.Series  # its trials.parquet row, with its `score`
    model: ConvVAE  # on the CPU
    state: dict  # its checkpoint
    checkpoint: str  # the checkpoint's path
    data: MnistSplits


def _choose(results_dir: str | os.PathLike, metric: str, data_root: str | None) -> _Chosen:
    """Read the results, choose the best trial on `metric`, load its model and the data."""
    results = load_results(results_dir)
    scores = trial_scores(results, metric)
    best = choose_best(results, metric)
    model, state, checkpoint = load_model(results, best)
    data = _load_data(results, data_root)
    log.info(
        "best trial %s (%s %.2f, %s) from %s",
        best["trial_id"],
        metric,
        best["score"],
        best["status"],
        checkpoint,
    )
    return _Chosen(results, scores, best, model, state, checkpoint, data)


def _summarise(
    chosen: _Chosen,
    metric: str,
    test: TestNumbers,
    tsne: TsneInfo,
    *,
    device: str,
    out: str | os.PathLike | None,
) -> AnalysisSummary:
    """best_trial.json's record, but for the timings (known once the report is built)."""
    results, best, state = chosen.results, chosen.best, chosen.state
    return AnalysisSummary(
        sweep=results.name,
        results_dir=results.root,
        metric=metric,
        trial_id=str(best["trial_id"]),
        status=str(best["status"]),
        score=float(best["score"]),
        best_epoch=int(best["best_epoch"]),
        epochs_run=int(best["epochs_run"]),
        params={p: _plain(best[p]) for p in results.params},
        config=state["config"],
        checkpoint=chosen.checkpoint,
        checkpoint_epoch=int(state["epoch"]),
        test=test,
        tsne=tsne,
        data=DataInfo(source=chosen.data.source, **chosen.data.sizes()),
        device=device,
        out=str(out) if out is not None else storage.join(results.root, ANALYSIS_DIR),
        analysed_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )


def _tsne_map(
    test_z: np.ndarray,
    test_y: np.ndarray,
    points: int | None,
    test: TestNumbers,
    progress: bool,
    clock: Clock,
) -> tuple[pd.DataFrame, TestNumbers]:
    """The t-SNE table of a stratified sample, and `test` with the map's trustworthiness."""
    idx = stratified_sample(test_y, points)
    coords = embed(test_z[idx], progress=progress)
    clock.lap("tsne")
    trust = map_trustworthiness(test_z[idx], coords)
    clock.lap("trustworthiness")
    test = replace(test, trustworthiness=trust, trustworthiness_k=TRUST_K)
    return tsne_table(idx, test_y[idx], test_z[idx], coords), test


def _check_options(iwae_k: int, tsne_points: int | None) -> None:
    problems = []
    if isinstance(iwae_k, bool) or not isinstance(iwae_k, int) or iwae_k < 1:
        problems.append(f"iwae_k must be a positive integer, but got {iwae_k!r}")
    if tsne_points is not None and (
        isinstance(tsne_points, bool)
        or not isinstance(tsne_points, int)
        or tsne_points < MIN_POINTS
    ):
        problems.append(
            f"tsne_points must be an integer of at least {MIN_POINTS}, but got {tsne_points!r}"
        )
    if problems:
        raise ConfigError("; ".join(problems))


def _load_data(results: SweepResults, data_root: str | None) -> MnistSplits:
    """The sweep's own data (sweep.json's source), checked to have its test-set size."""
    info = results.sweep.get("data") or {}
    root = data_root if data_root is not None else info.get("root")
    data = load_mnist(info.get("source") or "auto", root)
    expected = (info.get("sizes") or {}).get("test")
    if expected is not None and int(expected) != len(data.test_x):
        raise DataError(
            f"{results.path(SWEEP_JSON)} says the sweep's test set has "
            f"{expected} images, but {data.source} has {len(data.test_x)}: pass "
            "the sweep's MNIST folder as the data root"
        )
    return data


def _files(table: pd.DataFrame, tsne_fig: go.Figure, page: str, record: dict) -> dict:
    """Each file of the analysis folder by name, with its content."""
    return {
        TSNE_PARQUET: table,
        TSNE_HTML: tsne_fig.to_html(full_html=True, include_plotlyjs=True, config=PLOT_CONFIG),
        REPORT_HTML: page,
        BEST_TRIAL_JSON: json.dumps(record, indent=2) + "\n",
    }


def _write(files: dict[str, object], out: str) -> None:
    """Each file atomically, best_trial.json last; a stale one goes first (marks unfinished)."""
    storage.delete(storage.join(out, BEST_TRIAL_JSON))
    for name in ANALYSIS_FILES:
        content = files[name]
        if isinstance(content, pd.DataFrame):
            storage.write_parquet(content, storage.join(out, name))
        else:
            storage.write_text(content, storage.join(out, name))
    log.info("wrote %s", ", ".join(storage.join(out, n) for n in ANALYSIS_FILES))


def _plain(value):
    """numpy scalars -> Python numbers, for JSON."""
    return value.item() if isinstance(value, np.generic) else value
