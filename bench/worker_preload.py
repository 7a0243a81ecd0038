"""A local sweep's start, with and without the workers' preloaded imports.

sweeps.local_ray.WORKER_PRELOAD has the local Ray's idle workers import Ray Tune, torch and
torch._dynamo while the driver is still setting up, so that the first trials start warm. This
runs the same `vae-sweep run` in a fresh process with the preload on and off, in alternating
order, and prints the seconds from the command's start to its first epoch and to its end
(medians over the rounds), their ratio, and each run's training share.

    python bench/worker_preload.py --rounds 3                # quick space, 4 trials x 1 epoch
    python bench/worker_preload.py --rounds 1 -- --data mnist --no-analyze   # a GPU's default
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sweep_overhead import report, trial_runs

# `vae-sweep run` with the preload switched off (argv[1] == "off") or left as it is.
RUN = (
    "import sys, sweeps.local_ray as local_ray\n"
    "if sys.argv[1] == 'off': local_ray.WORKER_PRELOAD = ()\n"
    "from vae_sweep.cli import main\n"
    "sys.exit(main(['run', *sys.argv[2:]]))\n"
)
DEFAULT_RUN_ARGS = ["--space", "quick", "--samples", "4", "--epochs", "1", "--no-analyze"]


def run_once(preload: str, run_args: list[str], storage: str, name: str) -> dict:
    """One sweep in a fresh process; seconds from its start to its first epoch and its end."""
    argv = [*run_args, "--storage", storage, "--name", name]
    started = time.time()
    subprocess.run([sys.executable, "-c", RUN, preload, *argv], check=True, env=os.environ)
    wall = time.time() - started
    rows = [row for run in trial_runs(Path(storage) / name) for row in run]
    first_epoch = min(row["epoch_ended_at"] - row["epoch_seconds"] for row in rows)
    return {"first_epoch": first_epoch - started, "wall": wall, "folder": Path(storage) / name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("run_args", nargs="*", help="vae-sweep run's options (after --)")
    args = parser.parse_args()
    run_args = args.run_args or DEFAULT_RUN_ARGS
    storage = tempfile.mkdtemp(prefix="vae-sweep-preload-")
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for r in range(args.rounds):
        for preload in ("off", "on") if r % 2 == 0 else ("on", "off"):
            run = run_once(preload, run_args, storage, f"{preload}-{r}")
            runs[preload].append(run)
            print(
                f"round {r + 1}, preload {preload}: first epoch after {run['first_epoch']:.2f} s, "
                f"done after {run['wall']:.1f} s\n{report(run['folder'])}",
                flush=True,
            )
    median = {
        (preload, key): statistics.median(run[key] for run in runs[preload])
        for preload in runs
        for key in ("first_epoch", "wall")
    }
    for key, what in (("first_epoch", "to the first epoch"), ("wall", "to the end")):
        off, on = median["off", key], median["on", key]
        print(f"{what}: preload off {off:.2f} s, on {on:.2f} s, {off / on:.2f}x sooner")


if __name__ == "__main__":
    main()
