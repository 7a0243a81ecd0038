"""Optuna's view of the sweep: which trials count as finished, stopped early, or failed.

Ray's OptunaSearch tells Optuna every trial's last reported value as COMPLETE: under ASHA a
lower-budget loss that TPE would rank with full-budget ones, and a diverged trial's NaN makes
`study.tell` raise. Here instead: the whole budget is COMPLETE with its best validation loss;
stopped by ASHA is PRUNED (TPE ranks it below complete ones, deeper first); diverged is
COMPLETE with COIN_FLIP_NATS, a finite worst value; crashed is FAIL. Why each: docs/design.md,
"Optuna and ASHA: what the searcher is told".
"""

from __future__ import annotations

import logging
import math
import warnings

from optuna.trial import TrialState
from ray.tune.result import TRAINING_ITERATION
from ray.tune.search.optuna import OptunaSearch

from sweeps.results import trial_status
from vae_core.train import COIN_FLIP_NATS

log = logging.getLogger(__name__)


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


class SweepOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna what ASHA's stops and divergence mean (see above)."""

    # OptunaSearch's own state that on_trial_complete and restore use: Ray 2.60 has no public
    # accessor for which Optuna trial a Ray trial is. pyproject.toml pins Ray to the 2.60
    # series for this; the check below turns a changed Ray into one clear error at start.
    INTERNALS = ("_ot_trials", "_completed_trials", "_ot_study")

    def __init__(self, *args, max_epochs: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs
        missing = [name for name in self.INTERNALS if not hasattr(self, name)]
        if missing:
            import ray

            raise RuntimeError(
                f"Ray {ray.__version__}'s OptunaSearch lacks {', '.join(missing)}; "
                f"vae-sweep needs the Ray series pyproject.toml names"
            )

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or trial_id in self._completed_trials:
            return  # resumed sweeps may repeat a completion Optuna already has
        state, value, status = optuna_outcome(result, error=error, max_epochs=self.max_epochs)
        try:
            if result and self.metric in result:
                # Ray hands the result that ended a trial (ASHA's stop, or the last epoch) to
                # on_trial_complete only, never to on_trial_result: record it as a step too.
                with warnings.catch_warnings():  # a resumed trial may repeat a step
                    warnings.simplefilter("ignore")
                    ot_trial.report(result[self.metric], result[TRAINING_ITERATION])
            ot_trial.set_user_attr("ray_trial_id", trial_id)
            ot_trial.set_user_attr("status", status)
            self._ot_study.tell(ot_trial, value, state=state)
        except (ValueError, RuntimeError) as err:  # e.g. already finished in the database
            log.warning("Optuna did not take trial %s (%s): %s", trial_id, status, err)
        self._completed_trials.add(trial_id)

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        # A driver killed between asking Optuna for a trial and Ray's next snapshot leaves a
        # RUNNING trial in optuna.db that the restored sweep never runs: close it as FAIL.
        known = {t.number for t in self._ot_trials.values()}
        for orphan in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if orphan.number not in known:
                self._ot_study.tell(orphan.number, state=TrialState.FAIL)
