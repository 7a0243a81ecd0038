"""Hyperparameter importance with Optuna's fANOVA evaluator.

From the sweep's own study (optuna.db) when it can answer for the metric; otherwise from a
study rebuilt from trials.parquet, so a results folder without the database still gets one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import NamedTuple

import optuna
import pandas as pd
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.importance import FanovaImportanceEvaluator, get_param_importances
from sqlalchemy.exc import SQLAlchemyError

from analysis.scales import log_scaled
from results_folder import rank_trials, storage
from results_folder.layout import OPTUNA_DB
from results_folder.reader import SweepResults
from vae_core.errors import ResultsError

log = logging.getLogger(__name__)
SEED = 0  # fANOVA fits a random forest: a fixed seed gives the same bars every time
STUDY_ERRORS = (
    optuna.exceptions.OptunaError,
    SQLAlchemyError,
    ValueError,
    RuntimeError,
    KeyError,
    ResultsError,
)


class Importances(NamedTuple):
    values: dict[str, float]  # hyperparameter -> share of the variance, summing to 1
    source: str  # a phrase naming where they come from
    trials: int  # how many trials they rest on


def param_importances(
    results: SweepResults,
    scores: pd.Series,
    *,
    metric: str,
) -> Importances | None:
    """The hyperparameters' importances for `metric`, or None.

    None when fewer than two finished trials with different values exist: there is nothing
    to attribute.
    """
    database = results.path(OPTUNA_DB)
    if metric == results.sweep.get("metric", "val_loss") and storage.exists(database):
        try:
            return _from_database(results)
        except STUDY_ERRORS as err:
            log.warning(
                "importance: cannot use %s (%s); rebuilding the study from trials.parquet",
                database,
                err,
            )
    return _from_table(results, scores, metric=metric)


def _from_database(results: SweepResults) -> Importances:
    with storage.local_copy(results.path(OPTUNA_DB)) as db, _quiet_optuna():
        rdb = optuna.storages.RDBStorage(f"sqlite:///{db}")
        try:
            names = [s.study_name for s in rdb.get_all_studies()]
            wanted = results.sweep.get("study_name") or results.name
            name = wanted if wanted in names else (names[0] if len(names) == 1 else None)
            if name is None:
                raise ValueError(f"no study named {wanted!r} among {names}")
            study = optuna.load_study(study_name=name, storage=rdb)
            complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            importances = _evaluate(study)
        finally:
            rdb.engine.dispose()  # close sqlite before the temporary copy is deleted
    return Importances(importances, "fANOVA on the complete trials of optuna.db", len(complete))


def _from_table(
    results: SweepResults,
    scores: pd.Series,
    *,
    metric: str,
) -> Importances | None:
    # The trials the best-trial rule ranks, in the table's order (the order fANOVA sees).
    ok = results.trials.index.isin(rank_trials(results.trials, scores).index)
    rows, values = results.trials[ok], scores[ok]
    params = [p for p in results.params if rows[p].nunique() > 1]
    if len(rows) < 2 or not params:
        return None
    dists = {p: _distribution(results.trials[p]) for p in params}
    with _quiet_optuna():
        study = optuna.create_study(direction="minimize")
        for (_, row), value in zip(rows.iterrows(), values, strict=True):
            study.add_trial(
                optuna.trial.create_trial(
                    params={p: _native(row[p], dists[p]) for p in params},
                    distributions=dists,
                    value=float(value),
                )
            )
        try:
            importances = _evaluate(study)
        except (ValueError, RuntimeError) as err:  # e.g. every trial scored the same
            log.warning("importance: fANOVA failed on %d trials (%s)", len(rows), err)
            return None
    return Importances(
        importances, f"fANOVA on the best {metric} of the finished trials", len(rows)
    )


def _evaluate(study: optuna.Study) -> dict[str, float]:
    return dict(get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=SEED)))


def _distribution(values: pd.Series):
    """The range the trials span; only scales fANOVA's inputs, so observed bounds suffice."""
    low, high, log_ = values.min(), values.max(), log_scaled(values)
    if pd.api.types.is_integer_dtype(values):
        return IntDistribution(int(low), int(high), log=log_)
    return FloatDistribution(float(low), float(high), log=log_)


def _native(value, dist):
    return int(value) if isinstance(dist, IntDistribution) else float(value)


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs every study it creates or loads at INFO; the analysis has its own log."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)
