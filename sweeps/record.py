"""sweep.json's content: the resolved settings of a sweep, so its results can be read and
resumed alone (results_folder.sweep_json reads and writes the file)."""

from __future__ import annotations

import platform
from dataclasses import replace
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version

from results_folder.layout import OPTUNA_DB
from results_folder.schema import METRIC, MODE
from search_spaces import parse_space
from search_spaces.space import TOP_LEVEL
from sweeps.config import SweepConfig
from vae_core.data import MnistSplits


def now() -> str:
    # Milliseconds: a short sweep's tuning (started_at to finished_at) is read to fractions
    # of a second (bench/sweep_overhead.py).
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def sweep_record(
    config: SweepConfig, data: MnistSplits, *, search: dict, scheduler: dict, cluster: dict
) -> dict:
    """Everything a reader of the results needs to know about how they were made."""
    return {
        "name": config.name,
        "command": list(config.command),
        "started_at": now(),
        "finished_at": None,
        "space": config.space.to_dict(),
        "samples": config.samples,
        "epochs": config.epochs,
        "seed": config.seed,
        "metric": METRIC,
        "mode": MODE,
        "search": search,
        "scheduler": scheduler,
        "resources": {
            "cpus_per_trial": config.cpus_per_trial,
            "gpus_per_trial": config.gpus_per_trial,
            # How the trials that share a GPU share it: "mps", "time-sliced", or "node" (a
            # cluster's nodes, as set up); sharing_by_node, filled in as the sweep ends, says
            # what the trials on each node found.
            "sharing": "node" if config.address else config.sharing,
            "sharing_by_node": {},
            "cluster": cluster,
            "address": config.address,
        },
        "data": {
            "requested": config.data,
            "source": data.source,
            "root": config.data_root,
            "sizes": data.sizes(),
            "train_limit": config.space.fixed.get("train_limit"),
        },
        "versions": versions(),
        "storage": config.storage,
        "optuna_db": OPTUNA_DB,
        "study_name": config.name,
        "resumes": [],
    }


def versions() -> dict:
    out = {"python": platform.python_version()}
    for package in ("torch", "ray", "optuna", "vae-sweep"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out


def stored_config(record: dict, config: SweepConfig) -> SweepConfig:
    """The sweep's own settings from its sweep.json; where it runs stays as `config` says."""
    raw = {k: v for k, v in record["space"].items() if k in TOP_LEVEL}
    space = parse_space(raw, name=record["space"]["name"], path=record["space"]["path"])
    resources = record["resources"]
    return replace(
        config,
        space=space,
        samples=record["samples"],
        epochs=record["epochs"],
        seed=record["seed"],
        data=record["data"]["requested"],
        data_root=record["data"]["root"],
        cpus_per_trial=resources["cpus_per_trial"],
        gpus_per_trial=resources["gpus_per_trial"],
    )
