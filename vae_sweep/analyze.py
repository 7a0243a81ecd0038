"""`vae-sweep analyze`: the best trial of a sweep, its test-set numbers, t-SNE map and report."""

from __future__ import annotations

import argparse

from analysis.defaults import IWAE_K, TSNE_POINTS
from vae_core.train import VAL_COLUMNS
from vae_sweep.options import one_of


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="best trial, test-set numbers, t-SNE map and report.html of a sweep",
        description="Analyse a finished sweep: choose the best trial on validation, evaluate it "
        "on the test set and write RESULTS_DIR/analysis/ (best_trial.json, "
        "tsne.parquet, tsne.html, report.html).",
    )
    parser.add_argument(
        "results_dir",
        metavar="RESULTS_DIR",
        help="the sweep's folder (local or s3://...), e.g. results/NAME",
    )
    parser.add_argument(
        "--metric",
        type=one_of("metric", VAL_COLUMNS),
        choices=VAL_COLUMNS,
        default="val_loss",
        help="validation column that picks the best trial (default: %(default)s)",
    )
    parser.add_argument(
        "--iwae-k",
        type=int,
        default=IWAE_K,
        help="importance samples per test image for the IWAE bound (default: %(default)s)",
    )
    parser.add_argument(
        "--tsne-points",
        type=int,
        default=TSNE_POINTS,
        help=f"test images on the t-SNE map, stratified by digit (default: "
        f"{TSNE_POINTS:,}; 0 = all)",
    )
    parser.add_argument(
        "--data-root",
        default=None,
        help="the MNIST folder, if sweep.json's data root is not valid here",
    )
    parser.add_argument("--out", default=None, help="output folder (default: RESULTS_DIR/analysis)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from analysis import analyze_results, summary_lines

    summary = analyze_results(
        args.results_dir,
        metric=args.metric,
        iwae_k=args.iwae_k,
        tsne_points=args.tsne_points or None,
        out=args.out,
        data_root=args.data_root,
    )
    print("\n".join(summary_lines(summary)))
    return 0
