"""report.html's numbers as rows: the header lines, the cards, the best trial's configuration,
its test-set numbers and the leaderboard. Text only; page.py lays them out."""

from __future__ import annotations

import html
import math
from datetime import datetime

import pandas as pd

from analysis.summary import AnalysisSummary
from analysis.tsne import TRUST_K
from results_folder.reader import SweepResults
from results_folder.schema import STATUSES


def fixed(value: float | None, digits: int = 2) -> str | None:
    """`digits` decimals, so a column lines up; 3 significant digits from 1e5 (a loss that
    blew up); None when not finite."""
    if value is None or not math.isfinite(value):
        return None
    return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.3g}"


def nats(value: float | None) -> str:
    """A negative ELBO as text: 2 decimals while short, 3 significant digits when huge."""
    return fixed(value) or "not finite"


def to_the_second(stamp: str) -> str:
    """An ISO 8601 time from sweep.json (kept there to the millisecond) as the report shows it."""
    try:
        return datetime.fromisoformat(stamp).isoformat(timespec="seconds")
    except (TypeError, ValueError):  # a hand-edited sweep.json: show what it says
        return str(stamp)


def meta_lines(results: SweepResults, s: AnalysisSummary) -> list[str]:
    """The lines under the title: trials, data, dates, where the results are, the command."""
    escape = html.escape
    counts = results.trials["status"].value_counts()
    parts = ", ".join(f"{counts[k]} {k.replace('_', ' ')}" for k in STATUSES if k in counts)
    sweep = results.sweep
    when = " &rarr; ".join(
        escape(to_the_second(sweep[k])) for k in ("started_at", "finished_at") if sweep.get(k)
    )
    data = s.data
    lines = [
        f"{len(results.trials)} trials ({parts}) &middot; data {escape(data.source)} "
        f"({data.train:,} train / {data.val:,} val / {data.test:,} test) &middot; "
        f"{when}",
        f"Results <code>{escape(results.root)}</code> &middot; analysed {s.analysed_at} "
        f"on {s.device}",
    ]
    if sweep.get("command"):
        command = sweep["command"]
        command = " ".join(map(str, command)) if isinstance(command, list) else str(command)
        lines.append(f"Command <code>{escape(command)}</code>")
    return lines


def cards(s: AnalysisSummary) -> list[tuple[str, str, str]]:
    """The headline numbers: (name, value, detail)."""
    t = s.test
    return [
        (f"best val {s.metric}", f"{s.score:.2f}", f"trial {s.trial_id}, epoch {s.best_epoch}"),
        ("test negative ELBO", nats(t.loss), f"recon {t.recon:.2f} + KL {t.kl:.2f}"),
        (
            "median, 99th pct.",
            f"{t.median:.2f}, {t.p99:.2f}",
            f"{t.outliers} outlier image{'s' * (t.outliers != 1)} (above {t.outlier_fence:.0f})",
        ),
        (
            "test NLL (IWAE)",
            f"\u2264 {t.iwae_nll:.2f}",
            f"k = {t.iwae_k}, \u00b1 {t.iwae_nll_stderr:.2f} s.e.",
        ),
        ("kNN accuracy", f"{100 * t.knn_accuracy:.1f}%", f"k = {t.knn_k}, latent means"),
        ("active units", f"{t.active_units} / {t.z_dim}", "Var of E[z|x] > 0.01"),
        ("trustworthiness", f"{t.trustworthiness:.3f}", f"t-SNE map, k = {TRUST_K}"),
    ]


def best_rows(s: AnalysisSummary) -> list[tuple[str, object]]:
    """The best trial's configuration: its hyperparameters, then the fixed settings."""
    rows = [("trial", s.trial_id), ("status", s.status.replace("_", " "))]
    rows += [(p, v) for p, v in s.params.items()]
    config = s.config
    rows += [
        (k, config[k])
        for k in ("batch_size", "epochs", "seed", "precision")
        if k in config and k not in s.params
    ]
    rows += [
        (f"best val {s.metric}", f"{s.score:.2f}"),
        ("epochs run", s.epochs_run),
        ("checkpoint (epoch)", s.checkpoint_epoch),
        ("checkpoint", s.checkpoint),
    ]
    return rows


INDENT = "\u2003"  # an em space: a row that details the one above


def test_set_rows(s: AnalysisSummary) -> list[tuple[str, object]]:
    """The test-set numbers, the robust statistics indented under the mean."""
    t = s.test
    return [
        ("test images", f"{t.images:,}"),
        ("negative ELBO (nats/image), mean", nats(t.loss)),
        (f"{INDENT}reconstruction", nats(t.recon)),
        (f"{INDENT}KL", nats(t.kl)),
        (f"{INDENT}median", f"{t.median:.2f}"),
        (f"{INDENT}99th percentile", f"{t.p99:.2f}"),
        (f"{INDENT}outlier fence (Q3 + {t.outlier_iqrs:g} IQR)", f"{t.outlier_fence:.2f}"),
        (f"{INDENT}outlier images", f"{t.outliers}"),
        (f"{INDENT}mean with outliers capped at the fence", f"{t.robust_loss:.2f}"),
        (f"IWAE bound on −log p(x), k = {t.iwae_k}", f"{t.iwae_nll:.2f}"),
        (f"{INDENT}standard error", f"{t.iwae_nll_stderr:.2f}"),
        ("active units", f"{t.active_units} of {t.z_dim}"),
        (f"kNN accuracy (k = {t.knn_k})", f"{100 * t.knn_accuracy:.2f}%"),
        (f"t-SNE trustworthiness (k = {t.trustworthiness_k})", f"{t.trustworthiness:.4f}"),
    ]


# The leaderboard's columns, renamed for people.
BOARD_NAMES = {
    "best_epoch": "best epoch",
    "epochs_run": "epochs",
    "active_units": "active units",
    "wall_seconds": "wall s",
    "best_val_loss": "best val_loss",
}


def leaderboard(results: SweepResults, scores: pd.Series, metric: str) -> pd.DataFrame:
    """Every trial, best `metric` first (ties to fewer epochs), numbered from 1."""
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
    board = t[cols].rename(columns=BOARD_NAMES)
    for col in dict.fromkeys((f"best {metric}", "best val_loss", "wall s")):
        if col in board:  # fixed decimals, so the column lines up
            digits = 1 if col == "wall s" else 2
            board[col] = [fixed(v, digits) for v in board[col].astype(float)]
    board.insert(0, "#", range(1, len(board) + 1))
    return board
