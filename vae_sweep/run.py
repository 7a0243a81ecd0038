"""`vae-sweep run`: a hyperparameter sweep (Ray Tune + Optuna TPE + ASHA), then its analysis.

Its options are generated from SweepConfig's fields (`--cpus-per-trial` from `cpus_per_trial`,
the default from the field's), so a default is written once, in sweeps/config.py; only the help
texts live here. An option not given is absent from the parsed arguments (argparse.SUPPRESS):
SweepConfig fills in its own default, and --resume can tell a setting given from one defaulted.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import typing

from sweeps.config import (
    LOCAL_NODE_IP,
    NODE_IP_ENV,
    RAY_ADDRESS_ENV,
    SHARED_STORAGE_ENV,
    SweepConfig,
)
from vae_core.config import DATA_SOURCES
from vae_core.errors import ConfigError
from vae_sweep.options import DATA_HELP, DATA_ROOT_HELP, one_of

# One per SweepConfig field that is an option; {default} is the field's default.
HELP = {
    "name": "the sweep's folder under --storage (default: sweep-YYYYMMDD-HHMMSS)",
    "space": "a shipped space (see `vae-sweep spaces`) or a YAML file (default: quick without "
    "a GPU, default with one)",
    "storage": "where result folders go: a local folder or an s3:// / gs:// URI "
    "(default: ./{default})",
    "samples": "trials (default: the space's)",
    "epochs": "epoch budget per trial, ASHA's max_t (default: the space's)",
    "cpus_per_trial": "CPUs per trial, also its torch threads (default: {default:g})",
    "gpus_per_trial": "GPU share per trial, 0 for CPU trials; 0.25 runs 4 trials on one GPU "
    "(default for a local sweep: 0.25 when Ray has a GPU, else 0; required with --address)",
    "max_concurrent": "most trials at once (default: as many as the local Ray holds; on a "
    "cluster, as many as its nodes hold at each moment, growing as nodes join)",
    "address": f"Ray cluster to use: 'auto' or HOST:PORT (default: ${RAY_ADDRESS_ENV}, Ray's "
    "own, where set; else start a local Ray in this process, on a loopback address)",
    "node_ip": f"loopback address of the local Ray; {LOCAL_NODE_IP} keeps every Ray port on "
    f"127.0.0.1, another 127.x address is kept as given but Ray listens on all interfaces "
    f"(default: ${NODE_IP_ENV} or {{default}})",
    "data": DATA_HELP.replace("%(default)s", "{default}"),
    "data_root": DATA_ROOT_HELP,
    "seed": "Optuna's sampler and every trial's initialisation (default: {default})",
    "shared_storage": "declare a local --storage path shared by every node (an NFS mount); "
    f"without it a multi-node cluster needs an s3:// or gs:// --storage (default: "
    f"${SHARED_STORAGE_ENV}=1)",
    "resume": "continue the interrupted sweep --name with its own settings",
    "resume_errored": "with --resume: errored trials continue from their last checkpoints "
    "(e.g. after a reclaimed spot node)",
    "restart_errored": "with --resume: errored trials start again from scratch",
    "tensorboard": "also write TensorBoard event files into each trial's folder",
}
# SweepConfig fields that are not options of their own: the command line itself, and the GPU
# sharing, which --mps and --time-sliced set (add_sharing_options).
NOT_OPTIONS = ("command", "sharing")
# Where a user sets an option's default in the environment (for `ray job submit`, tests).
# RAY_ADDRESS is Ray's own: a Ray user expects a program to join the cluster it names.
ENV_DEFAULTS = {
    "node_ip": NODE_IP_ENV,
    "shared_storage": SHARED_STORAGE_ENV,
    "address": RAY_ADDRESS_ENV,
}
# Settings of the sweep itself: --resume takes them from the sweep's sweep.json instead.
SWEEP_OPTIONS = (
    "space",
    "samples",
    "epochs",
    "cpus_per_trial",
    "gpus_per_trial",
    "data",
    "data_root",
    "seed",
    "tensorboard",  # Ray restores the sweep's own loggers
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a hyperparameter sweep (Ray Tune + Optuna TPE + ASHA)",
        description="Run a sweep and write trials.parquet, epochs.parquet, sweep.json and "
        "optuna.db to STORAGE/NAME, then analyse it. With no options: the quick "
        "space on CPUs (minutes on a laptop), the default space with a GPU.",
    )
    add_config_options(parser)
    add_sharing_options(parser)
    parser.add_argument(
        "--no-analyze", action="store_true", help="skip `vae-sweep analyze` at the end"
    )
    parser.set_defaults(run=run)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per SweepConfig field (but NOT_OPTIONS), absent from the parsed arguments
    unless given (or set in the environment, ENV_DEFAULTS)."""
    types = typing.get_type_hints(SweepConfig)
    for field in dataclasses.fields(SweepConfig):
        if field.name in NOT_OPTIONS:
            continue
        flag = "--" + field.name.replace("_", "-")
        default = None if field.default is dataclasses.MISSING else field.default
        options = {"help": HELP[field.name].format(default=default)}
        options["default"] = _env_default(field.name) or argparse.SUPPRESS
        value_type = _value_type(types[field.name])
        if value_type is bool:
            options["action"] = "store_true"
        elif field.name == "data":
            options.update(type=one_of("data", DATA_SOURCES), choices=DATA_SOURCES)
        else:
            # A space is given by its name or file: sweep_config loads it.
            options["type"] = str if field.name == "space" else value_type
        parser.add_argument(flag, **options)


