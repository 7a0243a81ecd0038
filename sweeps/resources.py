"""Preflight of where the trials run: how many fit at once, and whether every node can reach
the results folder. Checked before the sweep starts, so a bad request fails in seconds."""

from __future__ import annotations

import math

import ray

from results_folder import storage
from sweeps.config import SweepConfig
from vae_core.errors import ConfigError


def max_concurrent(config: SweepConfig, cluster: dict) -> int | None:
    """The most trials at once: the ConcurrencyLimiter around Optuna, or None for none.

    A local Ray's resources are fixed, so the limit is what they hold (or --max-concurrent,
    if lower). A cluster grows and shrinks, so nothing it has at the start limits it: without
    --max-concurrent Tune starts each trial as a node with room appears (docs/cluster.md,
    "A cluster: resources and concurrency", says why and what --max-concurrent adds).
    """
    if config.address is not None:
        return config.max_concurrent
    slots = trial_slots(config, cluster)
    return slots if config.max_concurrent is None else min(slots, config.max_concurrent)


def trial_slots(config: SweepConfig, cluster: dict) -> int:
    """Trials that fit at once in `cluster`'s resources now.

    Raises:
        ConfigError: not even one trial fits.
    """
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    slots = math.floor(cpus / config.cpus_per_trial + 1e-9)
    if config.gpus_per_trial > 0:
        slots = min(slots, math.floor(gpus / config.gpus_per_trial + 1e-9))
    if slots >= 1:
        return slots
    need = f"{config.cpus_per_trial:g} CPUs" + (
        f" and {config.gpus_per_trial:g} GPUs" if config.gpus_per_trial else ""
    )
    raise ConfigError(
        f"a trial needs {need}, but the local Ray has {cpus:g} CPUs and {gpus:g} GPUs"
    )


def check_storage_is_shared(config: SweepConfig) -> None:
    """Refuse a node-local --storage where trials may run on other nodes than this driver.

    Ray moves a restarted trial to any node with room; with a folder only one node sees,
    the trial would not find its checkpoints there (and the tables would miss its results).
    """
    if storage.is_uri(config.storage) or config.shared_storage or config.address is None:
        return
    alive = [node for node in ray.nodes() if node["Alive"]]
    here = ray.get_runtime_context().get_node_id()
    # A head that runs no trials (cluster.yaml's CPU-less head) is multi-node in effect:
    # its workers are started later by the autoscaler.
    head_runs_trials = any(
        node["NodeID"] == here and node["Resources"].get("CPU", 0) > 0 for node in alive
    )
    if len(alive) > 1 or not head_runs_trials:
        raise ConfigError(
            f"--storage {config.storage} is a local folder, but trials run on other nodes "
            f"than this one, which could not read their checkpoints there: use shared "
            f"storage (an s3:// or gs:// URI), or pass --shared-storage if every node "
            f"mounts this path (e.g. NFS)"
        )
