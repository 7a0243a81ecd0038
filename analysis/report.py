"""report.html's content: the sweep's tables, figures and notes, from the analysis's numbers.

The page layout (HTML, CSS, plotly.js embedded once) lives in analysis/page.py.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis import figures
from analysis.evaluation import prior_samples, reconstructions
from analysis.importance import param_importances
from analysis.page import render_page
from analysis.results import SweepResults
from analysis.tsne import TRUST_K
from vae_core.data import MnistSplits
from vae_core.evaluate import OUTLIER_IQRS
from vae_core.model import ConvVAE

RECON_PER_DIGIT = 2  # test digits of each class shown beside their reconstructions
PRIOR_SAMPLES = 40  # four rows of ten
OUTLIERS_SHOWN = 10  # worst outlier test images drawn: one row at half the page's width


def build_report(
    results: SweepResults,
    scores: pd.Series,
    summary: dict,
    model: ConvVAE,
    data: MnistSplits,
    tsne_fig: go.Figure,
) -> str:
    """report.html for an analysed sweep: `summary` is best_trial.json's content."""
    metric, params = summary["metric"], results.params
    figs = {
        "loss-curves": figures.loss_curves(
            results.epochs,
            results.trials,
            metric=metric,
            best_id=summary["trial_id"],
            params=params,
            rungs=_rungs(results.sweep.get("scheduler") or {}),
        ),
        "parallel-coordinates": figures.parallel_coordinates(
            results.finished(),
            scores[results.finished().index],
            params=params,
            log_params=_log_params(results),
            metric=metric,
        ),
        "tsne": tsne_fig,
    }
    notes = _notes(results, summary)
    off = sum(len(t.x) for t in figs["loss-curves"].data if t.mode == "markers")
    if off:
        notes["loss-curves"] += (
            f" The y axis spans the values of the trials that did not diverge; {off} "
            f"value{'s' * (off > 1)} beyond it or not finite (a trial that blew up) "
            f"{'are' if off > 1 else 'is'} drawn as triangles on its edge: hover for them."
        )
    if figs["parallel-coordinates"] is not None:
        axis = figs["parallel-coordinates"].data[0].dimensions[-1]
        if axis.ticktext and str(axis.ticktext[-1]).endswith("off scale"):
            notes["parallel-coordinates"] += (
                f" Scores far beyond the others or not finite sit at the end of the best "
                f"{metric} axis ({axis.ticktext[-1]})."
            )
    found = param_importances(results, scores, metric=metric)
    figs["importance"] = figures.importance_bars(found[0], found[1]) if found else None
    if found:
        notes["importance"] = (
            f"Share of the variance in the best {metric} explained by each "
            f"hyperparameter ({found[1]}, {found[2]} trials)."
        )
        if found[2] < 10:
            notes["importance"] += f" With {found[2]} trials, read these shares as a hint only."
    figs.update(_digit_figures(model, data))
    figs["outliers"], outlier_table = _outliers(model, data, summary["test"])
    return render_page(
        title=f"Sweep {results.name}",
        meta=_meta(results, summary),
        cards=_cards(summary),
        best_table=_best_rows(summary),
        test_table=_test_rows(summary),
        outlier_table=outlier_table,
        leaderboard=_leaderboard_table(results, scores, metric),
        best_id=summary["trial_id"],
        figures=figs,
        notes=notes,
    )


