"""--streams: how long the first trial on a GPU's Trainer waits outside its first epoch.

A process's first training run pays, once, for importing torch._dynamo (Adam's first step
imports it), setting cuDNN up and loading CUDA's kernels at their first use. A Trainer
(sweeps.trainer) warms up while the trials' own processes start: it trains a small model for a
few batches as the trials will. This starts a fresh Trainer each round, as `vae-sweep run
--streams` does, gives it the seconds the trials' processes take to start (--head-start), then
times its first run from `start` to its first epoch's report, less the epoch itself; and the
same from a fresh Trainer that did not warm up.

    python bench/trainer_warmup.py --device cuda --data mnist      # on the GPU machine
    python bench/trainer_warmup.py                                  # CPU, 5k sample
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import ray

from sweeps.local_ray import ray_session
from sweeps.trainer import MAX_RUNS, Trainer, trainers
from vae_core import TrainConfig, load_mnist


def first_wait(trainer, data, config: TrainConfig) -> float:
    """Seconds from starting a run on `trainer` to its first epoch's report, less the epoch."""
    started = time.perf_counter()
    ray.get(trainer.start.remote("first", config.to_dict(), None, data))
    metrics, _ = ray.get(trainer.next_epoch.remote("first"))
    waited = time.perf_counter() - started - metrics["epoch_seconds"]
    ray.get(trainer.stop.remote("first"))
    return waited


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", default="mnist-5k")
    p.add_argument("--train-limit", type=int, default=1024, help="images of the timed epoch")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--head-start", type=float, default=10.0, help="seconds before the 1st trial")
    p.add_argument("--node-ip", default="127.0.0.9")
    args = p.parse_args()

    fixed = dict(data=args.data, device=args.device, train_limit=args.train_limit, epochs=1)
    config = TrainConfig(**fixed, z_dim=28, fc_size=900)  # the default space's largest
    data = load_mnist(args.data)
    waits = {"warmed up": [], "cold": []}
    with ray_session(None, args.node_ip):
        for _ in range(args.rounds):
            with trainers(True, data, 1, fixed) as streams:
                time.sleep(args.head_start)
                waits["warmed up"].append(first_wait(streams.of_this_trial(), streams.data, config))
            with tempfile.TemporaryDirectory() as folder:
                env = {"env_vars": {"CUDA_VISIBLE_DEVICES": "0"}} if args.device == "cuda" else {}
                cold = ray.remote(num_cpus=0, max_concurrency=MAX_RUNS, runtime_env=env)(Trainer)
                cold = cold.remote(folder)
                ray.get(cold.runs.remote())  # up, as the warmed one was
                time.sleep(args.head_start)
                waits["cold"].append(first_wait(cold, streams.data, config))
                ray.kill(cold)
    print(
        f"{args.device}, {args.data}: the first run's wait outside its first epoch "
        f"(z_dim 28, fc 900; {args.rounds} rounds, {args.head_start:g} s head start)"
    )
    for name, seconds in waits.items():
        each = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"  {name:<10} median {statistics.median(seconds):.2f} s  ({each})")
    cold, warm = (statistics.median(waits[k]) for k in ("cold", "warmed up"))
    print(f"cold / warmed up: {cold / warm:.1f}x")


if __name__ == "__main__":
    main()
