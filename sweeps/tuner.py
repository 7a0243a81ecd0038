"""The sweep: a Ray Tune Tuner with Optuna's TPE, ASHA early stopping and per-trial resources.

run_sweep(SweepConfig) checks everything it can before touching the results folder, starts or
joins Ray, runs (or resumes) the Tuner and returns the outcome read back from trials.parquet.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import warnings
from dataclasses import dataclass, replace

import optuna
import pandas as pd
import pyarrow.fs as pafs
import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter

from results_folder import storage
from search_spaces import SearchSpace
from search_spaces.space import SEARCHABLE
from sweeps.config import SweepConfig
from sweeps.local_ray import ray_session
from sweeps.progress import Progress
from sweeps.record import (
    OPTUNA_DB,
    now,
    read_record,
    stored_config,
    sweep_record,
    write_record,
)
from sweeps.results import ResultsWriter
from sweeps.searcher import SweepOptunaSearch
from sweeps.trial import run_trial
from vae_core.data import MnistSplits, load_mnist
from vae_core.errors import ConfigError

log = logging.getLogger(__name__)

METRIC, MODE = "val_loss", "min"
# The post's configuration: evaluated first, so a sweep never reports worse than the baseline.
POST_CONFIG = {"z_dim": 10, "fc_size": 400, "lr": 1e-3, "batch_size": 128}
MAX_FAILURES = 2  # a crashed trial restarts from its last checkpoint this many times
STAGING_DIR = os.path.join(os.path.expanduser("~"), ".cache", "vae-sweep", "optuna")


@dataclass(frozen=True)
class SweepOutcome:
    results_dir: str
    trials: pd.DataFrame  # trials.parquet as written at the end
    samples: int  # trials asked for; fewer finished rows mean the sweep was interrupted

    @property
    def interrupted(self) -> bool:
        return len(self.trials) < self.samples

    def best(self) -> pd.Series | None:
        """The trial with the lowest best val loss among those that neither diverged nor
        failed, or None. Ties break as in analysis.best.choose_best (fewer epochs, then
        trial_id), so the summary names the trial the analysis then evaluates."""
        ok = self.trials[self.trials["status"].isin(["completed", "early_stopped"])]
        ok = ok.dropna(subset=["best_val_loss"])
        ranked = ok.sort_values(["best_val_loss", "epochs_run", "trial_id"], kind="stable")
        return None if ranked.empty else ranked.iloc[0]


def storage_root(path: str) -> str:
    """A URI as it is; a local path made absolute (Ray needs it so)."""
    return path if storage.is_uri(path) else os.path.abspath(os.path.expanduser(path))


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
    results_dir = storage.join(config.storage, config.name)
    record = _check_results_dir(results_dir, config.resume)
    if record is not None:
        if record["storage"] != config.storage:
            # Ray's saved state (its callbacks, the Optuna storage URL) names the old place.
            raise ConfigError(
                f"sweep {config.name} was started under {record['storage']}; "
                f"resume it there (--storage {record['storage']})"
            )
        config = stored_config(record, config)
    data = load_mnist(config.data, config.data_root)
    with ray_session(config.address, config.node_ip) as cluster:
        if config.address is not None and config.gpus_per_trial is None and not cluster.get("GPU"):
            log.info(
                "no GPU in the cluster now: CPU trials; pass --gpus-per-trial (e.g. 0.25) "
                "for trials on GPU workers that the autoscaler adds"
            )
        config = config.resolved(cluster_gpus=cluster.get("GPU", 0.0))
        _check_storage_is_shared(config)
        slots = max_concurrent(config, cluster)
        data = data.limit_train(config.space.fixed.get("train_limit"))
        if record is None:
            record = sweep_record(
                config,
                data,
                search=_search_settings(config, slots),
                scheduler=_scheduler_settings(config),
                cluster={k: cluster.get(k, 0.0) for k in ("CPU", "GPU")},
            )
        else:
            record["resumes"].append({"command": list(config.command), "at": now()})
        write_record(results_dir, record)
        log.info(
            "sweep %s: %d trials, %s at a time, up to %d epochs each; space %s; "
            "data %s (%d training images); results in %s",
            config.name,
            config.samples,
            slots or "as many as the cluster's nodes hold",
            config.epochs,
            config.space.name,
            data.source,
            len(data.train_x),
            results_dir,
        )
        db = _OptunaDb(results_dir)
        log.info("watch it: %s", watch_command(db.url))
        if config.tensorboard:
            log.info("watch it: tensorboard --logdir %s", results_dir)
        tuner = build_tuner(config, data, results_dir, slots=slots, db_url=db.url)
        try:
            tuner.fit()
        finally:
            db.upload()
    trials = storage.read_parquet(storage.join(results_dir, "trials.parquet"))
    outcome = SweepOutcome(results_dir=results_dir, trials=trials, samples=config.samples)
    if not outcome.interrupted:  # an interrupted sweep is not finished: --resume ends it
        record["finished_at"] = now()
        write_record(results_dir, record)
    return outcome


def build_tuner(
    config: SweepConfig, data: MnistSplits, results_dir: str, *, slots: int | None, db_url: str
) -> tune.Tuner:
    """The Tuner for a resolved `config` (see SweepConfig.resolved); restored on resume.

    `slots` is the most trials at once (max_concurrent), or None for as many as the
    cluster's resources hold at each moment."""
    trainable = make_trainable(config, data)
    if config.resume:
        # Tuner.restore brings back the searcher (its Optuna study), ASHA, the callbacks and
        # every trial; unfinished trials continue from their latest checkpoints.
        return tune.Tuner.restore(
            results_dir, trainable=trainable, param_space=fixed_config(config, data)
        )
    space = config.space
    searcher = SweepOptunaSearch(
        space=optuna_space(space),
        metric=METRIC,
        mode=MODE,
        points_to_evaluate=post_point(space),
        sampler=sampler(config.seed, config.samples),
        study_name=config.name,
        storage=optuna.storages.RDBStorage(db_url),
        max_epochs=config.epochs,
    )
    scheduler = ASHAScheduler(**_scheduler_settings(config, with_name=False))
    params = {name: SEARCHABLE[name] for name in space.param_names}  # column types
    callbacks = [
        ResultsWriter(results_dir, params, config.epochs),
        Progress(list(params), config.samples, config.epochs),
        # Ray's own per-trial result.json and progress.csv, for Ray's tools; no TensorBoard
        # files (see quiet_ray_and_optuna), whose writer also warns at every NaN.
        JsonLoggerCallback(),
        CSVLoggerCallback(),
    ]
    if config.tensorboard:
        # Event files in each trial's folder (`tensorboard --logdir <storage>/<name>`); off by
        # default because its writer warns at every NaN loss of a diverging trial.
        callbacks.append(TBXLoggerCallback())
    return tune.Tuner(
        trainable,
        param_space=fixed_config(config, data),
        tune_config=tune.TuneConfig(
            search_alg=searcher if slots is None else ConcurrencyLimiter(searcher, slots),
            scheduler=scheduler,
            num_samples=config.samples,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
            reuse_actors=True,  # a new actor per trial would re-import torch: seconds each
        ),
        run_config=tune.RunConfig(
            name=config.name,
            storage_path=config.storage,
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            # Keep the best checkpoint (for the analysis) and the latest (to resume from).
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=METRIC, checkpoint_score_order=MODE
            ),
            callbacks=callbacks,
            verbose=0,  # Progress replaces Ray's per-result output
        ),
    )


