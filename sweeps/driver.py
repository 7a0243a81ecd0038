"""run_sweep: check everything that can be checked before touching the results folder, start
or join Ray, run (or resume) the Tuner and return the outcome read back from trials.parquet."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import pandas as pd

from results_folder import best_trial, read_sweep_json, storage, write_sweep_json
from results_folder.display import format_value
from results_folder.layout import SWEEP_JSON, TRIALS
from sweeps.bytecode import warn_if_uncompiled
from sweeps.config import SweepConfig
from sweeps.local_ray import ray_session
from sweeps.optuna_study import search_settings, watch_command
from sweeps.quiet import quiet_ray_and_optuna
from sweeps.record import now, stored_config, sweep_record
from sweeps.resources import check_storage_is_shared, max_concurrent
from sweeps.results import StorageWriteError
from sweeps.searcher import StudyExport
from sweeps.sharing import gpu_sharing, shares_a_gpu
from sweeps.tuner import build_tuner, scheduler_settings
from vae_core.data import MnistSplits, load_mnist
from vae_core.errors import ConfigError, ResultsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepOutcome:
    results_dir: str
    trials: pd.DataFrame  # trials.parquet as written at the end
    samples: int  # trials asked for; fewer finished rows mean the sweep was interrupted
    params: tuple[str, ...]  # the searched hyperparameters, in the space's order

    @property
    def interrupted(self) -> bool:
        return len(self.trials) < self.samples

    def best(self) -> pd.Series | None:
        """The best trial's row (results_folder.best_trial: the rule the analysis applies too,
        so the summary names the trial the analysis then evaluates), or None."""
        return best_trial(self.trials)


def run_sweep(config: SweepConfig) -> SweepOutcome:
    """Run the sweep `config` describes, or continue it when `config.resume` is set.

    On resume the sweep's own settings (space, samples, epochs, resources, data, seed) come
    from its sweep.json; only where it runs (storage, address, node_ip) comes from `config`.

    Raises:
        ConfigError: the results folder exists without `resume` (or is missing with it), or
            the resources cannot run a trial.
        DataError: the data cannot be loaded.
    """
    quiet_ray_and_optuna()
    config = replace(config, storage=storage_root(config.storage))
    storage.check_writable(config.storage)  # before the data loads and Ray starts
    results_dir = storage.join(config.storage, config.name)
    record = _stored_record(results_dir, config)
    if record is not None:
        config = stored_config(record, config)
    data = load_mnist(config.data, config.data_root)
    if config.address is None:  # the workers run on this machine
        warn_if_uncompiled()
    with (
        gpu_sharing(config) as (sharing, worker_env),  # an MPS daemon: before Ray, after it
        ray_session(config.address, config.node_ip, worker_env=worker_env) as cluster,
    ):
        config = _resolve_on(cluster, config, sharing)
        slots = max_concurrent(config, cluster)
        data = data.limit_train(config.space.fixed.get("train_limit"))
        record = _started(record, config, data, slots, cluster)
        write_sweep_json(results_dir, record)
        _log_start(config, data, slots, results_dir)
        with sigterm_as_ctrl_c():
            shared = _fit(config, data, results_dir, slots)
        # The tuning ends here; a local Ray's shutdown (a second or more) is not part of it.
        ended_at = now()
    record["resources"]["sharing_by_node"] = {
        **record["resources"].get("sharing_by_node", {}),
        **shared,
    }
    return _finish(config, results_dir, record, ended_at)


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """Inside the block, SIGTERM (`ray job stop`, a process manager) stops the sweep as Ctrl-C
    does: Ray Tune saves its state and stops the trials. Entered once Ray runs: ray.init puts
    in a SIGTERM handler of its own, which ends the driver at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may handle signals
        return
    before = signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def storage_root(path: str) -> str:
    """A URI as it is; a local path made absolute (Ray needs it so)."""
    return path if storage.is_uri(path) else os.path.abspath(os.path.expanduser(path))


def _stored_record(results_dir: str, config: SweepConfig) -> dict | None:
    """The stored sweep.json when resuming; an error when the folder's state contradicts."""
    exists = storage.exists(results_dir)
    if exists and not config.resume:
        raise ConfigError(
            f"{results_dir} already exists: pass --resume to continue that "
            f"sweep, or choose another --name"
        )
    if not config.resume:
        return None
    if not exists or not storage.exists(storage.join(results_dir, SWEEP_JSON)):
        raise ConfigError(f"nothing to resume: {results_dir} holds no sweep (no sweep.json)")
    record = read_sweep_json(results_dir)
    if record["storage"] != config.storage:
        # Ray's saved state (its callbacks, the Optuna storage URL) names the old place.
        raise ConfigError(
            f"sweep {config.name} was started under {record['storage']}; "
            f"resume it there (--storage {record['storage']})"
        )
    return record


