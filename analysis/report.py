"""report.html: the sweep's figures, tables and notes, from the analysis's numbers.

The tables' rows are in report_tables.py, the notes in report_notes.py, the model's drawings
in drawings.py, and the page layout (HTML, CSS, plotly.js embedded once) in page.py.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from analysis import figures, report_tables
from analysis.drawings import digit_figures, outlier_figure
from analysis.importance import param_importances
from analysis.page import render_page
from analysis.report_notes import report_notes
from analysis.scales import log_scaled
from analysis.summary import AnalysisSummary
from results_folder.reader import SweepResults
from vae_core.data import MnistSplits
from vae_core.model import ConvVAE


def build_report(
    results: SweepResults,
    scores: pd.Series,
    summary: AnalysisSummary,
    model: ConvVAE,
    data: MnistSplits,
    tsne_fig: go.Figure,
) -> str:
    """report.html for an analysed sweep (`scores`: each trial's best metric)."""
    rungs = _rungs(results.sweep.get("scheduler") or {})
    logs = _log_params(results)
    figs = _trial_figures(results, scores, summary.metric, summary.trial_id, rungs, logs)
    figs["tsne"] = tsne_fig
    found = param_importances(results, scores, metric=summary.metric)
    figs["importance"] = figures.importance_bars(found.values, found.source) if found else None
    figs.update(digit_figures(model, data))
    figs["outliers"], outlier_table = outlier_figure(model, data, summary.test)
    return render_page(
        title=f"Sweep {results.name}",
        meta=report_tables.meta_lines(results, summary),
        cards=report_tables.cards(summary),
        best_table=report_tables.best_rows(summary),
        test_table=report_tables.test_set_rows(summary),
        outlier_table=outlier_table,
        leaderboard=report_tables.leaderboard(results, scores, summary.metric),
        best_id=summary.trial_id,
        figures=figs,
        notes=report_notes(results, summary, figs, found, rungs=rungs, log_params=logs),
    )


def _trial_figures(
    results: SweepResults,
    scores: pd.Series,
    metric: str,
    best_id: str,
    rungs: list[int],
    log_params: list[str],
) -> dict[str, go.Figure | None]:
    """The figures of the trials' tables: loss curves and parallel coordinates."""
    finished = results.finished()
    return {
        "loss-curves": figures.loss_curves(
            results.epochs,
            results.trials,
            metric=metric,
            best_id=best_id,
            params=list(results.params),
            rungs=rungs,
        ),
        "parallel-coordinates": figures.parallel_coordinates(
            finished,
            scores[finished.index],
            params=list(results.params),
            log_params=log_params,
            metric=metric,
        ),
    }


def _log_params(results: SweepResults) -> list[str]:
    """Hyperparameters the sweep spread over a decade or more: shown on log axes."""
    return [p for p in results.params if log_scaled(results.trials[p])]


def _rungs(scheduler: dict) -> list[int]:
    """ASHA's rung epochs: grace period, times the reduction factor, below max_t."""
    try:
        rung, factor = int(scheduler["grace_period"]), float(scheduler["reduction_factor"])
        max_t = int(scheduler["max_t"])
    except (KeyError, TypeError, ValueError):
        return []
    rungs = []
    while rung < max_t and factor > 1 and len(rungs) < 20:
        rungs.append(rung)
        rung = int(math.ceil(rung * factor))
    return rungs
