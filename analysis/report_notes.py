"""report.html's notes: the sentence or two under each section's heading."""

from __future__ import annotations

import plotly.graph_objects as go

from analysis.drawings import OUTLIERS_SHOWN, PRIOR_SAMPLES
from analysis.importance import Importances
from analysis.summary import AnalysisSummary, TestNumbers
from results_folder.reader import SweepResults
from vae_core.evaluate import OUTLIER_IQRS

# The two sentences that explain the test statistics (the README says the same).
STATISTICS_NOTE = (
    "The negative ELBO is the mean over every test image, as papers report it; beside it, the "
    "median and the 99th percentile show what a typical and a hard image cost. An image "
    f"whose value lies more than {OUTLIER_IQRS:g} interquartile ranges above the upper "
    "quartile (the fence) is far beyond what the other images cost: each one is counted, "
    "listed by test index in best_trial.json and shown below."
)


def report_notes(
    results: SweepResults,
    s: AnalysisSummary,
    figures: dict[str, go.Figure | None],
    importances: Importances | None,
    *,
    rungs: list[int],
    log_params: list[str],
) -> dict[str, str]:
    """Each section's note, by section id; the figures' notes say what they leave out."""
    metric, t, ts = s.metric, s.test, s.tsne
    rung_text = (
        f" Dotted lines: ASHA's rungs (epochs {', '.join(map(str, rungs))}); a curve "
        "that ends at one is a trial ASHA stopped there."
        if rungs
        else ""
    )
    logs = f" Log scale: {', '.join(log_params)}." if log_params else ""
    return {
        "test-set": f"Chosen on validation {metric} only; the test set was used for nothing "
        "but these numbers, in nats per image. " + STATISTICS_NOTE,
        "outliers": _outlier_note(t),
        "leaderboard": f"All {len(results.trials)} trials, best validation {metric} first; the "
        "highlighted row is the best trial.",
        "loss-curves": f"Validation {metric} of every trial after each epoch, coloured by "
        f"status; the best trial in green.{rung_text}" + _off_curves(figures["loss-curves"]),
        "parallel-coordinates": f"One line per finished trial, coloured by its best {metric}; "
        f"drag along an axis to filter.{logs}"
        + _off_scores(figures["parallel-coordinates"], metric),
        "importance": _importance_note(importances, metric),
        "reconstructions": "Test digits (rows marked original) and the decoder's output for "
        "their posterior mean (below each).",
        "prior-samples": f"{PRIOR_SAMPLES} draws z ~ N(0, I), decoded to pixel probabilities.",
        "tsne": f"{ts.points:,} of {ts.of:,} test images (stratified by digit, seed "
        f"{ts.seed}); trustworthiness {t.trustworthiness:.3f}. Hover for the digit "
        "and test image index; click a legend entry to hide a digit.",
    }


def _off_curves(fig: go.Figure) -> str:
    """How many values loss_curves drew on the edge of its y axis (its marker-only traces)."""
    off = sum(len(t.x) for t in fig.data if t.mode == "markers")
    if not off:
        return ""
    return (
        f" The y axis spans the values of the trials that did not diverge; {off} "
        f"value{'s' * (off > 1)} beyond it or not finite (a trial that blew up) "
        f"{'are' if off > 1 else 'is'} drawn as triangles on its edge: hover for them."
    )


def _off_scores(fig: go.Figure | None, metric: str) -> str:
    """Whether parallel_coordinates put scores at an end of its metric axis (its last)."""
    if fig is None:
        return ""
    axis = fig.data[0].dimensions[-1]
    if not (axis.ticktext and str(axis.ticktext[-1]).endswith("off scale")):
        return ""
    return (
        f" Scores far beyond the others or not finite sit at the end of the best "
        f"{metric} axis ({axis.ticktext[-1]})."
    )


def _importance_note(found: Importances | None, metric: str) -> str:
    if found is None:
        return (
            "Not enough finished trials with different hyperparameters to attribute "
            "the metric to them."
        )
    note = (
        f"Share of the variance in the best {metric} explained by each "
        f"hyperparameter ({found.source}, {found.trials} trials)."
    )
    if found.trials < 10:
        note += f" With {found.trials} trials, read these shares as a hint only."
    return note


def _outlier_note(t: TestNumbers) -> str:
    n, fence, listed = t.outliers, t.outlier_fence, len(t.outlier_images)
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
