"""analyze_results: best trial, test-set numbers, t-SNE map and report for one results folder.

Everything is computed before anything is written, so a bad table, checkpoint or option
leaves the analysis folder as it was. Files are then written one by one, each atomically,
with best_trial.json last: an analysis folder without it is an unfinished one.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import math
import os
import sys
import time

import numpy as np
import pandas as pd

from analysis import figures, report
from analysis.best import choose_best, load_model, trial_scores
from analysis.defaults import IWAE_K, TSNE_POINTS
from analysis.evaluation import (
    KNN_K,
    iwae_bound,
    knn_accuracy,
    prior_samples,
    reconstructions,
)
from analysis.importance import param_importances
from analysis.results import SweepResults, load_results
from analysis.tsne import (
    MIN_POINTS,
    SEED,
    TRUST_K,
    embed,
    map_trustworthiness,
    stratified_sample,
    tsne_figure,
    tsne_table,
)
from vae_core import storage
from vae_core.data import MnistSplits, load_mnist
from vae_core.device import resolve_device
from vae_core.errors import ConfigError, DataError
from vae_core.evaluate import evaluate, latent_means

log = logging.getLogger(__name__)

RECON_PER_DIGIT = 2  # test digits of each class shown beside their reconstructions
PRIOR_SAMPLES = 40  # four rows of ten
FILES = ("tsne.parquet", "tsne.html", "report.html", "best_trial.json")  # in writing order


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
    clock = _Clock()
    results = load_results(results_dir)
    scores = trial_scores(results, metric)
    best = choose_best(results, metric)
    model, state, checkpoint = load_model(results, best)
    data = _load_data(results, data_root)
    clock.lap("load")
    log.info("best trial %s (%s %.2f, %s) from %s", best["trial_id"], metric, best["score"],
             best["status"], checkpoint)

    dev = resolve_device(device)
    model = model.to(dev)
    test_x = data.test_x.to(dev)
    test = evaluate(model, test_x)  # fp32: reported numbers must not depend on the hardware
    clock.lap("test_elbo")
    iwae, iwae_se = iwae_bound(model, test_x, k=iwae_k, progress=progress)
    clock.lap("iwae")
    test_z = latent_means(model, test_x).cpu().numpy()
    train_z = latent_means(model, data.train_x.to(dev)).cpu().numpy()
    knn = knn_accuracy(train_z, data.train_y.numpy(), test_z, data.test_y.numpy())
    clock.lap("knn")

    test_y = data.test_y.numpy()
    idx = stratified_sample(test_y, tsne_points)
    coords = embed(test_z[idx], progress=progress)
    clock.lap("tsne")
    trust = map_trustworthiness(test_z[idx], coords)
    clock.lap("trustworthiness")
    table = tsne_table(idx, test_y[idx], test_z[idx], coords)

    summary = {
        "sweep": results.name,
        "results_dir": results.root,
        "metric": metric,
        "trial_id": str(best["trial_id"]),
        "status": str(best["status"]),
        "score": float(best["score"]),
        "best_epoch": int(best["best_epoch"]),
        "epochs_run": int(best["epochs_run"]),
        "params": {p: _plain(best[p]) for p in results.params},
        "config": state["config"],
        "checkpoint": checkpoint,
        "checkpoint_epoch": int(state["epoch"]),
        "test": {
            "images": len(test_x), "loss": test["loss"], "recon": test["recon"],
            "kl": test["kl"], "iwae_nll": iwae, "iwae_nll_stderr": iwae_se, "iwae_k": iwae_k,
            "active_units": test["active_units"], "z_dim": model.z_dim,
            "knn_accuracy": knn, "knn_k": KNN_K,
            "trustworthiness": trust, "trustworthiness_k": TRUST_K,
        },
        "tsne": {"points": len(idx), "of": len(test_x), "seed": SEED, "init": "pca"},
        "data": {"source": data.source, **data.sizes()},
        "device": str(dev),
        "out": str(out) if out is not None else storage.join(results.root, "analysis"),
        "analysed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    tsne_fig = tsne_figure(table, title=f"{results.name}: t-SNE of {len(idx):,} test-set "
                                        f"latent means, best trial {best['trial_id']}")
    page = _report(results, best, scores, summary, model, data, tsne_fig)
    clock.lap("report")
    summary["seconds"], summary["cpu_seconds"] = clock.totals()
    summary["files"] = list(FILES)
    # json first: allow_nan=False turns a NaN number into an error before any file is touched.
    files = {"tsne.parquet": table, "tsne.html": tsne_fig.to_html(
        full_html=True, include_plotlyjs=True, config=report.PLOT_CONFIG), "report.html": page,
        "best_trial.json": json.dumps(summary, indent=2, allow_nan=False) + "\n"}
    _write(files, summary["out"])
    return summary


def summary_lines(s: dict) -> list[str]:
    """best_trial.json in a few lines, for the terminal."""
    t = s["test"]
    params = " ".join(f"{k}={figures.fmt(v)}" for k, v in s["params"].items())
    return [
        f"best trial {s['trial_id']} ({s['status']}): val {s['metric']} {s['score']:.2f} at "
        f"epoch {s['best_epoch']}; {params}",
        f"test ({t['images']:,} images): negative ELBO {t['loss']:.2f} nats (recon "
        f"{t['recon']:.2f} + KL {t['kl']:.2f}); IWAE NLL <= {t['iwae_nll']:.2f} "
        f"(k={t['iwae_k']}, s.e. {t['iwae_nll_stderr']:.2f})",
        f"active units {t['active_units']}/{t['z_dim']}; kNN accuracy "
        f"{100 * t['knn_accuracy']:.2f}% (k={t['knn_k']}); t-SNE trustworthiness "
        f"{t['trustworthiness']:.3f} ({s['tsne']['points']:,} points)",
        f"checkpoint {s['checkpoint']}",
        f"wrote {s['out']} (report.html, tsne.html, tsne.parquet, best_trial.json) in "
        f"{s['seconds']['total']:.0f} s ({s['cpu_seconds']['total']:.0f} CPU s)",
    ]


def _check_options(iwae_k: int, tsne_points: int | None) -> None:
    problems = []
    if isinstance(iwae_k, bool) or not isinstance(iwae_k, int) or iwae_k < 1:
        problems.append(f"iwae_k must be a positive integer, but got {iwae_k!r}")
    if tsne_points is not None and (isinstance(tsne_points, bool) or not isinstance(
            tsne_points, int) or tsne_points < MIN_POINTS):
        problems.append(f"tsne_points must be an integer of at least {MIN_POINTS}, but got "
                        f"{tsne_points!r}")
    if problems:
        raise ConfigError("; ".join(problems))


def _load_data(results: SweepResults, data_root: str | None) -> MnistSplits:
    """The sweep's own data (sweep.json's source), checked to have its test-set size."""
    info = results.sweep.get("data") or {}
    root = data_root if data_root is not None else info.get("root")
    data = load_mnist(info.get("source") or "auto", root)
    expected = (info.get("sizes") or {}).get("test")
    if expected is not None and int(expected) != len(data.test_x):
        raise DataError(f"{results.path('sweep.json')} says the sweep's test set has "
                        f"{expected} images, but {data.source} has {len(data.test_x)}: pass "
                        "the sweep's MNIST folder as the data root")
    return data


def _report(results, best, scores, summary, model, data, tsne_fig) -> str:
    metric, params = summary["metric"], results.params
    figs = {
        "loss-curves": figures.loss_curves(
            results.epochs, results.trials, metric=metric, best_id=summary["trial_id"],
            params=params, rungs=_rungs(results.sweep.get("scheduler") or {})),
        "parallel-coordinates": figures.parallel_coordinates(
            results.finished(), scores[results.finished().index], params=params,
            log_params=_log_params(results), metric=metric),
        "tsne": tsne_fig,
    }
    notes = _notes(results, summary)
    found = param_importances(results, scores, metric=metric)
    figs["importance"] = figures.importance_bars(found[0], found[1]) if found else None
    if found:
        notes["importance"] = (f"Share of the variance in the best {metric} explained by each "
                               f"hyperparameter ({found[1]}, {found[2]} trials).")
        if found[2] < 10:
            notes["importance"] += f" With {found[2]} trials, read these shares as a hint only."
    originals = _per_digit(data.test_y.numpy(), RECON_PER_DIGIT)
    images = data.test_x[originals]
    recon = reconstructions(model, images.to(next(model.parameters()).device))
    rows, labels = [], []
    for r in range(RECON_PER_DIGIT):
        part = slice(r * 10, (r + 1) * 10)
        rows += [images[part].squeeze(1).float().numpy() / 255, recon[part]]
        labels += ["original", "reconstruction"]
    figs["reconstructions"] = figures.image_grid(rows, labels)
    prior = prior_samples(model, PRIOR_SAMPLES)
    figs["prior-samples"] = figures.image_grid(
        [prior[i : i + 10] for i in range(0, PRIOR_SAMPLES, 10)], [""] * (PRIOR_SAMPLES // 10))
    return report.render_report(
        title=f"Sweep {results.name}", meta=_meta(results, summary), cards=_cards(summary),
        best_table=_best_rows(summary), test_table=_test_rows(summary),
        leaderboard=_leaderboard(results, scores, metric), best_id=summary["trial_id"],
        figures=figs, notes=notes)


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


def _leaderboard(results: SweepResults, scores: pd.Series, metric: str) -> pd.DataFrame:
    t = results.trials.assign(**{f"best {metric}": scores})
    t = t.sort_values([f"best {metric}", "epochs_run"], na_position="last", kind="stable")
    cols = ["trial_id", "status", *results.params, f"best {metric}", "best_epoch", "epochs_run",
            "active_units", "wall_seconds"]
    if metric != "val_loss":
        cols.insert(cols.index("best_epoch"), "best_val_loss")
    board = t[cols].rename(columns={"best_epoch": "best epoch", "epochs_run": "epochs",
                                    "active_units": "active units", "wall_seconds": "wall s",
                                    "best_val_loss": "best val_loss"})
    board.insert(0, "#", range(1, len(board) + 1))
    return board


def _meta(results: SweepResults, s: dict) -> list[str]:
    escape = html.escape
    counts = results.trials["status"].value_counts()
    parts = ", ".join(f"{counts[k]} {k.replace('_', ' ')}" for k in
                      ("completed", "early_stopped", "diverged", "error") if k in counts)
    sweep = results.sweep
    when = " &rarr; ".join(escape(str(sweep[k])) for k in ("started_at", "finished_at")
                           if sweep.get(k))
    data = s["data"]
    lines = [f"{len(results.trials)} trials ({parts}) &middot; data {escape(data['source'])} "
             f"({data['train']:,} train / {data['val']:,} val / {data['test']:,} test) &middot; "
             f"{when}",
             f"Results <code>{escape(results.root)}</code> &middot; analysed {s['analysed_at']} "
             f"on {s['device']}"]
    if sweep.get("command"):
        command = sweep["command"]
        command = " ".join(map(str, command)) if isinstance(command, list) else str(command)
        lines.append(f"Command <code>{escape(command)}</code>")
    return lines


def _cards(s: dict) -> list[tuple[str, str, str]]:
    t = s["test"]
    return [
        (f"best val {s['metric']}", f"{s['score']:.2f}",
         f"trial {s['trial_id']}, epoch {s['best_epoch']}"),
        ("test negative ELBO", f"{t['loss']:.2f}", f"recon {t['recon']:.2f} + KL {t['kl']:.2f}"),
        ("test NLL (IWAE)", f"\u2264 {t['iwae_nll']:.2f}",
         f"k = {t['iwae_k']}, \u00b1 {t['iwae_nll_stderr']:.2f} s.e."),
        ("kNN accuracy", f"{100 * t['knn_accuracy']:.1f}%", f"k = {t['knn_k']}, latent means"),
        ("active units", f"{t['active_units']} / {t['z_dim']}", "Var of E[z|x] > 0.01"),
        ("trustworthiness", f"{t['trustworthiness']:.3f}", f"t-SNE map, k = {TRUST_K}"),
    ]


def _best_rows(s: dict) -> list[tuple[str, object]]:
    rows = [("trial", s["trial_id"]), ("status", s["status"].replace("_", " "))]
    rows += [(p, v) for p, v in s["params"].items()]
    config = s["config"]
    rows += [(k, config[k]) for k in ("batch_size", "epochs", "seed", "precision")
             if k in config and k not in s["params"]]
    rows += [(f"best val {s['metric']}", f"{s['score']:.2f}"),
             ("epochs run", s["epochs_run"]), ("checkpoint (epoch)", s["checkpoint_epoch"]),
             ("checkpoint", s["checkpoint"])]
    return rows


def _test_rows(s: dict) -> list[tuple[str, object]]:
    t = s["test"]
    return [
        ("test images", f"{t['images']:,}"),
        ("negative ELBO (nats/image)", f"{t['loss']:.2f}"),
        (" reconstruction", f"{t['recon']:.2f}"),
        (" KL", f"{t['kl']:.2f}"),
        (f"IWAE bound on −log p(x), k = {t['iwae_k']}", f"{t['iwae_nll']:.2f}"),
        (" standard error", f"{t['iwae_nll_stderr']:.2f}"),
        ("active units", f"{t['active_units']} of {t['z_dim']}"),
        (f"kNN accuracy (k = {t['knn_k']})", f"{100 * t['knn_accuracy']:.2f}%"),
        (f"t-SNE trustworthiness (k = {t['trustworthiness_k']})",
         f"{t['trustworthiness']:.4f}"),
    ]


def _notes(results: SweepResults, s: dict) -> dict[str, str]:
    metric, t, ts = s["metric"], s["test"], s["tsne"]
    rungs = _rungs(results.sweep.get("scheduler") or {})
    rung_text = (f" Dotted lines: ASHA's rungs (epochs {', '.join(map(str, rungs))}); a curve "
                 "that ends at one is a trial ASHA stopped there." if rungs else "")
    logs = _log_params(results)
    return {
        "test-set": f"Chosen on validation {metric} only; the test set was used for nothing "
                    "but these numbers. Nats per image.",
        "leaderboard": f"All {len(results.trials)} trials, best validation {metric} first; the "
                       "highlighted row is the best trial.",
        "loss-curves": f"Validation {metric} of every trial after each epoch, coloured by "
                       f"status; the best trial in green.{rung_text}",
        "parallel-coordinates": f"One line per finished trial, coloured by its best {metric}; "
                                "drag along an axis to filter."
                                + (f" Log scale: {', '.join(logs)}." if logs else ""),
        "importance": "Not enough finished trials with different hyperparameters to attribute "
                      "the metric to them.",
        "reconstructions": "Test digits (rows marked original) and the decoder's output for "
                           "their posterior mean (below each).",
        "prior-samples": f"{PRIOR_SAMPLES} draws z ~ N(0, I), decoded to pixel probabilities.",
        "tsne": f"{ts['points']:,} of {ts['of']:,} test images (stratified by digit, seed "
                f"{ts['seed']}); trustworthiness {t['trustworthiness']:.3f}. Hover for the digit "
                "and test image index; click a legend entry to hide a digit.",
    }


def _write(files: dict[str, object], out: str) -> None:
    """Each file atomically, best_trial.json last; a stale one goes first (marks unfinished)."""
    marker = storage.join(out, "best_trial.json")
    if storage.exists(marker):
        fs, path = storage.resolve(marker)
        fs.delete_file(path)
    for name in FILES:
        content = files[name]
        if isinstance(content, pd.DataFrame):
            storage.write_parquet(content, storage.join(out, name))
        else:
            storage.write_text(content, storage.join(out, name))
    log.info("wrote %s", ", ".join(storage.join(out, n) for n in FILES))


def _plain(value):
    """numpy scalars -> Python numbers, for JSON."""
    return value.item() if isinstance(value, np.generic) else value


class _Clock:
    """Wall and CPU seconds per step: on a shared machine CPU time says what the work cost."""

    def __init__(self) -> None:
        self.start = self.last = (time.perf_counter(), time.process_time())
        self.laps: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = (time.perf_counter(), time.process_time())
        self.laps[name] = round(now[0] - self.last[0], 2)
        self.cpu[name] = round(now[1] - self.last[1], 2)
        self.last = now

    def totals(self) -> tuple[dict[str, float], dict[str, float]]:
        wall = round(time.perf_counter() - self.start[0], 2)
        cpu = round(time.process_time() - self.start[1], 2)
        return {**self.laps, "total": wall}, {**self.cpu, "total": cpu}
