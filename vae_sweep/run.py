"""`vae-sweep run`: a hyperparameter sweep (Ray Tune + Optuna TPE + ASHA), then its analysis."""

from __future__ import annotations

import argparse
import os
import sys
import time

from sweeps.config import LOCAL_NODE_IP, NODE_IP_ENV, SHARED_STORAGE_ENV, SweepConfig
from vae_core.config import DATA_SOURCES
from vae_core.errors import ConfigError
from vae_sweep.options import DATA_HELP, DATA_ROOT_HELP, one_of

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


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a hyperparameter sweep (Ray Tune + Optuna TPE + ASHA)",
        description="Run a sweep and write trials.parquet, epochs.parquet, sweep.json and "
        "optuna.db to STORAGE/NAME, then analyse it. With no options: the quick "
        "space on CPUs (minutes on a laptop), the default space with a GPU.",
    )
    # Most defaults are None, "not given": --resume refuses those of SWEEP_OPTIONS, and
    # sweep_config fills in the rest.
    _add_budget_options(parser)
    _add_resource_options(parser)
    _add_place_options(parser)
    _add_trial_options(parser)
    parser.set_defaults(run=run)


def _add_budget_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--space",
        default=None,
        help="a shipped space (see `vae-sweep spaces`) or a YAML file (default: "
        "quick without a GPU, default with one)",
    )
    parser.add_argument("--samples", type=int, default=None, help="trials (default: the space's)")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epoch budget per trial, ASHA's max_t (default: the space's)",
    )


def _add_resource_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cpus-per-trial",
        type=float,
        default=None,
        help="CPUs per trial, also its torch threads (default: 1)",
    )
    parser.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        help="GPU share per trial; 0.25 runs 4 trials on one GPU (default: 0.25 "
        "when Ray has a GPU, else 0; on an autoscaling cluster whose GPU workers are not "
        "up yet, pass it)",
    )
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        help="most trials at once (default: as many as the local Ray holds; on a cluster, "
        "as many as its nodes hold at each moment, growing as nodes join)",
    )
    add_sharing_options(parser)


def add_sharing_options(parser: argparse.ArgumentParser) -> None:
    """--mps, --streams and --time-sliced: how the trials that share a GPU share it
    (sweeps/sharing.py), as `args.sharing`; none of them: "auto"."""
    sharing = parser.add_mutually_exclusive_group()
    sharing.add_argument(
        "--mps",
        dest="sharing",
        action="store_const",
        const="mps",
        help="run the trials that share a GPU under an NVIDIA MPS daemon of the sweep's own, "
        "so that their kernels run at the same time (a local sweep on a GPU; the default "
        "where MPS can run)",
    )
    sharing.add_argument(
        "--streams",
        dest="sharing",
        action="store_const",
        const="streams",
        help="train the trials that share a GPU in one process per GPU, each on a CUDA stream "
        "of its own, so that their kernels run at the same time (a local sweep on a GPU; the "
        "default where MPS cannot run)",
    )
    sharing.add_argument(
        "--time-sliced",
        dest="sharing",
        action="store_const",
        const="time-sliced",
        help="run the trials that share a GPU as processes that take turns on it",
    )
    parser.set_defaults(sharing="auto")


def _add_place_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster to use: 'auto' or HOST:PORT (default: start a local Ray "
        "in this process, on a loopback address)",
    )
    parser.add_argument(
        "--storage",
        default="results",
        help="where result folders go: a local folder or an s3:// / gs:// URI (default: ./results)",
    )
    parser.add_argument(
        "--shared-storage",
        action="store_true",
        default=os.environ.get(SHARED_STORAGE_ENV, "") == "1",
        help="declare a local --storage path shared by every node (an NFS mount); without "
        f"it a multi-node cluster needs an s3:// or gs:// --storage (default: "
        f"${SHARED_STORAGE_ENV}=1)",
    )
    parser.add_argument(
        "--name",
        default=None,
        help="the sweep's folder under --storage (default: sweep-YYYYMMDD-HHMMSS)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted sweep --name with its own settings",
    )


def _add_trial_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=one_of("data", DATA_SOURCES),
        choices=DATA_SOURCES,
        default=None,  # None: "auto", or the resumed sweep's own
        help=DATA_HELP % {"default": "auto"},
    )
    parser.add_argument("--data-root", default=None, help=DATA_ROOT_HELP)
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="Optuna's sampler and every trial's initialisation (default: 0)",
    )
    parser.add_argument(
        "--no-analyze", action="store_true", help="skip `vae-sweep analyze` at the end"
    )
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        default=None,  # None: not given (--resume refuses it; the sweep keeps its own)
        help="also write TensorBoard event files into each trial's folder",
    )
    parser.add_argument(
        "--node-ip",
        default=os.environ.get(NODE_IP_ENV, LOCAL_NODE_IP),
        help=f"loopback address of the local Ray; {LOCAL_NODE_IP} keeps every Ray port on "
        f"127.0.0.1, another 127.x address is kept as given but Ray listens on all "
        f"interfaces (default: ${NODE_IP_ENV} or {LOCAL_NODE_IP})",
    )


def run(args: argparse.Namespace) -> int:
    if args.address is None:
        from sweeps.local_ray import single_machine_mode

        single_machine_mode()  # before Ray is imported: see sweeps/local_ray.py
    from sweeps import run_sweep

    config = sweep_config(args)
    outcome = run_sweep(config)
    print(sweep_summary(outcome))
    if outcome.interrupted:
        print(
            f"interrupted: continue with `vae-sweep run --name {config.name} "
            f"--storage {args.storage} --resume`"
        )
        return 130
    if not args.no_analyze:
        from analysis import analyze_results, summary_lines

        print("\n".join(summary_lines(analyze_results(outcome.results_dir))))
    return 0


def sweep_config(args: argparse.Namespace) -> SweepConfig:
    """`vae-sweep run`'s options as a SweepConfig (the space file is loaded and checked here,
    before anything else happens)."""
    from search_spaces import load_space

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
        sharing=args.sharing,
    )


def sweep_summary(outcome) -> str:
    """How many trials finished and how, and the best one with its searched parameters."""
    from results_folder.display import param_text

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
    params = param_text({name: best[name] for name in outcome.params})
    lines.append(
        f"best: trial {best['trial_id']}, val loss {best['best_val_loss']:.2f} nats at "
        f"epoch {best['best_epoch']} ({params}); checkpoint "
        f"{best['checkpoint_path']}"
    )
    return "\n".join(lines)