def _env_default(name: str) -> str | bool | None:
    value = os.environ.get(ENV_DEFAULTS.get(name, ""), "")
    if not value:
        return None
    return value == "1" if name == "shared_storage" else value


def _value_type(hint: object) -> type:
    """int from `int` or from `int | None` (None is the option's default, never typed)."""
    (value_type,) = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
    return value_type


def add_sharing_options(parser: argparse.ArgumentParser) -> None:
    """--mps and --time-sliced: how the trials that share a GPU share it (sweeps/sharing.py),
    as `args.sharing`; neither: "auto", MPS where it runs."""
    sharing = parser.add_mutually_exclusive_group()
    sharing.add_argument(
        "--mps",
        dest="sharing",
        action="store_const",
        const="mps",
        help="run the trials that share a GPU under NVIDIA MPS, so that their kernels run at "
        "the same time, and stop if it cannot run (a local sweep on a GPU; the default where "
        "MPS can run)",
    )
    sharing.add_argument(
        "--time-sliced",
        dest="sharing",
        action="store_const",
        const="time-sliced",
        help="run the trials that share a GPU as processes that take turns on it (MPS off)",
    )
    parser.set_defaults(sharing="auto")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "address", None) is None:
        from sweeps.local_ray import single_machine_mode

        single_machine_mode()  # before Ray is imported: see sweeps/local_ray.py
    from sweeps import run_sweep

    config = sweep_config(args)
    outcome = run_sweep(config)
    print(sweep_summary(outcome))
    if outcome.interrupted:
        print(
            f"interrupted: continue with `vae-sweep run --name {config.name} "
            f"--storage {config.storage} --resume`"
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

    names = {f.name for f in dataclasses.fields(SweepConfig)} - set(NOT_OPTIONS)
    given = {name: getattr(args, name) for name in names if hasattr(args, name)}
    if given.get("resume"):
        again = ["--" + n.replace("_", "-") for n in SWEEP_OPTIONS if n in given]
        if not given.get("name") or again:
            raise ConfigError(
                "--resume continues the sweep --name with the settings in its "
                "sweep.json" + (f"; drop {', '.join(again)}" if again else "; --name is required")
            )
    if "space" in given:
        given["space"] = load_space(given["space"])
    given.setdefault("name", time.strftime("sweep-%Y%m%d-%H%M%S"))
    return SweepConfig(**given, command=tuple(sys.argv), sharing=args.sharing)


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
