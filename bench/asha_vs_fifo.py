"""Optuna TPE + ASHA against random search + FIFO: how soon does some trial reach a target?

Both sweeps get the same space, trial budget, seed, resources and Ray; one runs after the
other. Every result Ray keeps has a wall-clock timestamp, so the time to target is the first
result with val_loss <= target, counted from the sweep's first result minus its duration.
The default target is a good loss both are likely to reach: the 25th percentile of the
full-budget losses of both sweeps together.

    python bench/asha_vs_fifo.py                     # 16 trials each of the quick space
    python bench/asha_vs_fifo.py --trials 24 --target 135 --node-ip 127.0.0.9
"""

from __future__ import annotations

import argparse
import logging
import math
import tempfile
import time

import pandas as pd
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from search_spaces import load_space
from sweeps.config import LOCAL_NODE_IP, SweepConfig
from sweeps.local_ray import ray_session
from sweeps.quiet import quiet_ray_and_optuna
from sweeps.resources import trial_slots
from sweeps.tuner import build_tuner, fixed_config, make_trainable
from vae_core.data import load_mnist


def random_space(space) -> dict:
    """The same space as Ray Tune domains, for random search."""
    out = {}
    for p in space.params:
        if p.type == "choice":
            out[p.name] = tune.choice(list(p.values))
        elif p.type == "int":
            sample = tune.lograndint if p.log else tune.randint
            out[p.name] = sample(int(p.low), int(p.high) + 1)  # randint's upper end is open
        else:
            out[p.name] = (tune.loguniform if p.log else tune.uniform)(p.low, p.high)
    return out


def fifo_tuner(config, data, storage: str, slots: int) -> tune.Tuner:
    return tune.Tuner(
        make_trainable(config, data),
        param_space={**fixed_config(config, data), **random_space(config.space)},
        tune_config=tune.TuneConfig(
            search_alg=BasicVariantGenerator(random_state=config.seed, max_concurrent=slots),
            scheduler=FIFOScheduler(),
            num_samples=config.samples,
            metric="val_loss",
            mode="min",
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name="fifo",
            storage_path=storage,
            verbose=0,
            callbacks=[JsonLoggerCallback(), CSVLoggerCallback()],  # as build_tuner's
        ),
    )


def history(grid) -> pd.DataFrame:
    """Every result of every trial: its wall-clock end, duration, val loss and epoch."""
    frames = [
        r.metrics_dataframe[["timestamp", "time_this_iter_s", "val_loss", "epoch"]]
        for r in grid
        if r.metrics_dataframe is not None
    ]
    return pd.concat(frames, ignore_index=True)


def time_to(frame: pd.DataFrame, target: float) -> float:
    start = (frame["timestamp"] - frame["time_this_iter_s"]).min()
    hit = frame.loc[frame["val_loss"] <= target, "timestamp"]
    return hit.min() - start if len(hit) else math.inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--space", default="quick")
    parser.add_argument("--data", default="mnist-5k")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=None)
    parser.add_argument("--node-ip", default=LOCAL_NODE_IP)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the sweep's progress

    quiet_ray_and_optuna()  # as run_sweep does: the same Ray loggers for both sweeps
    storage = tempfile.mkdtemp(prefix="vae-sweep-bench-")
    with ray_session(None, args.node_ip) as cluster:
        config = SweepConfig(
            name="asha",
            space=load_space(args.space),
            samples=args.trials,
            data=args.data,
            seed=args.seed,
            storage=storage,
            node_ip=args.node_ip,
        ).resolved(cluster_gpus=cluster.get("GPU", 0))
        slots = trial_slots(config, cluster)
        data = load_mnist(args.data).limit_train(config.space.fixed.get("train_limit"))
        runs, walls = {}, {}
        for name, make in (
            (
                "optuna+asha",
                lambda: build_tuner(
                    config,
                    data,
                    f"{storage}/asha",
                    slots=slots,
                    db_url=f"sqlite:///{storage}/optuna.db",
                ),
            ),
            ("random+fifo", lambda: fifo_tuner(config, data, storage, slots)),
        ):
            start = time.perf_counter()
            runs[name] = history(make().fit())
            walls[name] = time.perf_counter() - start
    full = pd.concat([f[f["epoch"] == config.epochs] for f in runs.values()])
    target = args.target if args.target is not None else full["val_loss"].quantile(0.25)
    times = {name: time_to(frame, target) for name, frame in runs.items()}
    print(
        f"{args.trials} trials each, {slots} at a time, {config.epochs} epochs max, "
        f"space {config.space.name}, data {args.data}; target val loss {target:.2f}"
    )
    for name, frame in runs.items():
        print(
            f"  {name:<12} reached it after {times[name]:7.1f} s; whole sweep {walls[name]:.1f}"
            f" s, {len(frame)} epochs trained, best {frame['val_loss'].min():.2f}"
        )
    ratio = times["random+fifo"] / times["optuna+asha"]
    print(f"optuna+asha reached the target {ratio:.2f}x sooner")


if __name__ == "__main__":
    main()