def _resolve_on(cluster: dict, config: SweepConfig, sharing: str) -> SweepConfig:
    """`config` with every None filled from what Ray has, checked against it, and the way its
    trials share a GPU (`sharing`, as gpu_sharing chose it) set."""
    config = config.resolved(cluster_gpus=cluster.get("GPU", 0.0))
    if sharing == "mps" and not shares_a_gpu(config):
        sharing = "time-sliced"  # Ray found no GPU for trials to share after all
    if config.address is None:  # a cluster's nodes share theirs as set up ("node")
        config = replace(config, sharing=sharing)
    check_storage_is_shared(config)
    return config


def _started(
    record: dict | None, config: SweepConfig, data: MnistSplits, slots: int | None, cluster: dict
) -> dict:
    """A new sweep's record, or a resumed one's with this start added."""
    if record is not None:
        record["resumes"].append(
            {
                "command": list(config.command),
                "at": now(),
                "sharing": "node" if config.address else config.sharing,
            }
        )
        return record
    return sweep_record(
        config,
        data,
        search=search_settings(config, slots),
        scheduler=scheduler_settings(config),
        cluster={k: cluster.get(k, 0.0) for k in ("CPU", "GPU")},
    )


def _log_start(config: SweepConfig, data: MnistSplits, slots: int | None, results_dir: str) -> None:
    log.info(
        "sweep %s: %d trials, %s at a time, up to %d epochs each, %s; space %s; "
        "data %s (%d training images); results in %s",
        config.name,
        config.samples,
        slots or "as many as the cluster's nodes hold",
        config.epochs,
        trial_resources(config.cpus_per_trial, config.gpus_per_trial),
        config.space.name,
        data.source,
        len(data.train_x),
        results_dir,
    )


def trial_resources(cpus: float, gpus: float) -> str:
    """What each trial gets, as the start of a sweep says it: "1 CPU and 0.25 GPU per trial
    (4 share a GPU)"."""

    def amount(n: float, unit: str) -> str:
        return f"{format_value(float(n))} {unit}" + ("s" if n > 1 else "")

    if not gpus:
        return amount(cpus, "CPU") + " per trial"
    # As many as fit whole, as Ray packs them: 0.35 each lets 2 share a GPU, not 3.
    shared = f" ({math.floor(1 / gpus + 1e-9)} share a GPU)" if gpus < 1 else ""
    return f"{amount(cpus, 'CPU')} and {amount(gpus, 'GPU')} per trial{shared}"


def _fit(
    config: SweepConfig, data: MnistSplits, results_dir: str, slots: int | None
) -> dict[str, str]:
    """Run the Tuner, and return how each node's GPU was shared, as its trials reported it
        (node IP -> "mps", "time-sliced" or both, comma-separated); the study's database reaches
        the results folder even if the Tuner fails. A write the storage refused (a full disk)
    stops the sweep with one StorageWriteError that says how to go on."""
    db = StudyExport(results_dir, config.name)
    log.info("watch it: %s", watch_command(db.url))
    if config.tensorboard:
        log.info("watch it: tensorboard --logdir %s", results_dir)
    tuner = build_tuner(config, data, results_dir, slots=slots)
    try:
        grid = tuner.fit()
    except Exception as err:
        with contextlib.suppress(OSError, ResultsError):  # the study's copy, as far as it got
            db.upload()
        refused = _cause(err, StorageWriteError)
        if refused is None:
            raise
        raise StorageWriteError(
            f"{refused}; the sweep stopped, nothing it finished is lost: make room, then "
            f"continue with `vae-sweep run --name {config.name} --storage {config.storage} "
            f"--resume`"
        ) from None
    db.upload()
    return sharing_by_node(result.metrics or {} for result in grid)


def _cause(err: BaseException | None, kind: type) -> BaseException | None:
    """`err`, or the exception of type `kind` it was raised from (Tune wraps its callbacks')."""
    while err is not None and not isinstance(err, kind):
        err = err.__cause__ or err.__context__
    return err


def sharing_by_node(last_results) -> dict[str, str]:
    """Node IP -> how the trials that ran there shared its GPU ("mps", "time-sliced", or both,
    comma-separated), from the trials' last results; nodes whose trials ran on CPUs are left
    out."""
    seen: dict[str, set[str]] = {}
    for metrics in last_results:
        if metrics.get("gpu_sharing") and metrics.get("node_ip"):
            seen.setdefault(metrics["node_ip"], set()).add(metrics["gpu_sharing"])
    return {node: ", ".join(sorted(ways)) for node, ways in sorted(seen.items())}


def _finish(config: SweepConfig, results_dir: str, record: dict, ended_at: str) -> SweepOutcome:
    """The outcome from trials.parquet; a sweep that ran all its trials is marked finished
    (at `ended_at`, when its tuning ended)."""
    trials = storage.read_parquet(storage.join(results_dir, TRIALS))
    outcome = SweepOutcome(results_dir, trials, config.samples, config.space.param_names)
    if not outcome.interrupted:  # an interrupted sweep is not finished: --resume ends it
        record["finished_at"] = ended_at
        write_sweep_json(results_dir, record)
    return outcome