def watch_command(db_url: str) -> str:
    """The command that opens the sweep's Optuna study in a browser while it runs
    (`pip install ".[dashboard]"`; it serves on 127.0.0.1:8080 only)."""
    return f"optuna-dashboard {db_url}"


def trial_name(trial) -> str:
    """Short trial names and folders: Ray's id ("e8c18593") instead of every parameter."""
    return trial.trial_id


def make_trainable(config: SweepConfig, data: MnistSplits):
    """run_trial with the data (put in Ray's object store once) and each trial's resources:
    CPUs and a GPU share; with 0.25, Ray packs 4 trials onto one GPU."""
    resources = {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(run_trial, data=data), resources)


def fixed_config(config: SweepConfig, data: MnistSplits) -> dict:
    """The TrainConfig fields every trial shares; Optuna adds the searched ones."""
    return {
        **config.space.fixed,
        "epochs": config.epochs,
        "seed": config.seed,  # the same initialisation everywhere: trials differ by params
        "data": data.source,
        "device": "cuda" if config.gpus_per_trial > 0 else "cpu",
        "threads": max(1, int(config.cpus_per_trial)),
    }


def optuna_space(space: SearchSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    out = {}
    for p in space.params:
        if p.type == "choice":
            out[p.name] = optuna.distributions.CategoricalDistribution(list(p.values))
        elif p.type == "int":
            out[p.name] = optuna.distributions.IntDistribution(int(p.low), int(p.high), log=p.log)
        else:
            out[p.name] = optuna.distributions.FloatDistribution(p.low, p.high, log=p.log)
    return out


def post_point(space: SearchSpace) -> list[dict]:
    """The post's configuration as the first trial, when the space contains it."""
    point = {name: POST_CONFIG[name] for name in space.param_names}
    if space.contains(point):
        return [point]
    log.info(
        "the post's configuration %s is outside space %s; not evaluated first", point, space.name
    )
    return []


def startup_trials(samples: int) -> int:
    """Random trials before TPE models the results: Optuna's 10, but at most a third of the
    budget, so that in a small sweep (the quick space's 8) TPE still chooses most trials."""
    return max(2, min(10, samples // 3))


def sampler(seed: int, samples: int) -> optuna.samplers.TPESampler:
    # multivariate: z_dim, fc_size and lr interact; constant_liar: trials run in parallel, so
    # running ones count as bad guesses instead of drawing the same point again.
    return optuna.samplers.TPESampler(
        seed=seed,
        multivariate=True,
        constant_liar=True,
        n_startup_trials=startup_trials(samples),
    )


def _search_settings(config: SweepConfig, slots: int) -> dict:
    return {
        "algorithm": "optuna.TPESampler",
        "multivariate": True,
        "n_startup_trials": startup_trials(config.samples),
        "constant_liar": True,
        "seed": config.seed,
        "samples": config.samples,
        "max_concurrent": slots,
        "points_to_evaluate": post_point(config.space),
        "study_name": config.name,
    }


def _scheduler_settings(config: SweepConfig, *, with_name: bool = True) -> dict:
    # ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", 2020).
    settings = {
        "time_attr": "training_iteration",
        "metric": METRIC,
        "mode": MODE,
        "max_t": config.epochs,
        "grace_period": min(config.space.grace_period, config.epochs),
        "reduction_factor": config.space.reduction_factor,
    }
    return {"name": "ASHAScheduler", **settings} if with_name else settings


def quiet_ray_and_optuna() -> None:
    """Progress prints what matters; silence the rest (read by Ray when the Tuner runs)."""
    # The new output engine prints its own header and table even at verbose=0.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A checkpoint every epoch with num_to_keep=1 forces an experiment snapshot each time,
    # by design (a resume then starts from the latest checkpoint); Ray warns about it.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # No TensorBoard files (whose writer warns at every NaN); build_tuner adds Ray's JSON and
    # CSV loggers itself.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # On resume Ray warns once per trial that had not reported yet when the driver died.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # ASHA's cut-off over a rung where every trial so far diverged (all NaN) is NaN, which
    # stops nothing, as it should; numpy warns about it.
    warnings.filterwarnings("ignore", "All-NaN slice encountered", RuntimeWarning)


def _check_results_dir(results_dir: str, resume: bool) -> dict | None:
    """The stored sweep.json when resuming; an error when the folder's state contradicts."""
    exists = storage.exists(results_dir)
    if exists and not resume:
        raise ConfigError(
            f"{results_dir} already exists: pass --resume to continue that "
            f"sweep, or choose another --name"
        )
    if not resume:
        return None
    if not exists or not storage.exists(storage.join(results_dir, "sweep.json")):
        raise ConfigError(f"nothing to resume: {results_dir} holds no sweep (no sweep.json)")
    return read_record(results_dir)


def _check_storage_is_shared(config: SweepConfig) -> None:
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


def max_concurrent(config: SweepConfig, cluster: dict) -> int | None:
    """The most trials at once: the ConcurrencyLimiter around Optuna, or None for none.

    A local Ray's resources are fixed, so the limit is what they hold (or --max-concurrent,
    if lower): Optuna then never samples a trial that would only wait.

    A cluster grows and shrinks (cluster.yaml's head has no CPU and no GPU; the autoscaler
    adds GPU workers while trials wait), so no limit is derived from what it has at the
    start. Without --max-concurrent the searcher is not wrapped at all: Ray Tune then keeps
    one trial PENDING until some node has its resources (TUNE_MAX_PENDING_TRIALS_PG "auto"
    is 1 for a searcher that is not a ConcurrencyLimiter, ray/tune/execution/
    tune_controller.py), starts it the moment a node joins or a trial ends, and asks Optuna
    for the next: the trials running follow the nodes there are. constant_liar keeps those
    running trials from being sampled twice. With --max-concurrent N, Tune keeps up to N
    trials pending, so the autoscaler sees all their demand at once and starts every worker
    they need together instead of one by one. (Ray 2.60 has no public API that reads the
    autoscaler's node types and max_workers; the GCS copy of them that Ray Train reads
    privately is not filled in by `ray up`'s autoscaler, so --max-concurrent says it.)
    """
    if config.address is not None:
        return config.max_concurrent
    slots = _slots(config, cluster)
    return slots if config.max_concurrent is None else min(slots, config.max_concurrent)


def _slots(config: SweepConfig, cluster: dict) -> int:
    """Trials that fit at once in `cluster`'s resources now."""
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


class _OptunaDb:
    """The study's SQLite file: in the results folder, or, for s3:// and gs:// (SQLite needs
    a local file), staged under ~/.cache and copied beside the tables when the sweep stops."""

    def __init__(self, results_dir: str) -> None:
        if not storage.is_uri(results_dir):
            os.makedirs(results_dir, exist_ok=True)
            self.path, self.remote = os.path.join(results_dir, OPTUNA_DB), None
        else:
            # A fixed place per results URI: a resumed sweep's restored study points here.
            digest = hashlib.sha256(results_dir.encode()).hexdigest()[:16]
            folder = os.path.join(STAGING_DIR, digest)
            os.makedirs(folder, exist_ok=True)
            self.path, self.remote = (
                os.path.join(folder, OPTUNA_DB),
                storage.join(results_dir, OPTUNA_DB),
            )
            if not os.path.exists(self.path) and storage.exists(self.remote):
                _copy(self.remote, self.path)
        self.url = f"sqlite:///{self.path}"

    def upload(self) -> None:
        if self.remote is not None:
            _copy(self.path, self.remote)


def _copy(src: str, dst: str) -> None:
    src_fs, src_path = storage.resolve(src)
    dst_fs, dst_path = storage.resolve(dst)
    pafs.copy_files(src_path, dst_path, source_filesystem=src_fs, destination_filesystem=dst_fs)
