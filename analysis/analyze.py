"""analyze_results: best trial, test-set numbers, t-SNE map and report for one results folder.

Everything is computed before anything is written, so a bad table, checkpoint or option
leaves the analysis folder as it was. Files are then written one by one, each atomically,
with best_trial.json last: an analysis folder without it is an unfinished one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import sys
import time

import numpy as np
import pandas as pd

from analysis import figures
from analysis.best import choose_best, load_model, trial_scores
from analysis.defaults import IWAE_K, TSNE_POINTS
from analysis.evaluation import KNN_K, iwae_bound, knn_accuracy
from analysis.page import PLOT_CONFIG
from analysis.report import build_report
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
from results_folder import storage
from vae_core.data import MnistSplits, load_mnist
from vae_core.device import resolve_device
from vae_core.errors import CheckpointError, ConfigError, DataError
from vae_core.evaluate import OUTLIER_IQRS, Evaluation, evaluate, latent_means
from vae_core.evaluate import outlier_text as describe_outliers

log = logging.getLogger(__name__)

FILES = ("tsne.parquet", "tsne.html", "report.html", "best_trial.json")  # in writing order
# Outlier test images listed in best_trial.json, worst first; `test.outliers` counts them all.
# A model that breaks on many images has a bad median already: 20 show what went wrong.
OUTLIERS_LISTED = 20


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
    log.info(
        "best trial %s (%s %.2f, %s) from %s",
        best["trial_id"],
        metric,
        best["score"],
        best["status"],
        checkpoint,
    )

    dev = resolve_device(device)
    _check_weights(model, checkpoint)
    model = model.to(dev)
    test, test_z = _test_numbers(model, data, dev, iwae_k=iwae_k, progress=progress, clock=clock)
    _check_finite(test, checkpoint)
    table = _tsne_map(test_z, data.test_y.numpy(), tsne_points, test, progress, clock)

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
        "test": test,
        "tsne": {"points": len(table), "of": len(test_z), "seed": SEED, "init": "pca"},
        "data": {"source": data.source, **data.sizes()},
        "device": str(dev),
        "out": str(out) if out is not None else storage.join(results.root, "analysis"),
        "analysed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    tsne_fig = tsne_figure(
        table,
        title=f"{results.name}: t-SNE of {len(table):,} test-set "
        f"latent means, best trial {best['trial_id']}",
    )
    page = build_report(results, scores, summary, model, data, tsne_fig)
    clock.lap("report")
    summary["seconds"], summary["cpu_seconds"] = clock.totals()
    summary["files"] = list(FILES)
    files = {
        "tsne.parquet": table,
        "report.html": page,
        "tsne.html": tsne_fig.to_html(full_html=True, include_plotlyjs=True, config=PLOT_CONFIG),
        "best_trial.json": json.dumps(summary, indent=2) + "\n",
    }
    _write(files, summary["out"])
    return summary


def _test_numbers(
    model, data: MnistSplits, dev, *, iwae_k: int, progress: bool, clock: _Clock
) -> tuple[dict, np.ndarray]:
    """Test negative ELBO (mean, median, 99th percentile, outliers), IWAE bound, active units
    and kNN accuracy; and the test latents."""
    test_x = data.test_x.to(dev)
    elbo = evaluate(model, test_x)  # fp32: reported numbers must not depend on the hardware
    clock.lap("test_elbo")
    iwae, iwae_se = iwae_bound(model, test_x, k=iwae_k, progress=progress)
    clock.lap("iwae")
    test_z = latent_means(model, test_x).cpu().numpy()
    train_z = latent_means(model, data.train_x.to(dev)).cpu().numpy()
    knn = knn_accuracy(train_z, data.train_y.numpy(), test_z, data.test_y.numpy())
    clock.lap("knn")
    return {
        "images": len(test_x),
        "loss": elbo.loss,
        "recon": elbo.recon,
        "kl": elbo.kl,
        **outlier_numbers(elbo),
        "iwae_nll": iwae,
        "iwae_nll_stderr": iwae_se,
        "iwae_k": iwae_k,
        "active_units": elbo.active_units,
        "z_dim": model.z_dim,
        "knn_accuracy": knn,
        "knn_k": KNN_K,
    }, test_z


def _tsne_map(
    test_z: np.ndarray,
    test_y: np.ndarray,
    points: int | None,
    test: dict,
    progress: bool,
    clock: _Clock,
) -> pd.DataFrame:
    """The t-SNE table of a stratified sample; adds its trustworthiness to `test`."""
    idx = stratified_sample(test_y, points)
    coords = embed(test_z[idx], progress=progress)
    clock.lap("tsne")
    test.update(trustworthiness=map_trustworthiness(test_z[idx], coords), trustworthiness_k=TRUST_K)
    clock.lap("trustworthiness")
    return tsne_table(idx, test_y[idx], test_z[idx], coords)


def outlier_numbers(elbo: Evaluation, listed: int = OUTLIERS_LISTED) -> dict:
    """best_trial.json's robust test statistics: the median, the 99th percentile, the mean
    with outliers capped, the fence and the outlier images (the `listed` worst, by test index).

    `elbo` must cover the whole test set in order, so its indices are test indices. A value
    that is not finite is written as null (JSON has no NaN).
    """
    return {
        "median": elbo.median,
        "p99": elbo.p99,
        "robust_loss": elbo.robust_loss,
        "outlier_fence": elbo.fence,
        "outlier_iqrs": OUTLIER_IQRS,
        "outliers": len(elbo.outliers),
        "outlier_images": [
            {"index": int(i), "loss": float(v) if math.isfinite(v) else None}
            for i, v in zip(elbo.outliers[:listed], elbo.outlier_losses[:listed], strict=True)
        ],
    }


def _check_weights(model, checkpoint: str) -> None:
    # Weights that load but hold NaN or inf (a checkpoint saved just before divergence) would
    # otherwise surface later as a JSON or t-SNE error far from their cause. One image far
    # out of distribution is no reason to reject a model: the evaluation counts it instead.
    bad = [
        name
        for name, t in [*model.named_parameters(), *model.named_buffers()]
        if t.is_floating_point() and not bool(t.isfinite().all())
    ]
    if bad:
        raise CheckpointError(
            f"checkpoint {checkpoint} has non-finite weights ({', '.join(bad[:5])}"
            f"{f' and {len(bad) - 5} more' if len(bad) > 5 else ''})"
        )


def _check_finite(test: dict, checkpoint: str) -> None:
    # With finite weights, the bounded log-variance and float64 sums, the test numbers are
    # finite even when some images are outliers; a non-finite one means the model is broken.
    bad = [k for k, v in test.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise CheckpointError(
            f"checkpoint {checkpoint} gives non-finite test numbers ({', '.join(bad)})"
        )


def summary_lines(s: dict) -> list[str]:
    """best_trial.json in a few lines, for the terminal."""
    t = s["test"]
    params = " ".join(f"{k}={figures.fmt(v)}" for k, v in s["params"].items())
    return [
        f"best trial {s['trial_id']} ({s['status']}): {s['metric']} {s['score']:.2f} at "
        f"epoch {s['best_epoch']}; {params}",
        f"test ({t['images']:,} images): negative ELBO {t['loss']:.2f} nats (recon "
        f"{t['recon']:.2f} + KL {t['kl']:.2f}), median {t['median']:.2f}, 99th percentile "
        f"{t['p99']:.2f}, {outlier_text(t)}",
        f"IWAE NLL <= {t['iwae_nll']:.2f} (k={t['iwae_k']}, s.e. {t['iwae_nll_stderr']:.2f}); "
        f"active units {t['active_units']}/{t['z_dim']}; kNN accuracy "
        f"{100 * t['knn_accuracy']:.2f}% (k={t['knn_k']}); t-SNE trustworthiness "
        f"{t['trustworthiness']:.3f} ({s['tsne']['points']:,} points)",
        f"checkpoint {s['checkpoint']}",
        f"wrote {s['out']} (report.html, tsne.html, tsne.parquet, best_trial.json) in "
        f"{s['seconds']['total']:.0f} s ({s['cpu_seconds']['total']:.0f} CPU s)",
    ]


def outlier_text(t: dict, shown: int = 5) -> str:
    """best_trial.json's outliers in `vae-sweep train`'s words, fence included."""
    worst = [(o["index"], o["loss"]) for o in t["outlier_images"]]
    return describe_outliers(t["outliers"], t["outlier_fence"], worst, shown=shown)


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
            f"{results.path('sweep.json')} says the sweep's test set has "
            f"{expected} images, but {data.source} has {len(data.test_x)}: pass "
            "the sweep's MNIST folder as the data root"
        )
    return data


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
