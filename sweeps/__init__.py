"""Hyperparameter sweeps of the VAE: Ray Tune runs the trials, Optuna's TPE picks them, ASHA
stops the poor ones early, and the results folder (results_folder) records them.

    from sweeps import SweepConfig, run_sweep
    outcome = run_sweep(SweepConfig(name="demo"))

Read driver.py first: run_sweep as a list of steps. Then tuner.py (the Tuner), trial.py (one
trial), worker_data.py (the data a worker holds), optuna_study.py and searcher.py (Optuna),
results.py (the tables), progress.py (the log), resources.py (preflight), local_ray.py (where
Ray runs), sharing.py (how trials share a GPU) with mps.py (its NVIDIA MPS daemon), bytecode.py
(what its workers compile), record.py (sweep.json).
"""

from sweeps.config import SweepConfig

__all__ = ["SweepConfig", "SweepOutcome", "run_sweep"]


def __getattr__(name: str):
    # Imported on first use: the driver imports Ray, which `vae-sweep --help` need not wait
    # for, and which must not be imported before local_ray.single_machine_mode() runs.
    if name in ("run_sweep", "SweepOutcome"):
        from sweeps import driver

        return getattr(driver, name)
    raise AttributeError(f"module 'sweeps' has no attribute {name!r}")
