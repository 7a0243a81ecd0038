"""Share of a sweep's wall time spent training versus Ray and Optuna overhead.

Runs a real sweep (Ray Tune + Optuna + ASHA, the quick space by default) and compares the
time trials spent inside vae_core.train's epochs (epochs.parquet's epoch_seconds, training
and validation) with the slot-seconds the sweep had: wall time x trials that fit at once.
What is left is overhead: Ray's start, trial (actor) start-up, reporting and checkpointing,
Optuna's suggestions, and slots idle while the last trials finish.

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
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from search_spaces import load_space
from sweeps import run_sweep
from sweeps.config import LOCAL_NODE_IP, SweepConfig
from sweeps.local_ray import ray_session
from sweeps.sharing import gpu_sharing
from vae_sweep.run import add_sharing_options


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


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
        print(report(args.folder))
        if args.gpu_log:
            print(gpu_busy(args.gpu_log, FinishedSweep.read(args.folder)))
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
    with gpu_sharing(config) as (_, env), ray_session(None, args.node_ip, worker_env=env):
        t1 = time.perf_counter()
        run_sweep(config)
    wall = time.perf_counter() - t0
    folder = Path(storage) / "overhead"
    sweep = FinishedSweep.read(folder)
    print(report(folder, sweep))
    print(
        f"Ray start (and the MPS daemon's, if any) {t1 - t0:.1f} s, "
        f"data and set-up {wall - (t1 - t0) - sweep.fit:.1f} s, "
        f"tuning {sweep.fit:.1f} s, total {wall:.1f} s"
    )
    print(f"training share of the whole wall time: {sweep.training / (sweep.slots * wall):.1%}")


@dataclass(frozen=True)
class FinishedSweep:
    """What a finished sweep's folder says of its time."""

    record: dict  # sweep.json
    epochs: pd.DataFrame  # epochs.parquet
    slots: int  # trials at once
    started: float  # Unix time of sweep.json's started_at
    fit: float  # tuning seconds, sweep.json's started_at to finished_at
    training: float  # seconds inside epochs, all trials together

    @classmethod
    def read(cls, folder: Path) -> FinishedSweep | None:
        """None for a sweep that did not finish (no finished_at in sweep.json)."""
        record = json.loads((folder / "sweep.json").read_text())
        if record["finished_at"] is None:
            return None
        epochs = pd.read_parquet(folder / "epochs.parquet")
        return cls(
            record,
            epochs,
            slots=record["search"]["max_concurrent"],
            started=datetime.fromisoformat(record["started_at"]).timestamp(),
            fit=seconds_between(record["started_at"], record["finished_at"]),
            training=float(epochs["epoch_seconds"].sum()),
        )


