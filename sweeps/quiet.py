"""Silence what Ray Tune and Optuna print on their own (sweeps.progress prints what matters)."""

from __future__ import annotations

import logging
import os
import warnings

import optuna

from sweeps.results import REFUSED_WRITES


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
    # A trial that failed because the storage refused its checkpoint is said in one line by
    # the sweep as it stops (sweeps.results.StorageWriteError), not in Ray's traceback.
    logging.getLogger("ray.tune.execution.tune_controller").addFilter(_not_a_refused_write)
    # ASHA's cut-off over a rung where every trial so far diverged (all NaN) is NaN, which
    # stops nothing, as it should; numpy warns about it.
    warnings.filterwarnings("ignore", "All-NaN slice encountered", RuntimeWarning)


def _not_a_refused_write(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    text = f"{record.getMessage()} {exc!s}"
    return not any(marker in text for marker in REFUSED_WRITES)
