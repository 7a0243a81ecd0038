"""Where a sweep's Optuna study lives: the driver's cost per trial as the study grows.

The sweep keeps its study in memory (sweeps.searcher.StudySearch): it rides in Ray's searcher
checkpoint, pickled at every experiment snapshot, and each told trial is copied into optuna.db
(StudyExport). The baseline is the study kept in optuna.db itself (Optuna's RDBStorage on
SQLite), where every ask, report and tell goes through the database. Both drive the same TPE
sampler (multivariate, constant liar) over the default space's three parameters; each trial
reports a few epochs, as ASHA's rungs leave them, and ends COMPLETE or PRUNED.

    python bench/study_storage.py                 # N = 1,000 trials, medians of the last 100
    python bench/study_storage.py --trials 250 2000

Prints, for each N, the median milliseconds per trial (ask, reports, tell, and for the
product the copy into optuna.db), the pickled study's size and time (once per snapshot), and
the ratio baseline / product.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from search_spaces import load_space
from sweeps.optuna_study import optuna_space, sampler
from sweeps.searcher import StudySearch

LAST = 100  # trials whose times are the median: the study's size is N by then


def run_product(n: int, folder: Path) -> tuple[list[float], StudySearch]:
    searcher = StudySearch(
        optuna_space(load_space("default")),
        metric="val_loss",
        mode="min",
        sampler=sampler(0, n),
        max_epochs=20,
        study_name="bench",
        results_dir=str(folder),
    )
    times, rnd = [], random.Random(0)
    for i in range(n):
        t0 = time.perf_counter()
        trial_id = f"t{i}"
        searcher.suggest(trial_id)
        losses = [100 + rnd.random() for _ in range(rnd.choice([2, 6, 20]))]
        for epoch, loss in enumerate(losses[:-1], start=1):
            searcher.on_trial_result(trial_id, {"val_loss": loss, "training_iteration": epoch})
        result = {
            "val_loss": losses[-1],
            "training_iteration": len(losses),
            "epoch": len(losses),
            "best_val_loss": min(losses),
        }
        searcher.on_trial_complete(trial_id, result)
        times.append(time.perf_counter() - t0)
    return times, searcher


def run_baseline(n: int, folder: Path) -> list[float]:
    study = optuna.create_study(
        storage=f"sqlite:///{folder / 'baseline.db'}", sampler=sampler(0, n), study_name="b"
    )
    space = optuna_space(load_space("default"))
    times, rnd = [], random.Random(0)
    for _ in range(n):
        t0 = time.perf_counter()
        trial = study.ask(space)
        losses = [100 + rnd.random() for _ in range(rnd.choice([2, 6, 20]))]
        for epoch, loss in enumerate(losses, start=1):
            trial.report(loss, epoch)
        if len(losses) == 20:
            study.tell(trial, min(losses))
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, nargs="+", default=[1000])
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(
        f"{'N':>6} {'product ms/trial':>17} {'baseline ms/trial':>18} {'ratio':>6} "
        f"{'snapshot ms':>12} {'snapshot MB':>12}"
    )
    for n in args.trials:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            product, searcher = run_product(n, folder)
            t0 = time.perf_counter()
            searcher.save(str(folder / "searcher.pkl"))
            snapshot_ms = (time.perf_counter() - t0) * 1e3
            size = (folder / "searcher.pkl").stat().st_size / 1e6
            baseline = run_baseline(n, folder)
        a, b = statistics.median(product[-LAST:]) * 1e3, statistics.median(baseline[-LAST:]) * 1e3
        print(f"{n:>6} {a:>17.1f} {b:>18.1f} {b / a:>5.2f}x {snapshot_ms:>12.1f} {size:>12.2f}")


if __name__ == "__main__":
    main()