def covered_seconds(folder: Path) -> float | None:
    """Seconds in which at least one trial was inside an epoch (from the trials' result.json:
    each epoch ran for epoch_seconds up to epoch_ended_at); None for sweeps without them.

    On one shared GPU this is the time the GPU had training work: trials that share it by time
    slicing add no throughput, so a lone trial's epochs keep it about as busy as four's."""
    spans = []
    for path in folder.glob("*/result.json"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if "epoch_ended_at" not in row:
                return None
            spans.append((row["epoch_ended_at"] - row["epoch_seconds"], row["epoch_ended_at"]))
    covered, reach = 0.0, -math.inf
    for start, end in sorted(spans):
        covered += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return covered


def trial_runs(folder: Path) -> list[list[dict]]:
    """Each trial's result.json rows, one list per run of it (a restored trial starts a new
    run), in the order the runs started; runs without trial_started_at are left out."""
    runs: dict[tuple[str, float], list[dict]] = {}
    for path in folder.glob("*/result.json"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if "trial_started_at" in row:
                runs.setdefault((path.parent.name, row["trial_started_at"]), []).append(row)
    return [runs[key] for key in sorted(runs, key=lambda key: key[1])]


def time_outside_epochs(folder: Path, sweep: FinishedSweep) -> str | None:
    """Where the time outside epochs went, from the trials' result.json (medians, seconds);
    None for sweeps whose trials did not record it."""
    runs = trial_runs(folder)
    if not runs:
        return None
    started = sweep.started
    first, later, gaps, last_on = [], [], [], {}  # last_on: a worker's last report so far
    # Each worker's start: when it began importing vae-sweep's code (Ray Tune already imported,
    # torch not yet) and had it imported, its first trial's start and that trial's first epoch.
    workers_start = []
    for rows in runs:
        worker = (rows[0]["node_id"], rows[0]["pid"])  # a process id is unique on its node
        (later if worker in last_on else first).append(rows[0]["outside_epochs_seconds"])
        if worker not in last_on and "import_started_at" in rows[0]:
            epoch = rows[0]["epoch_ended_at"] - rows[0]["epoch_seconds"]
            marks = (
                rows[0]["import_started_at"],
                rows[0]["code_imported_at"],
                rows[0]["trial_started_at"],
                epoch,
            )
            workers_start.append([mark - started for mark in marks])
        if worker in last_on:
            gaps.append(rows[0]["trial_started_at"] - last_on[worker])
        last_on[worker] = rows[-1]["epoch_ended_at"]
    steps = [(a, b) for rows in runs for a, b in zip(rows, rows[1:], strict=False)]
    between = [b["outside_epochs_seconds"] - a["outside_epochs_seconds"] for a, b in steps]
    writes = [a.get("checkpoint_seconds", 0.0) for a, _ in steps]
    reports = [b["report_seconds"] for _, b in steps]
    rows = [r for run in runs for r in run]
    first_epoch = min(r["epoch_ended_at"] - r["epoch_seconds"] for r in rows)
    last_epoch = max(r["epoch_ended_at"] for r in rows)
    finished = started + sweep.fit  # FinishedSweep.fit: started_at to finished_at
    start_lines = []
    if workers_start:
        began, imported, trial, epoch = (
            median(marks) for marks in zip(*workers_start, strict=True)
        )
        start_lines.append(
            f"  a worker's start, after the tuning's: its process began importing vae-sweep "
            f"(Ray Tune imported by then) at {began}, had it imported (torch, vae_core) at "
            f"{imported}, started its first trial at {trial}, and that trial's first epoch at "
            f"{epoch} ({len(workers_start)} workers)"
        )
    return "\n".join(
        [
            "time outside epochs (medians, seconds):",
            f"  a worker's first trial, to its first report less the epoch: {median(first)} "
            f"({len(first)} workers)",
            f"  a later trial on a reused worker, the same: {median(later)} ({len(later)})",
            f"  between two epochs of a trial: {median(between)}, of which writing the "
            f"checkpoint {median(writes)} and tune.report {median(reports)}",
            "  from a worker's last report of one trial to its next trial's start (the last "
            f"checkpoint, tune.report, Ray's hand-over): {median(gaps)} ({len(gaps)})",
            f"  from the tuning's start to the first epoch's: {first_epoch - started:.2f}; "
            f"from the last epoch's end to the tuning's end: {finished - last_epoch:.2f}",
            *start_lines,
        ]
    )


def median(values) -> str:
    values = list(values)
    return f"{statistics.median(values):.3f}" if values else "-"


def training_share(folder: Path, sweep: FinishedSweep | None = None) -> str:
    """What a finished sweep's slots spent inside epochs, of its tuning time."""
    sweep = sweep or FinishedSweep.read(folder)
    if sweep is None:
        return f"{folder}: the sweep did not finish (no finished_at in sweep.json)"
    record, covered = sweep.record, covered_seconds(folder)
    return (
        f"{record['samples']} trials, {len(sweep.epochs)} epochs, "
        f"{sweep.slots} at a time, {record['data']['sizes']['train']} training images, "
        f"{os.cpu_count()} CPUs: tuning {sweep.fit:.1f} s; training share of the tuning time "
        f"{sweep.training / (sweep.slots * sweep.fit):.1%} of slot time"
        + ("" if covered is None else f", {covered / sweep.fit:.1%} with some trial in an epoch")
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


def report(folder: Path, sweep: FinishedSweep | None = None) -> str:
    """A finished sweep's training share and, where its trials recorded them, where the time
    outside epochs went."""
    sweep = sweep or FinishedSweep.read(folder)
    if sweep is None:
        return training_share(folder)
    outside = time_outside_epochs(folder, sweep)
    return training_share(folder, sweep) + ("" if outside is None else "\n" + outside)


if __name__ == "__main__":
    main()
