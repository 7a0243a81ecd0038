"""The sweep's Optuna side: the space as Optuna distributions, the TPE sampler, the searcher
Ray Tune asks for trials, and the study's SQLite file (optuna.db)."""

from __future__ import annotations

import hashlib
import logging
import os

import optuna

from results_folder import storage
from results_folder.layout import OPTUNA_DB
from results_folder.schema import METRIC, MODE
from search_spaces import SearchSpace
from search_spaces.space import SEARCHABLE
from sweeps.config import SweepConfig
from sweeps.searcher import SweepOptunaSearch
from vae_core.config import TrainConfig

log = logging.getLogger(__name__)

# The post's configuration (TrainConfig's defaults): evaluated first, so a sweep never reports
# worse than the baseline.
POST_CONFIG = {name: getattr(TrainConfig(), name) for name in SEARCHABLE}
STAGING_DIR = os.path.join(os.path.expanduser("~"), ".cache", "vae-sweep", "optuna")


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


def searcher(config: SweepConfig, db_url: str) -> SweepOptunaSearch:
    """Ray Tune's searcher for a resolved `config`, its study kept in the database `db_url`."""
    return SweepOptunaSearch(
        space=optuna_space(config.space),
        metric=METRIC,
        mode=MODE,
        points_to_evaluate=post_point(config.space),
        sampler=sampler(config.seed, config.samples),
        study_name=config.name,
        storage=optuna.storages.RDBStorage(db_url),
        max_epochs=config.epochs,
    )


def search_settings(config: SweepConfig, slots: int | None) -> dict:
    """The searcher's settings as sweep.json records them."""
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


def watch_command(db_url: str) -> str:
    """The command that opens the sweep's Optuna study in a browser while it runs
    (`pip install ".[dashboard]"`; it serves on 127.0.0.1:8080 only)."""
    return f"optuna-dashboard {db_url}"


class OptunaDb:
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
                storage.copy(self.remote, self.path)
        self.url = f"sqlite:///{self.path}"

    def upload(self) -> None:
        if self.remote is not None:
            storage.copy(self.path, self.remote)
