"""Share of a sweep's wall time spent training versus Ray and Optuna overhead.

Runs a real sweep (Ray Tune + Optuna + ASHA, the quick space by default), or reads a finished
one, and compares the time its trials spent inside vae_core.train's epochs with the
slot-seconds the sweep had: tuning wall time x trials that fit at once. What is left is
overhead: Ray's start, trial (actor) start-up, reporting and checkpointing, Optuna's
suggestions, and slots idle while the last trials finish.

It measures from outside the trials only, from two sources:
- each trial's result.json, as Ray Tune writes it: `epoch_seconds` (the training's own time
  of an epoch, training and validation), and Ray's own fields. In a function trainable (Ray
  2.60's Trainable.train) `time_this_iter_s` runs from Tune's call for the trial's next
  result until its `tune.report` handed that result over: the trial's work up to the report
  (the first call: the trial's set-up too; then vae_core's work between epochs, the
  checkpoint's write and Ray's copy of it), not the wait between a report and Tune's next call
  (the result's way to Tune's controller, ASHA's and Optuna's turn, the call's way back), nor
  the worker's start before the first call. `time_total_s` is their sum; `timestamp` is when
  the report was made, in whole Unix seconds (so times read from it are +-0.5 s).
- wall clocks this bench holds around calls (time.perf_counter): Ray's start, the Tuner's
  fit, the whole run. With --folder, the tuning's time is sweep.json's started_at to
  finished_at instead (set-up before the Tuner's fit and the study's upload after it added).

    python bench/sweep_overhead.py                         # 16 trials of the quick space
    python bench/sweep_overhead.py --trials 16 --data mnist-5k --node-ip 127.0.0.9
    python bench/sweep_overhead.py --folder results/NAME   # a finished sweep's share

On a GPU, `--gpu-log` adds how busy the GPU itself was during the tuning, from nvidia-smi's
utilization samples (the share of time a kernel was running), logged while the sweep ran:

    nvidia-smi --query-gpu=timestamp,utilization.gpu --format=csv,noheader,nounits \
        -lms 500 > gpu.csv &
    vae-sweep run; kill %1
    python bench/sweep_overhead.py --folder results/NAME --gpu-log gpu.csv
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
from ray import tune

from search_spaces import load_space
from sweeps import run_sweep
from sweeps.config import LOCAL_NODE_IP, SweepConfig
from sweeps.local_ray import ray_session
from sweeps.sharing import gpu_sharing
from vae_sweep.run import add_sharing_options

# Ray's `timestamp` is the report's time truncated to the second: a report made at `timestamp`
# was made at `timestamp + HALF_SECOND`, give or take half a second.
HALF_SECOND = 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--space", default="quick")
    parser.add_argument("--epochs", type=int, default=None, help="default: the space's")
    parser.add_argument("--data", default="mnist-5k")
    parser.add_argument("--node-ip", default=LOCAL_NODE_IP)
    add_sharing_options(parser)
    parser.add_argument("--folder", type=Path, help="report on this finished sweep; run none")
    parser.add_argument(
        "--gpu-log", type=Path, help="with --folder: nvidia-smi's samples during it (above)"
    )
    args = parser.parse_args()
    if args.gpu_log and not args.folder:
        parser.error("--gpu-log needs --folder: the sweep whose tuning its samples cover")
    if args.gpu_log and not args.gpu_log.is_file():
        parser.error(f"--gpu-log {args.gpu_log}: no such file")
    if args.folder:
        sweep = FinishedSweep.read(args.folder)
        print(report(args.folder, sweep))
        if args.gpu_log:
            print(gpu_busy(args.gpu_log, sweep))
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the sweep's progress

    storage = tempfile.mkdtemp(prefix="vae-sweep-bench-")
    config = SweepConfig(
        name="overhead",
        space=load_space(args.space),
        samples=args.trials,
        epochs=args.epochs,
        data=args.data,
        storage=storage,
        node_ip=args.node_ip,
        sharing=args.sharing,
    )
    t0 = time.perf_counter()
    # As `vae-sweep run` starts its Ray: under an MPS daemon where the trials share a GPU.
    with (
        gpu_sharing(config) as (_, env),
        ray_session(None, args.node_ip, worker_env=env),
        timed_fit() as fit,
    ):
        t1 = time.perf_counter()
        run_sweep(config)
    wall = time.perf_counter() - t0
    folder = Path(storage) / "overhead"
    sweep = FinishedSweep.read(folder, fit)
    print(report(folder, sweep))
    if sweep is None:
        return
    print(
        f"Ray start (and the MPS daemon's, if any) {t1 - t0:.1f} s, "
        f"data and set-up before the Tuner's fit {fit.started_perf - t1:.1f} s, "
        f"Tuner.fit {fit.seconds:.1f} s (sweep.json's started_at to finished_at "
        f"{sweep.recorded_seconds:.1f} s), after it (the tables, Ray's shutdown) "
        f"{t0 + wall - fit.started_perf - fit.seconds:.1f} s, total {wall:.1f} s"
    )
    print(f"training share of the whole wall time: {sweep.training / (sweep.slots * wall):.1%}")


@dataclass
class FitTime:
    """When the Tuner's fit began (Unix time, and on this process's perf_counter) and how long
    it took."""

    started: float = 0.0
    started_perf: float = 0.0
    seconds: float | None = None


@contextmanager
def timed_fit() -> Iterator[FitTime]:
    """Every tune.Tuner.fit in the block, timed (the last one's time is kept): the sweep's
    tuning, as this process sees it, without reading anything the sweep records."""
    fit, spent = tune.Tuner.fit, FitTime()

    def timed(self, *args, **kwargs):
        spent.started, spent.started_perf = time.time(), time.perf_counter()
        try:
            return fit(self, *args, **kwargs)
        finally:
            spent.seconds = time.perf_counter() - spent.started_perf

    tune.Tuner.fit = timed
    try:
        yield spent
    finally:
        tune.Tuner.fit = fit


@dataclass(frozen=True)
class Run:
    """One run of a trial on a worker (a restored trial starts another): its result.json rows."""

    trial: str  # the trial's folder
    rows: list[dict]

    @property
    def worker(self) -> tuple:
        # A process id is unique on its node; node_id is the trial's own report of its node.
        first = self.rows[0]
        return first.get("node_id") or first.get("node_ip"), first["pid"]

    @property
    def called(self) -> float:
        """When Tune first called it for a result (Unix seconds, +-0.5 s)."""
        first = self.rows[0]
        return first["timestamp"] + HALF_SECOND - first["time_this_iter_s"]

    @property
    def in_calls(self) -> float:
        """Seconds inside Ray's calls for its results: its last row's time_since_restore
        (time_total_s, the same for a trial's first run, adds the runs before a restore)."""
        return float(sum(r["time_this_iter_s"] for r in self.rows))

    @property
    def in_epochs(self) -> float:
        return float(sum(r["epoch_seconds"] for r in self.rows))

    @property
    def first_outside(self) -> float:
        """Its first call's seconds outside the epoch: the trial's set-up in its worker, the
        first checkpoint and report."""
        return self.rows[0]["time_this_iter_s"] - self.rows[0]["epoch_seconds"]

    @property
    def between(self) -> list[float]:
        """Each later call's seconds outside its epoch: vae_core's work between two epochs,
        the checkpoint's write and Ray's copy of it."""
        return [r["time_this_iter_s"] - r["epoch_seconds"] for r in self.rows[1:]]


def trial_runs(folder: Path) -> list[Run]:
    """Every trial's runs, from its result.json, in the order Tune first called them."""
    runs = []
    for path in sorted(folder.glob("*/result.json")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if "epoch_seconds" in r]  # an epoch's report each
        start = 0
        for i, row in enumerate(rows):  # a restored trial's count starts again at 1
            if i > start and row.get("iterations_since_restore") == 1:
                runs.append(Run(path.parent.name, rows[start:i]))
                start = i
        if rows:
            runs.append(Run(path.parent.name, rows[start:]))
    return sorted(runs, key=lambda run: (run.called, run.rows[0]["trial_id"]))


@dataclass(frozen=True)
class FinishedSweep:
    """What a finished sweep's folder says of its time."""

    record: dict  # sweep.json
    runs: list[Run]  # from the trials' result.json
    slots: int  # trials at once
    started: float  # Unix time the tuning began
    fit: float  # tuning seconds: Tuner.fit's where this bench timed it, else sweep.json's
    timed: bool  # whether `fit` is Tuner.fit's, as this bench timed it
    recorded_seconds: float  # sweep.json's started_at to finished_at

    @classmethod
    def read(cls, folder: Path, fit: FitTime | None = None) -> FinishedSweep | None:
        """None for a sweep that did not finish (no finished_at in sweep.json)."""
        record = json.loads((folder / "sweep.json").read_text())
        if record["finished_at"] is None:
            return None
        started = datetime.fromisoformat(record["started_at"]).timestamp()
        recorded = datetime.fromisoformat(record["finished_at"]).timestamp() - started
        timed = fit is not None and fit.seconds is not None
        return cls(
            record,
            trial_runs(folder),
            slots=record["search"]["max_concurrent"],
            started=fit.started if timed else started,
            fit=fit.seconds if timed else recorded,
            timed=timed,
            recorded_seconds=recorded,
        )

    @property
    def training(self) -> float:
        """Seconds inside epochs, all trials together."""
        return sum(run.in_epochs for run in self.runs)

    @property
    def in_calls(self) -> float:
        """Seconds inside Ray's calls for results, all trials together."""
        return sum(run.in_calls for run in self.runs)

    @property
    def epochs(self) -> int:
        return sum(len(run.rows) for run in self.runs)


def trial_table(sweep: FinishedSweep) -> pd.DataFrame:
    """A row per run of a trial, in the order Tune first called them: its worker, the how-many-th
    run on that worker it was, and its seconds in Ray's calls, in epochs and outside them."""
    workers: dict[tuple, int] = {}  # worker -> its number, in the order they were first called
    runs_on: Counter[tuple] = Counter()  # worker -> runs on it so far
    rows = []
    for run in sweep.runs:
        worker = workers.setdefault(run.worker, len(workers) + 1)
        runs_on[run.worker] += 1
        between = run.between
        rows.append(
            {
                "trial": run.rows[0]["trial_id"],
                "worker": worker,
                "nth": runs_on[run.worker],
                "epochs": len(run.rows),
                "called_at_s": run.called - sweep.started,
                "in_calls_s": run.in_calls,
                "in_epochs_s": run.in_epochs,
                "outside_s": run.in_calls - run.in_epochs,
                "first_call_outside_s": run.first_outside,
                "between_epochs_s": statistics.median(between) if between else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def median(values) -> str:
    values = list(values)
    return f"{statistics.median(values):.3f}" if values else "-"


def training_share(sweep: FinishedSweep) -> str:
    """What a finished sweep's slots spent inside epochs and inside Ray's calls, of its tuning
    time."""
    record, slot_seconds = sweep.record, sweep.slots * sweep.fit
    tuning = "Tuner.fit" if sweep.timed else "sweep.json's started_at to finished_at"
    return (
        f"{record['samples']} trials, {sweep.epochs} epochs, {sweep.slots} at a time, "
        f"{record['data']['sizes']['train']} training images, {os.cpu_count()} CPUs: tuning "
        f"{sweep.fit:.1f} s ({tuning}); training share of the tuning time "
        f"{sweep.training / slot_seconds:.1%} of slot time; inside Ray's calls for results "
        f"{sweep.in_calls / slot_seconds:.1%}"
    )


def time_outside_epochs(sweep: FinishedSweep) -> str:
    """Where the time outside epochs went (the table, then medians in seconds)."""
    table = trial_table(sweep)
    first = table[table["nth"] == 1]
    later = table[table["nth"] > 1]
    between = [s for run in sweep.runs for s in run.between]
    reported = [
        r["timestamp"] + HALF_SECOND - sweep.started for run in sweep.runs for r in run.rows
    ]
    # The first report's epoch began its epoch_seconds and the checkpoint's write before the
    # report; the write is left in (tens of milliseconds, against the half second of Ray's
    # timestamp).
    first_epoch = min(
        r["timestamp"] + HALF_SECOND - r["epoch_seconds"] - sweep.started
        for run in sweep.runs
        for r in run.rows
    )
    slot_seconds = sweep.slots * sweep.fit
    return "\n".join(
        [
            "per run of a trial (seconds; called_at: Tune's first call for its results, from "
            "the tuning's start, +-0.5 s):",
            table.to_string(index=False, float_format=lambda x: f"{x:.3f}"),
            "time outside epochs (medians, seconds):",
            f"  a worker's first trial, its first call less the epoch (set-up, first "
            f"checkpoint and report): {median(first['first_call_outside_s'])} "
            f"({len(first)} workers)",
            f"  a later trial on a reused worker, the same: "
            f"{median(later['first_call_outside_s'])} ({len(later)})",
            f"  a trial in all, in Ray's calls less its epochs: {median(table['outside_s'])} "
            f"({len(table)})",
            f"  between two epochs of a trial, in Ray's call less the epoch (the checkpoint's "
            f"write and Ray's copy of it, tune.report): {median(between)} ({len(between)})",
            f"  slot time outside Ray's calls (workers starting, each report's way to Tune's "
            f"controller and back, ASHA and Optuna, idle slots): "
            f"{slot_seconds - sweep.in_calls:.1f} s of {slot_seconds:.1f} "
            f"({1 - sweep.in_calls / slot_seconds:.1%})",
            f"  from the tuning's start to the first epoch's: {first_epoch:.1f}; to the first "
            f"call for a result: {min(run.called for run in sweep.runs) - sweep.started:.1f}; "
            f"from the last report to the tuning's end: {sweep.fit - max(reported):.1f} "
            f"(+-0.5: Ray's timestamps are whole seconds)",
        ]
    )


def gpu_busy(log: Path, sweep: FinishedSweep | None) -> str:
    """The mean of nvidia-smi's utilization.gpu samples within the tuning: the share of its
    time in which the GPU ran a kernel (for each sample, over nvidia-smi's last sample period,
    1/6 s to 1 s by the card). The log's times are this machine's local time, as is
    datetime.timestamp() of a naive time."""
    if sweep is None:
        return "nvidia-smi: the sweep did not finish"
    started = sweep.started
    samples = []
    for line in log.read_text().splitlines():
        stamp, _, utilization = line.rpartition(",")
        try:
            at = datetime.strptime(stamp.strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp()
            busy = float(utilization)
        except ValueError:  # a line that is not a sample (nvidia-smi's own messages)
            continue
        if started <= at <= started + sweep.fit:
            samples.append(busy)
    if not samples:
        return f"nvidia-smi: no samples of {log} fall within the tuning"
    return (
        f"nvidia-smi: the GPU ran a kernel {statistics.mean(samples):.1f}% of the tuning time "
        f"(mean of {len(samples)} utilization samples)"
    )


def report(folder: Path, sweep: FinishedSweep | None) -> str:
    """A finished sweep's training share and where the time outside epochs went."""
    if sweep is None:
        return f"{folder}: the sweep did not finish (no finished_at in sweep.json)"
    if not sweep.runs:
        return f"{folder}: no trial reported a result (no result.json rows)"
    return training_share(sweep) + "\n" + time_outside_epochs(sweep)


if __name__ == "__main__":
    main()
