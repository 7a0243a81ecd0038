"""Hyperparameter sweeps of the VAE: Ray Tune runs the trials, Optuna's TPE picks them, ASHA
stops the poor ones early, and the results folder (results_folder) records them.

    from sweeps import SweepConfig, run_sweep
    outcome = run_sweep(SweepConfig(name="demo"))

Read driver.py first: run_sweep as a list of steps. Then tuner.py (the Tuner), trial.py (one
trial), worker_data.py (the data a worker holds), optuna_study.py and searcher.py (Optuna),
results.py (the tables), progress.py (the log), resources.py (preflight), local_ray.py (where
Ray runs), mps.py (`--mps`: the local Ray's NVIDIA MPS daemon), trainer.py (`--streams`: one
process per GPU trains its trials), sharing.py (which of the two a sweep gets), bytecode.py
(what its workers compile), record.py (sweep.json).
"""

import time

# When this process began importing vae-sweep's code. In a trial's worker that is once Ray has
# unpickled the trainable's Ray Tune class and before torch: with sweeps.trial's
# CODE_IMPORTED_AT, bench/sweep_overhead.py splits a worker's start between the two.
IMPORT_STARTED_AT = time.time()

from sweeps.config import SweepConfig  # noqa: E402 (after the time it stamps)

__all__ = ["SweepConfig", "SweepOutcome", "run_sweep"]


def __getattr__(name: str):
    # Imported on first use: the driver imports Ray, which `vae-sweep --help` need not wait
    # for, and which must not be imported before local_ray.single_machine_mode() runs.
    if name in ("run_sweep", "SweepOutcome"):
        from sweeps import driver

        return getattr(driver, name)
    raise AttributeError(f"module 'sweeps' has no attribute {name!r}")
