"""The sweep's Optuna side: the space as Optuna distributions, the TPE sampler, and the searcher
Ray Tune asks for trials (sweeps.searcher)."""

from __future__ import annotations

import logging

import optuna

from results_folder.schema import METRIC, MODE
from search_spaces import SearchSpace
from search_spaces.space import SEARCHABLE
from sweeps.config import SweepConfig
from sweeps.searcher import StudySearch
from vae_core.config import TrainConfig

log = logging.getLogger(__name__)

# The post's configuration (TrainConfig's defaults): evaluated first, so a sweep never reports
# worse than the baseline.
POST_CONFIG = {name: getattr(TrainConfig(), name) for name in SEARCHABLE}


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


def searcher(config: SweepConfig, results_dir: str) -> StudySearch:
    """Ray Tune's searcher for a resolved `config`; its study's told trials go to optuna.db in
    `results_dir`."""
    return StudySearch(
        optuna_space(config.space),
        metric=METRIC,
        mode=MODE,
        sampler=sampler(config.seed, config.samples),
        first=post_point(config.space),
        max_epochs=config.epochs,
        study_name=config.name,
        results_dir=results_dir,
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
    """The command that opens the sweep's Optuna study in a browser while it runs, its
    trials as they finish (`pip install ".[dashboard]"`; it serves on 127.0.0.1:8080 only)."""
    return f"optuna-dashboard {db_url}"
