"""Analysis of a finished sweep: best trial, test-set numbers, t-SNE map and report.html.

Reads only the results folder (trials.parquet, epochs.parquet, sweep.json, checkpoints,
optionally optuna.db), never Ray's internals. Start at analyze.py.
"""

from analysis.defaults import IWAE_K, TSNE_POINTS

__all__ = ["IWAE_K", "TSNE_POINTS", "analyze_results", "summary_lines"]


def __getattr__(name: str):
    # Lazy: importing torch, scikit-learn and plotly takes seconds, and the CLI imports this
    # package only for its defaults when it builds `--help`.
    if name == "analyze_results":
        from analysis.analyze import analyze_results

        return analyze_results
    if name == "summary_lines":
        from analysis.summary import summary_lines

        return summary_lines
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
