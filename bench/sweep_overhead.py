"""Share of a sweep's wall time spent training versus Ray and Optuna overhead.

Runs a real sweep (Ray Tune + Optuna + ASHA, the quick space by default) and compares the
time trials spent inside vae_core.train's epochs (epochs.parquet's epoch_seconds, training
and validation) with the slot-seconds the sweep had: wall time x trials that fit at once.
What is left is overhead: Ray's start, trial (actor) start-up, reporting and checkpointing,
Optuna's suggestions, and slots idle while the last trials finish.

    python bench/sweep_overhead.py                         # 16 trials of the quick space
    python bench/sweep_overhead.py --trials 16 --data mnist-5k --node-ip 127.0.0.9
    python bench/sweep_overhead.py --folder results/NAME   # a finished sweep's share
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pandas as pd

from search_spaces import load_space
from sweeps import run_sweep
from sweeps.config import LOCAL_NODE_IP, SweepConfig
from sweeps.local_ray import ray_session


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--space", default="quick")
    parser.add_argument("--epochs", type=int, default=None, help="default: the space's")
    parser.add_argument("--data", default="mnist-5k")
    parser.add_argument("--node-ip", default=LOCAL_NODE_IP)
    parser.add_argument("--folder", type=Path, help="report on this finished sweep; run none")
    args = parser.parse_args()
    if args.folder:
        print(training_share(args.folder))
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
    )
    t0 = time.perf_counter()
    with ray_session(None, args.node_ip):
        t1 = time.perf_counter()
        run_sweep(config)
    wall = time.perf_counter() - t0
    folder = Path(storage) / "overhead"
    record = json.loads((folder / "sweep.json").read_text())
    epochs = pd.read_parquet(folder / "epochs.parquet")
    fit = seconds_between(record["started_at"], record["finished_at"])
    print(training_share(folder))
    print(
        f"Ray start {t1 - t0:.1f} s, data and set-up {wall - (t1 - t0) - fit:.1f} s, "
        f"tuning {fit:.1f} s, total {wall:.1f} s"
    )
    slots = record["search"]["max_concurrent"]
    print(f"training share of the whole wall time: {training_seconds(epochs) / (slots * wall):.1%}")


def training_seconds(epochs: pd.DataFrame) -> float:
    return float(epochs["epoch_seconds"].sum())


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


def training_share(folder: Path) -> str:
    """What a finished sweep's slots spent inside epochs, of its tuning time."""
    record = json.loads((folder / "sweep.json").read_text())
    epochs = pd.read_parquet(folder / "epochs.parquet")
    slots = record["search"]["max_concurrent"]
    if record["finished_at"] is None:
        return f"{folder}: the sweep did not finish (no finished_at in sweep.json)"
    fit = seconds_between(record["started_at"], record["finished_at"])
    covered = covered_seconds(folder)
    return (
        f"{record['samples']} trials, {len(epochs)} epochs, "
        f"{slots} at a time, {record['data']['sizes']['train']} training images, "
        f"{os.cpu_count()} CPUs: tuning {fit:.1f} s; training share of the tuning time "
        f"{training_seconds(epochs) / (slots * fit):.1%} of slot time"
        + ("" if covered is None else f", {covered / fit:.1%} with some trial in an epoch")
    )


if __name__ == "__main__":
    main()
