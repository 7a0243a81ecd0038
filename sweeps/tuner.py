"""The Ray Tune Tuner of a sweep: Optuna's TPE, ASHA early stopping and per-trial resources."""

from __future__ import annotations

import pyarrow.fs as pafs
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter

from results_folder import storage
from results_folder.atomic_fs import atomic_local_filesystem
from results_folder.schema import METRIC, MODE
from results_folder.sweep_json import param_kinds
from sweeps.config import SweepConfig
from sweeps.optuna_study import searcher
from sweeps.progress import Progress
from sweeps.results import ResultsWriter
from sweeps.trial import run_trial
from sweeps.worker_data import WorkerData
from vae_core.data import MnistSplits

MAX_FAILURES = 2  # a crashed trial restarts from its last checkpoint this many times


def build_tuner(
    config: SweepConfig,
    data: MnistSplits,
    results_dir: str,
    *,
    slots: int | None,
) -> tune.Tuner:
    """The Tuner for a resolved `config` (see SweepConfig.resolved); restored on resume.

    `slots` is the most trials at once (max_concurrent), or None for as many as the
    cluster's resources hold at each moment."""
    trainable = make_trainable(config, data)
    if config.resume:
        # Tuner.restore brings back the searcher (its Optuna study), ASHA, the callbacks and
        # every trial; unfinished trials continue from their latest checkpoints, and errored
        # ones too where asked (the searcher asks them anew: StudySearch._reopen).
        return tune.Tuner.restore(
            results_dir,
            trainable=trainable,
            param_space=fixed_config(config, data),
            resume_errored=config.resume_errored,
            restart_errored=config.restart_errored,
            storage_filesystem=storage_filesystem(config.storage),
        )
    search = searcher(config, results_dir)
    return tune.Tuner(
        trainable,
        param_space=fixed_config(config, data),
        tune_config=tune.TuneConfig(
            search_alg=search if slots is None else ConcurrencyLimiter(search, slots),
            scheduler=ASHAScheduler(**scheduler_settings(config, with_name=False)),
            num_samples=config.samples,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
            reuse_actors=True,  # a new actor per trial would re-import torch: seconds each
        ),
        run_config=tune.RunConfig(
            name=config.name,
            storage_path=config.storage,
            storage_filesystem=storage_filesystem(config.storage),
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            # Keep the best checkpoint (for the analysis) and the latest (to resume from).
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=METRIC, checkpoint_score_order=MODE
            ),
            callbacks=callbacks(config, results_dir),
            verbose=0,  # Progress replaces Ray's per-result output
        ),
    )


def storage_filesystem(path: str) -> pafs.FileSystem | None:
    """For a local (or NFS) storage path, one where Ray's files appear whole or not at all
    (results_folder.atomic_fs); a URI's object store is so already (None: Ray's own)."""
    return None if storage.is_uri(path) else atomic_local_filesystem()


def callbacks(config: SweepConfig, results_dir: str) -> list[tune.Callback]:
    """What watches the trials: the result tables, the live view and Ray's own logs."""
    params = param_kinds(config.space.param_names)  # trials.parquet's column types
    out = [
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
        out.append(TBXLoggerCallback())
    return out


def scheduler_settings(config: SweepConfig, *, with_name: bool = True) -> dict:
    """ASHA's settings (Li et al., "A System for Massively Parallel Hyperparameter Tuning",
    2020); with its name, as sweep.json records them."""
    settings = {
        "time_attr": "training_iteration",
        "metric": METRIC,
        "mode": MODE,
        "max_t": config.epochs,
        "grace_period": min(config.space.grace_period, config.epochs),
        "reduction_factor": config.space.reduction_factor,
    }
    return {"name": "ASHAScheduler", **settings} if with_name else settings


def trial_name(trial) -> str:
    """Short trial names and folders: Ray's id ("e8c18593") instead of every parameter."""
    return trial.trial_id


def make_trainable(config: SweepConfig, data: MnistSplits):
    """run_trial with the data (put in Ray's object store once, fetched once per worker) and
    each trial's resources: CPUs and a GPU share; with 0.25, Ray packs 4 trials onto one GPU."""
    resources = {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(run_trial, data=WorkerData(data)), resources)


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
