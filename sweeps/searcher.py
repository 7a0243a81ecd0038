"""Optuna's view of the sweep: which trials count as finished, stopped early, or failed.

StudySearch is a Ray Tune Searcher (its public API) that drives an Optuna study by ask and
tell. The study is in memory and rides in Ray's searcher checkpoint, which Tune writes to the
storage path with every experiment snapshot: a resume needs nothing from the driver's disk.
Finished trials are copied to optuna.db beside the tables (StudyExport), for optuna-dashboard
and the analysis.

Whole budget: COMPLETE with its best validation loss; stopped by ASHA: PRUNED (TPE ranks it
below complete ones, deeper first); diverged: COMPLETE with COIN_FLIP_NATS, a finite worst
value; crashed: FAIL. Why each: docs/design.md, "Optuna and ASHA: what the searcher is told".
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
import time
import warnings

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import Searcher

from results_folder import storage
from results_folder.layout import OPTUNA_DB
from sweeps.results import finished_in_tables, trial_status
from vae_core.train import COIN_FLIP_NATS

log = logging.getLogger(__name__)

STAGING = "~/.cache/vae-sweep/optuna"  # where a URI results folder's optuna.db lives locally
UPLOAD_EVERY_S = 30.0  # a URI results folder's optuna.db is refreshed at most this often


def optuna_outcome(
    result: dict | None, *, error: bool, max_epochs: int
) -> tuple[TrialState, float | None, str]:
    """(Optuna state, value to tell, trial status) for how a trial ended."""
    if error:
        return TrialState.FAIL, None, "error"
    if not result:  # removed before it reported anything, e.g. at the end of a sweep
        return TrialState.PRUNED, None, "early_stopped"
    status = trial_status(
        errored=False,
        diverged=bool(result.get("diverged")),
        epochs_run=int(result.get("epoch", 0)),
        max_epochs=max_epochs,
    )
    if status == "diverged":
        return TrialState.COMPLETE, COIN_FLIP_NATS, status
    if status == "early_stopped":
        return TrialState.PRUNED, None, status
    best = result.get("best_val_loss", result.get("val_loss"))
    if best is None or not math.isfinite(best):
        return TrialState.COMPLETE, COIN_FLIP_NATS, status
    return TrialState.COMPLETE, float(best), status


class StudySearch(Searcher):
    """Ray Tune's searcher over an in-memory Optuna study (sampler, direction and space given).

    Args:
        space: the searched parameters as Optuna distributions.
        sampler: Optuna's sampler (TPE; sweeps.optuna_study.sampler).
        first: configurations to evaluate first (the post's), in order.
        max_epochs: the epoch budget, which tells a completed trial from one ASHA stopped.
        results_dir: where optuna.db goes (StudyExport): each trial as it is told, and every
            told trial after a restore, whose optuna.db may have been lost with its machine.
    """

    def __init__(
        self,
        space: dict[str, BaseDistribution],
        *,
        metric: str,
        mode: str,
        sampler: optuna.samplers.BaseSampler,
        first: list[dict] = (),
        max_epochs: int,
        study_name: str,
        results_dir: str,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.space, self.max_epochs, self.results_dir = space, max_epochs, results_dir
        self._export: StudyExport | None = None  # opened on first use, never checkpointed
        self.study = optuna.create_study(
            study_name=study_name,
            sampler=sampler,
            direction="minimize" if mode == "min" else "maximize",
        )
        for point in first:
            self.study.enqueue_trial(point)
        self.asked: dict[str, optuna.Trial] = {}  # Ray trial id -> its Optuna trial, until told
        self.max_concurrent = math.inf

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        # Limited here, on the trials asked and not yet told, rather than by Ray's
        # ConcurrencyLimiter, which drops the completions of trials it did not hand out (an
        # errored trial run again, a trial running when a resumed snapshot was taken).
        self.max_concurrent = max_concurrent
        return True

    def suggest(self, trial_id: str) -> dict | None:
        if len(self.asked) >= self.max_concurrent:
            return None
        trial = self.study.ask(self.space)
        trial.set_user_attr("ray_trial_id", trial_id)
        self.asked[trial_id] = trial
        return dict(trial.params)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        trial = self.asked.get(trial_id) or self._reopen(trial_id)
        if trial is not None:
            self._report(trial, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        self._reopen(trial_id)
        trial = self.asked.pop(trial_id, None)
        if trial is None:
            return  # told already: a resumed sweep may repeat a completion
        state, value, status = optuna_outcome(result, error=error, max_epochs=self.max_epochs)
        # Ray hands the result that ended a trial (ASHA's stop, or the last epoch) to
        # on_trial_complete only, never to on_trial_result: record it as a step too.
        self._report(trial, result)
        trial.set_user_attr("status", status)
        self.export().add([self.study.tell(trial, value, state=state)])

    def _reopen(self, trial_id: str) -> optuna.Trial | None:
        """A trial told FAIL that runs again (--resume-errored, --restart-errored) is asked
        anew with the same parameters, so the study learns how it ends; the FAIL stays."""
        if trial_id in self.asked:
            return self.asked[trial_id]
        mine = [
            t
            for t in self.study.get_trials(deepcopy=False)
            if t.user_attrs.get("ray_trial_id") == trial_id
        ]
        if not mine or mine[-1].state != TrialState.FAIL:
            return None  # never asked here, or told how it ended
        self.study.enqueue_trial(mine[-1].params, user_attrs={"ray_trial_id": trial_id})
        self.asked[trial_id] = self.study.ask(self.space)
        return self.asked[trial_id]

    def _report(self, trial: optuna.Trial, result: dict | None) -> None:
        value = (result or {}).get(self.metric)
        if value is None or not math.isfinite(value):
            return  # Optuna refuses NaN as an intermediate value; diverged epochs stay out
        with warnings.catch_warnings():  # a resumed trial may repeat a step
            warnings.simplefilter("ignore")
            trial.report(value, int(result["training_iteration"]))

    def told(self) -> list[FrozenTrial]:
        """The trials told so far (not the ones still running), in the order asked."""
        finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        return self.study.get_trials(deepcopy=False, states=finished)

    def export(self) -> StudyExport:
        if self._export is None:
            self._export = StudyExport(self.results_dir, self.study.study_name)
        return self._export

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"study": self.study, "asked": self.asked}, f)
        self.export().upload(every_s=UPLOAD_EVERY_S)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        # Saved with Ray's trials in one snapshot: what the study holds as running is what Ray
        # resumes. optuna.db may have been lost since, or missed trials told after it.
        self.study, self.asked = state["study"], state["asked"]
        for trial_id, (row, epochs) in finished_in_tables(self.results_dir).items():
            if trial_id in self.asked:  # finished after the snapshot: as the tables say
                self._tell_from_tables(self.asked.pop(trial_id), row, epochs)
        self.export().add(self.told())

    def _tell_from_tables(self, trial: optuna.Trial, row: dict, epochs: list[dict]) -> None:
        for epoch in epochs:
            self._report(trial, {**epoch, "training_iteration": epoch["epoch"]})
        result = {
            "epoch": row["epochs_run"],
            "best_val_loss": row["best_val_loss"],
            "diverged": row["status"] == "diverged",
        }
        error = row["status"] == "error"
        state, value, status = optuna_outcome(result, error=error, max_epochs=self.max_epochs)
        trial.set_user_attr("status", status)
        self.study.tell(trial, value, state=state)

    def __getstate__(self) -> dict:
        # Tune pickles the searcher with the Tuner; the export holds a database connection.
        return {**self.__dict__, "_export": None}


class StudyExport:
    """optuna.db: the study's told trials in SQLite, for optuna-dashboard and the analysis.

    In the results folder; for an s3:// or gs:// one (SQLite needs a local file), staged under
    ~/.cache/vae-sweep/optuna and uploaded beside the tables. Trials are added as they are
    told, each once (by Ray trial id, start time and state), so a copy lost with a machine is
    rebuilt from the study in Ray's searcher checkpoint, and one that survived is completed.
    """

    def __init__(self, results_dir: str, study_name: str) -> None:
        self.remote = storage.join(results_dir, OPTUNA_DB) if storage.is_uri(results_dir) else None
        if self.remote is None:
            self.path = os.path.join(results_dir, OPTUNA_DB)
        else:  # a fixed place per results URI, made anew on a machine that lacks it
            digest = hashlib.sha256(results_dir.encode()).hexdigest()[:16]
            self.path = os.path.join(os.path.expanduser(STAGING), digest, OPTUNA_DB)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        if self.remote and not os.path.exists(self.path) and storage.exists(self.remote):
            storage.copy(self.remote, self.path)
        self.url = f"sqlite:///{self.path}"
        self.db = optuna.create_study(
            storage=optuna.storages.RDBStorage(self.url),
            study_name=study_name,
            load_if_exists=True,
        )
        self.seen = {_key(t) for t in self.db.get_trials(deepcopy=False)}
        self.uploaded_at = -math.inf

    def add(self, trials: list[FrozenTrial]) -> None:
        new = [t for t in trials if _key(t) not in self.seen]
        if new:
            self.db.add_trials(new)
            self.seen.update(_key(t) for t in new)

    def upload(self, every_s: float = 0.0) -> None:
        """Copy a staged optuna.db beside the tables (at most every `every_s` seconds)."""
        if self.remote is not None and time.monotonic() - self.uploaded_at >= every_s:
            storage.copy(self.path, self.remote)
            self.uploaded_at = time.monotonic()


def _key(trial: FrozenTrial) -> tuple:
    # With the state: a trial whose FAIL was copied before the driver died can be told again
    # from an older snapshot, as the trial that Ray ran again ends.
    return trial.user_attrs.get("ray_trial_id"), trial.datetime_start, trial.state
