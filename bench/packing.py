"""GPU packing by measurement: the same sweep at several GPU shares per trial, end to end.

Each share runs the same sweep (same space, seed, samples and epochs; ASHA off, so every
share trains the same number of epochs) in one Ray session, and is scored by training images
per second of sweep wall time: what a user waits for. The first trials are the same at every
share (the post's configuration, then Optuna's seeded random start-up draws); TPE's later
choices depend on which trials have finished when it is asked, so they differ between shares
(as the best validation losses show), and with them the models' sizes. Also printed: the
share of the slots' seconds spent inside epochs, the time per trial outside them, and the best
validation loss. The fastest share is printed against sweeps.config.GPU_SHARE's, the default
(why the default is what it is: the comment there).

    python bench/packing.py                                    # 8 trials x 2 epochs, full MNIST
    python bench/packing.py --shares 1 0.5 0.25 0.125 --trials 16 --train-limit 27500
    python bench/packing.py --shares 0.25 0.125   # shared as `vae-sweep run` shares a GPU
    python bench/packing.py --time-sliced   # the trials that share a GPU take turns on it
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from search_spaces import load_space
from sweeps import run_sweep
from sweeps.config import GPU_SHARE, LOCAL_NODE_IP, SweepConfig
from sweeps.local_ray import ray_session
from sweeps.sharing import gpu_sharing
from vae_sweep.run import add_sharing_options


def measure(config: SweepConfig, share: float, name: str) -> dict:
    """Run the sweep at one share; its throughput and where its time went."""
    config = replace(config, name=name, gpus_per_trial=share)
    t0 = time.perf_counter()
    run_sweep(config)
    wall = time.perf_counter() - t0
    folder = Path(config.storage) / config.name
    record = json.loads((folder / "sweep.json").read_text())
    epochs = pd.read_parquet(folder / "epochs.parquet")
    trials = pd.read_parquet(folder / "trials.parquet")
    slots = record["search"]["max_concurrent"]
    inside = epochs["epoch_seconds"].sum()
    images = len(epochs) * record["data"]["sizes"]["train"]
    return {
        "share": share,
        "slots": slots,
        "wall_s": wall,
        "images_per_s": images / wall,
        "inside_share": inside / (slots * wall),
        # Per trial, what its slot spent outside epochs: start-up, reporting, checkpoints, idle.
        "outside_per_trial_s": (slots * wall - inside) / len(trials),
        "best_val_loss": trials["best_val_loss"].min(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shares", type=float, nargs="+", default=[1.0, 0.5, 0.25, 0.125])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--space", default="default")
    p.add_argument("--data", default="auto")
    p.add_argument("--data-root", default=None)
    p.add_argument("--train-limit", type=int, default=27_500, help="0: all training images")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--node-ip", default=LOCAL_NODE_IP)
    add_sharing_options(p)
    args = p.parse_args()
    if args.sharing == "mps" and max(args.shares) >= 1:
        p.error("--mps is for trials that share a GPU: every share must be below 1")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    space = load_space(args.space)
    fixed = {**space.fixed, "train_limit": args.train_limit or None}
    # Every share trains the same epochs: no early stopping (grace = max_t) to cut some.
    space = replace(space, fixed=fixed, grace_period=args.epochs)
    base = SweepConfig(
        name="packing",
        space=space,
        samples=args.trials,
        epochs=args.epochs,
        cpus_per_trial=args.cpus_per_trial,
        data=args.data,
        data_root=args.data_root,
        storage=tempfile.mkdtemp(prefix="vae-sweep-packing-"),
        node_ip=args.node_ip,
        sharing=args.sharing,
    )
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    print(f"{args.trials} trials x {args.epochs} epochs, space {args.space}, gpu {gpu}")
    rows = []
    # One Ray for every share, its workers shared as the sweeps below then share them.
    with gpu_sharing(base) as (way, env), ray_session(None, args.node_ip, worker_env=env):
        print(f"GPU sharing: {way} ({args.sharing} asked for)")
        # Warm the page cache, Ray's workers and torch's imports first: not counted.
        measure(replace(base, samples=2), args.shares[0], "warm-up")
        for share in args.shares:
            row = measure(base, share, f"share-{share:g}")
            rows.append(row)
            print(
                f"gpus per trial {share:g} ({row['slots']} at once): {row['wall_s']:.1f} s, "
                f"{row['images_per_s']:,.0f} img/s end to end, "
                f"{row['inside_share']:.0%} of slot time in epochs, "
                f"{row['outside_per_trial_s']:.2f} s per trial outside epochs, "
                f"best val loss {row['best_val_loss']:.2f}"
            )
    best = max(rows, key=lambda r: r["images_per_s"])
    default = next((r for r in rows if r["share"] == GPU_SHARE), None)
    against = (
        f", {best['images_per_s'] / default['images_per_s']:.2f}x its"
        if default is not None
        else " (not measured here)"
    )
    print(
        f"fastest: --gpus-per-trial {best['share']:g} ({best['images_per_s']:,.0f} img/s); "
        f"sweeps.config.GPU_SHARE is {GPU_SHARE:g}{against}"
    )


if __name__ == "__main__":
    main()
