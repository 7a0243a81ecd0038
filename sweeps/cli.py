"""The `vae-sweep` command: parses arguments and calls the library; no logic of its own.

Each subcommand is a (register, run) pair in COMMANDS. Heavy imports (torch, Ray) happen
inside the run functions so `vae-sweep --help` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback

from sweeps.config import LOCAL_NODE_IP, NODE_IP_ENV, SHARED_STORAGE_ENV
from vae_core.errors import ConfigError, VaeSweepError

log = logging.getLogger("vae_sweep")


# --- vae-sweep train ---------------------------------------------------------------------------


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one model and write metrics.parquet and model.pt")
    p.add_argument("--z-dim", type=int, default=10, help="latent size (default: 10, the post's)")
    p.add_argument("--fc-size", type=int, default=400, help="hidden layer size (default: 400)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    add_data_options(p)
    p.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="train on the first N training images only (quick runs)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument(
        "--precision",
        default="auto",
        help="auto, fp32 or bf16 (default: auto = bf16 where the hardware has it)",
    )
    p.add_argument("--compile", action="store_true", help="use torch.compile")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default="runs/train", help="output folder (default: runs/train)")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    p.set_defaults(run=run_train)


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        default="auto",
        help="auto, mnist or mnist-5k (default: auto = full MNIST if found or "
        "downloadable, else the 5k sample)",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="folder with the MNIST IDX files (default: ~/.cache/vae-sweep/mnist)",
    )


def run_train(args: argparse.Namespace) -> int:
    from vae_core.config import TrainConfig
    from vae_core.evaluate import outlier_text
    from vae_core.single_run import train_to_folder

    config = TrainConfig(
        z_dim=args.z_dim,
        fc_size=args.fc_size,
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=args.seed,
        data=args.data,
        data_root=args.data_root,
        train_limit=args.train_limit,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        threads=args.threads,
    )
    summary = train_to_folder(config, args.out, force=args.force)
    where = f"{summary['device']}, {summary['precision']}, data {summary['data']}"
    if summary["diverged"]:
        print(
            f"training diverged at epoch {summary['epochs']} (its loss was not finite or grew "
            f"past 10x its best; {where}); {args.out}/model.pt holds the last sound epoch, if any"
        )
        return 1
    outliers = outlier_text(
        len(summary["test_outliers"]),
        summary["test_fence"],
        list(zip(summary["test_outliers"], summary["test_outlier_losses"], strict=True)),
    )
    print(
        f"val negative ELBO {summary['val_mean']:.2f} nats; test negative ELBO "
        f"{summary['test_loss']:.2f} nats (recon {summary['test_recon']:.2f} + KL "
        f"{summary['test_kl']:.2f}), median {summary['test_median']:.2f}, 99th percentile "
        f"{summary['test_p99']:.2f}, {outliers}; after {summary['epochs']} epochs "
        f"({where}); wrote {args.out}/metrics.parquet and {args.out}/model.pt"
    )
    return 0


# --- vae-sweep run -----------------------------------------------------------------------------

# Options that define a sweep: --resume takes them from the sweep's sweep.json instead.
SWEEP_OPTIONS = {
    "space": "--space",
    "samples": "--samples",
    "epochs": "--epochs",
    "cpus_per_trial": "--cpus-per-trial",
    "gpus_per_trial": "--gpus-per-trial",
    "data": "--data",
    "data_root": "--data-root",
    "seed": "--seed",
    "tensorboard": "--tensorboard",  # Ray restores the sweep's own loggers
}


def add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a hyperparameter sweep (Ray Tune + Optuna TPE + ASHA)",
        description="Run a sweep and write trials.parquet, epochs.parquet, sweep.json and "
        "optuna.db to STORAGE/NAME, then analyse it. With no options: the quick "
        "space on CPUs (minutes on a laptop), the default space with a GPU.",
    )
    p.add_argument(
        "--space",
        default=None,
        help="a shipped space (see `vae-sweep spaces`) or a YAML file (default: "
        "quick without a GPU, default with one)",
    )
    p.add_argument("--samples", type=int, default=None, help="trials (default: the space's)")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epoch budget per trial, ASHA's max_t (default: the space's)",
    )
    p.add_argument(
        "--cpus-per-trial",
        type=float,
        default=None,
        help="CPUs per trial, also its torch threads (default: 1)",
    )
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        help="GPU share per trial; 0.25 runs 4 trials on one GPU (default: 0.25 "
        "when Ray has a GPU, else 0; on an autoscaling cluster whose GPU workers are not "
        "up yet, pass it)",
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        help="most trials at once (default: as many as the local Ray holds; on a cluster, "
        "as many as its nodes hold at each moment, growing as nodes join)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster to use: 'auto' or HOST:PORT (default: start a local Ray "
        "in this process, on a loopback address)",
    )
    p.add_argument(
        "--storage",
        default="results",
        help="where result folders go: a local folder or an s3:// / gs:// URI (default: ./results)",
    )
    p.add_argument(
        "--shared-storage",
        action="store_true",
        default=os.environ.get(SHARED_STORAGE_ENV, "") == "1",
        help="declare a local --storage path shared by every node (an NFS mount); without "
        f"it a multi-node cluster needs an s3:// or gs:// --storage (default: "
        f"${SHARED_STORAGE_ENV}=1)",
    )
    p.add_argument(
        "--name",
        default=None,
        help="the sweep's folder under --storage (default: sweep-YYYYMMDD-HHMMSS)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted sweep --name with its own settings",
    )
    add_data_options(p)
    p.set_defaults(data=None)  # None: "auto", or the resumed sweep's own
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="Optuna's sampler and every trial's initialisation (default: 0)",
    )
    p.add_argument("--no-analyze", action="store_true", help="skip `vae-sweep analyze` at the end")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        default=None,  # None: not given (--resume refuses it; the sweep keeps its own)
        help="also write TensorBoard event files into each trial's folder",
    )
    p.add_argument(
        "--node-ip",
        default=os.environ.get(NODE_IP_ENV, LOCAL_NODE_IP),
        help=f"loopback address of the local Ray; {LOCAL_NODE_IP} keeps every Ray port on "
        f"127.0.0.1, another 127.x address is kept as given but Ray listens on all "
        f"interfaces (default: ${NODE_IP_ENV} or {LOCAL_NODE_IP})",
    )
    p.set_defaults(run=run_run)


def run_run(args: argparse.Namespace) -> int:
    if args.address is None:
        from sweeps.local_ray import single_machine_mode

        single_machine_mode()  # before Ray is imported: see sweeps/local_ray.py
    from sweeps.tuner import run_sweep

    config = sweep_config(args)
    outcome = run_sweep(config)
    print(_sweep_summary(outcome))
    if outcome.interrupted:
        print(
            f"interrupted: continue with `vae-sweep run --name {config.name} "
            f"--storage {args.storage} --resume`"
        )
        return 130
    if not args.no_analyze:
        from analysis import analyze_results
        from analysis.analyze import summary_lines

        print("\n".join(summary_lines(analyze_results(outcome.results_dir))))
    return 0


def sweep_config(args: argparse.Namespace):
    """`vae-sweep run`'s options as a SweepConfig (the space file is loaded and checked here,
    before anything else happens)."""
    from search_spaces import load_space
    from sweeps.config import SweepConfig

    if args.resume:
        given = [flag for dest, flag in SWEEP_OPTIONS.items() if getattr(args, dest) is not None]
        if not args.name or given:
            raise ConfigError(
                "--resume continues the sweep --name with the settings in its "
                "sweep.json" + (f"; drop {', '.join(given)}" if given else "; --name is required")
            )
    return SweepConfig(
        name=args.name or time.strftime("sweep-%Y%m%d-%H%M%S"),
        space=load_space(args.space) if args.space else None,
        storage=args.storage,
        samples=args.samples,
        epochs=args.epochs,
        cpus_per_trial=1.0 if args.cpus_per_trial is None else args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent,
        address=args.address,
        node_ip=args.node_ip,
        shared_storage=args.shared_storage,
        data=args.data or "auto",
        data_root=args.data_root,
        seed=0 if args.seed is None else args.seed,
        resume=args.resume,
        command=tuple(sys.argv),
        tensorboard=bool(args.tensorboard),
    )


def _sweep_summary(outcome) -> str:
    trials = outcome.trials
    counts = ", ".join(
        f"{n} {status}" for status, n in sorted(trials["status"].value_counts().items())
    )
    lines = [
        f"{len(trials)}/{outcome.samples} trials finished ({counts or 'none'}); "
        f"results in {outcome.results_dir}"
    ]
    best = outcome.best()
    if best is None:
        if len(trials):
            lines.append("no trial finished without diverging or failing")
        return "\n".join(lines)
    params = " ".join(f"{name}={_fmt(best[name])}" for name in _param_columns(trials))
    lines.append(
        f"best: trial {best['trial_id']}, val loss {best['best_val_loss']:.2f} nats at "
        f"epoch {best['best_epoch']} ({params}); checkpoint "
        f"{best['checkpoint_path']}"
    )
    return "\n".join(lines)


def _param_columns(trials) -> list[str]:
    from search_spaces.space import SEARCHABLE

    return [c for c in trials.columns if c in SEARCHABLE]


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# --- vae-sweep spaces --------------------------------------------------------------------------


def add_spaces(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "spaces",
        help="list the shipped search spaces, or check YAML files",
        description="Show the shipped search spaces, or validate and show the given space files.",
    )
    p.add_argument(
        "spaces",
        nargs="*",
        metavar="SPACE",
        help="shipped names or YAML files (default: every shipped space)",
    )
    p.set_defaults(run=run_spaces)


def run_spaces(args: argparse.Namespace) -> int:
    from search_spaces import load_space, shipped_spaces

    for i, name in enumerate(args.spaces or shipped_spaces()):
        space = load_space(name)
        asha = f"ASHA grace {space.grace_period}, reduction {space.reduction_factor}"
        print(("\n" if i else "") + f"{space.name}: {space.description}")
        print(f"  {space.samples} trials, up to {space.epochs} epochs, {asha}; {space.path}")
        for p in space.params:
            print(f"  {p.name:<10} {p.describe()}")
        fixed = " ".join(f"{k}={v}" for k, v in space.fixed.items())
        print(f"  fixed: {fixed}")
    return 0


# --- vae-sweep analyze -------------------------------------------------------------------------


def add_analyze(sub: argparse._SubParsersAction) -> None:
    from analysis.defaults import IWAE_K, TSNE_POINTS

    p = sub.add_parser(
        "analyze",
        help="best trial, test-set numbers, t-SNE map and report.html of a sweep",
        description="Analyse a finished sweep: choose the best trial on validation, evaluate it "
        "on the test set and write RESULTS_DIR/analysis/ (best_trial.json, "
        "tsne.parquet, tsne.html, report.html).",
    )
    p.add_argument(
        "results_dir",
        metavar="RESULTS_DIR",
        help="the sweep's folder (local or s3://...), e.g. results/NAME",
    )
    p.add_argument(
        "--metric",
        default="val_loss",
        help="validation column that picks the best trial (default: val_loss)",
    )
    p.add_argument(
        "--iwae-k",
        type=int,
        default=IWAE_K,
        help=f"importance samples per test image for the IWAE bound (default: {IWAE_K})",
    )
    p.add_argument(
        "--tsne-points",
        type=int,
        default=TSNE_POINTS,
        help=f"test images on the t-SNE map, stratified by digit (default: "
        f"{TSNE_POINTS:,}; 0 = all)",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="the MNIST folder, if sweep.json's data root is not valid here",
    )
    p.add_argument("--out", default=None, help="output folder (default: RESULTS_DIR/analysis)")
    p.set_defaults(run=run_analyze)


def run_analyze(args: argparse.Namespace) -> int:
    from analysis import analyze_results
    from analysis.analyze import summary_lines

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


COMMANDS = [add_train, add_run, add_spaces, add_analyze]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vae-sweep", description="Hyperparameter sweeps of a conv VAE on MNIST."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return args.run(args)
    except VaeSweepError as err:
        if args.debug:
            traceback.print_exc()
        print(f"vae-sweep: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vae-sweep: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