def _digit_figures(model: ConvVAE, data: MnistSplits) -> dict[str, go.Figure]:
    """Test digits above their reconstructions, and samples from the prior."""
    images = data.test_x[_per_digit(data.test_y.numpy(), RECON_PER_DIGIT)]
    recon = reconstructions(model, images.to(next(model.parameters()).device))
    rows, labels = [], []
    for r in range(RECON_PER_DIGIT):
        part = slice(r * 10, (r + 1) * 10)
        rows += [images[part].squeeze(1).float().numpy() / 255, recon[part]]
        labels += ["original", "reconstruction"]
    prior = prior_samples(model, PRIOR_SAMPLES)
    return {
        "reconstructions": figures.image_grid(rows, labels),
        "prior-samples": figures.image_grid(
            [prior[i : i + 10] for i in range(0, PRIOR_SAMPLES, 10)], [""] * (PRIOR_SAMPLES // 10)
        ),
    }


def _outliers(model: ConvVAE, data: MnistSplits, t: dict) -> tuple[go.Figure | None, list]:
    """The worst outlier test images above their reconstructions, captioned with their test
    index and negative ELBO; and a table of every listed one (index, digit, value)."""
    listed = t.get("outlier_images") or []
    rows = [(o["index"], int(data.test_y[o["index"]]), _nats(o["loss"])) for o in listed]
    if not listed:
        return None, rows
    idx = [o["index"] for o in listed[:OUTLIERS_SHOWN]]
    images = data.test_x[idx]
    recon = reconstructions(model, images.to(next(model.parameters()).device))
    fig = figures.image_grid(
        [images.squeeze(1).float().numpy() / 255, recon],
        ["test image", "reconstruction"],
        captions=[f"#{o['index']}<br>{_nats(o['loss'])}" for o in listed[:OUTLIERS_SHOWN]],
    )
    return fig, rows


def _nats(value: float | None) -> str:
    """A negative ELBO as text: 2 decimals while short, 3 significant digits when huge."""
    if value is None or not math.isfinite(value):
        return "not finite"
    return f"{value:.2f}" if abs(value) < 1e5 else f"{value:.3g}"


def _log_params(results: SweepResults) -> list[str]:
    """Hyperparameters the sweep spread over a decade or more: shown on log axes."""
    return [p for p in results.params if figures.log_scaled(results.trials[p])]


def _per_digit(labels: np.ndarray, per_digit: int) -> list[int]:
    """Test indices ordered round by round: the r-th image of digit 0, 1, ..., 9."""
    firsts = [np.flatnonzero(labels == d)[:per_digit] for d in range(10)]
    return [int(firsts[d][r]) for r in range(per_digit) for d in range(10)]


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


def _leaderboard_table(results: SweepResults, scores: pd.Series, metric: str) -> pd.DataFrame:
    t = results.trials.assign(**{f"best {metric}": scores})
    t = t.sort_values([f"best {metric}", "epochs_run"], na_position="last", kind="stable")
    cols = [
        "trial_id",
        "status",
        *results.params,
        f"best {metric}",
        "best_epoch",
        "epochs_run",
        "active_units",
        "wall_seconds",
    ]
    if metric != "val_loss":
        cols.insert(cols.index("best_epoch"), "best_val_loss")
    board = t[cols].rename(
        columns={
            "best_epoch": "best epoch",
            "epochs_run": "epochs",
            "active_units": "active units",
            "wall_seconds": "wall s",
            "best_val_loss": "best val_loss",
        }
    )
    for col in dict.fromkeys((f"best {metric}", "best val_loss", "wall s")):
        if col in board:  # fixed decimals, so the column lines up
            digits = 1 if col == "wall s" else 2
            board[col] = [
                (f"{v:.{digits}f}" if abs(v) < 1e5 else f"{v:.3g}") if np.isfinite(v) else None
                for v in board[col].astype(float)
            ]
    board.insert(0, "#", range(1, len(board) + 1))
    return board


def _meta(results: SweepResults, s: dict) -> list[str]:
    escape = html.escape
    counts = results.trials["status"].value_counts()
    parts = ", ".join(
        f"{counts[k]} {k.replace('_', ' ')}"
        for k in ("completed", "early_stopped", "diverged", "error")
        if k in counts
    )
    sweep = results.sweep
    when = " &rarr; ".join(
        escape(str(sweep[k])) for k in ("started_at", "finished_at") if sweep.get(k)
    )
    data = s["data"]
    lines = [
        f"{len(results.trials)} trials ({parts}) &middot; data {escape(data['source'])} "
        f"({data['train']:,} train / {data['val']:,} val / {data['test']:,} test) &middot; "
        f"{when}",
        f"Results <code>{escape(results.root)}</code> &middot; analysed {s['analysed_at']} "
        f"on {s['device']}",
    ]
    if sweep.get("command"):
        command = sweep["command"]
        command = " ".join(map(str, command)) if isinstance(command, list) else str(command)
        lines.append(f"Command <code>{escape(command)}</code>")
    return lines


def _cards(s: dict) -> list[tuple[str, str, str]]:
    t = s["test"]
    return [
        (
            f"best val {s['metric']}",
            f"{s['score']:.2f}",
            f"trial {s['trial_id']}, epoch {s['best_epoch']}",
        ),
        ("test negative ELBO", _nats(t["loss"]), f"recon {t['recon']:.2f} + KL {t['kl']:.2f}"),
        (
            "median, 99th pct.",
            f"{t['median']:.2f}, {t['p99']:.2f}",
            f"{t['outliers']} outlier image{'s' * (t['outliers'] != 1)} "
            f"(above {t['outlier_fence']:.0f})",
        ),
        (
            "test NLL (IWAE)",
            f"\u2264 {t['iwae_nll']:.2f}",
            f"k = {t['iwae_k']}, \u00b1 {t['iwae_nll_stderr']:.2f} s.e.",
        ),
        ("kNN accuracy", f"{100 * t['knn_accuracy']:.1f}%", f"k = {t['knn_k']}, latent means"),
        ("active units", f"{t['active_units']} / {t['z_dim']}", "Var of E[z|x] > 0.01"),
        ("trustworthiness", f"{t['trustworthiness']:.3f}", f"t-SNE map, k = {TRUST_K}"),
    ]


def _best_rows(s: dict) -> list[tuple[str, object]]:
    rows = [("trial", s["trial_id"]), ("status", s["status"].replace("_", " "))]
    rows += [(p, v) for p, v in s["params"].items()]
    config = s["config"]
    rows += [
        (k, config[k])
        for k in ("batch_size", "epochs", "seed", "precision")
        if k in config and k not in s["params"]
    ]
    rows += [
        (f"best val {s['metric']}", f"{s['score']:.2f}"),
        ("epochs run", s["epochs_run"]),
        ("checkpoint (epoch)", s["checkpoint_epoch"]),
        ("checkpoint", s["checkpoint"]),
    ]
    return rows


def _test_rows(s: dict) -> list[tuple[str, object]]:
    t = s["test"]
    return [
        ("test images", f"{t['images']:,}"),
        ("negative ELBO (nats/image), mean", _nats(t["loss"])),
        (" reconstruction", _nats(t["recon"])),
        (" KL", _nats(t["kl"])),
        (" median", f"{t['median']:.2f}"),
        (" 99th percentile", f"{t['p99']:.2f}"),
        (f" outlier fence (Q3 + {t['outlier_iqrs']:g} IQR)", f"{t['outlier_fence']:.2f}"),
        (" outlier images", f"{t['outliers']}"),
        (" mean with outliers capped at the fence", f"{t['robust_loss']:.2f}"),
        (f"IWAE bound on −log p(x), k = {t['iwae_k']}", f"{t['iwae_nll']:.2f}"),
        (" standard error", f"{t['iwae_nll_stderr']:.2f}"),
        ("active units", f"{t['active_units']} of {t['z_dim']}"),
        (f"kNN accuracy (k = {t['knn_k']})", f"{100 * t['knn_accuracy']:.2f}%"),
        (f"t-SNE trustworthiness (k = {t['trustworthiness_k']})", f"{t['trustworthiness']:.4f}"),
    ]


# The two sentences that explain the test statistics (the README says the same).
STATISTICS_NOTE = (
    "The negative ELBO is the mean over every test image, as papers report it; beside it, the "
    "median and the 99th percentile show what a typical and a hard image cost. An image "
    f"whose value lies more than {OUTLIER_IQRS:g} interquartile ranges above the upper "
    "quartile (the fence) is far beyond what the other images cost: each one is counted, "
    "listed by test index in best_trial.json and shown below."
)


def _outlier_note(t: dict) -> str:
    n, fence, listed = t["outliers"], t["outlier_fence"], len(t.get("outlier_images") or [])
    if not n:
        return f"No test image lies above the fence ({fence:.2f} nats)."
    lead = f"{n} test image{'s' * (n > 1)} lie{'s' * (n == 1)} above the fence ({fence:.2f} nats)."
    drawing = (
        "above the decoder's reconstruction of their posterior mean, captioned with their "
        "test index and negative ELBO"
    )
    if n <= OUTLIERS_SHOWN:
        return (
            f"{lead} {'All are' if n > 1 else 'It is'} drawn {drawing}; the table adds the digit."
        )
    return (
        f"{lead} The {OUTLIERS_SHOWN} worst are drawn {drawing}; the table, like "
        f"best_trial.json, lists the {listed} worst."
    )


def _notes(results: SweepResults, s: dict) -> dict[str, str]:
    metric, t, ts = s["metric"], s["test"], s["tsne"]
    rungs = _rungs(results.sweep.get("scheduler") or {})
    rung_text = (
        f" Dotted lines: ASHA's rungs (epochs {', '.join(map(str, rungs))}); a curve "
        "that ends at one is a trial ASHA stopped there."
        if rungs
        else ""
    )
    logs = _log_params(results)
    return {
        "test-set": f"Chosen on validation {metric} only; the test set was used for nothing "
        "but these numbers, in nats per image. " + STATISTICS_NOTE,
        "outliers": _outlier_note(t),
        "leaderboard": f"All {len(results.trials)} trials, best validation {metric} first; the "
        "highlighted row is the best trial.",
        "loss-curves": f"Validation {metric} of every trial after each epoch, coloured by "
        f"status; the best trial in green.{rung_text}",
        "parallel-coordinates": f"One line per finished trial, coloured by its best {metric}; "
        "drag along an axis to filter." + (f" Log scale: {', '.join(logs)}." if logs else ""),
        "importance": "Not enough finished trials with different hyperparameters to attribute "
        "the metric to them.",
        "reconstructions": "Test digits (rows marked original) and the decoder's output for "
        "their posterior mean (below each).",
        "prior-samples": f"{PRIOR_SAMPLES} draws z ~ N(0, I), decoded to pixel probabilities.",
        "tsne": f"{ts['points']:,} of {ts['of']:,} test images (stratified by digit, seed "
        f"{ts['seed']}); trustworthiness {t['trustworthiness']:.3f}. Hover for the digit "
        "and test image index; click a legend entry to hide a digit.",
    }
