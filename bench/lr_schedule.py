"""Constant learning rate against cosine annealing: the validation loss each reaches after the
same epochs, on the same configurations, seed and data: whether a shorter, annealed training
loses quality, which decides whether a sweep can trade epochs for speed.

Each configuration trains twice with `vae_core.train`, once per schedule; the printed
difference is cosine minus constant (negative: cosine is better). The quality does not depend
on the device, only the time does, so a CPU run answers the question a GPU sweep asks.

    python bench/lr_schedule.py --data-root ../shared/mnist --train-limit 20000 --epochs 20
    python bench/lr_schedule.py --device cuda --data-root ~/mnist --train-limit 0 --epochs 60
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vae_core import TrainConfig, load_mnist, train

# (z_dim, fc_size, lr): the post's, and the best trial of a default GPU sweep.
CONFIGS = [(10, 400, 1e-3), (12, 751, 1.6e-3)]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="auto")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--train-limit", type=int, default=20000, help="0: all training images")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    return parser.parse_args()


def final_val_loss(args, z_dim, fc_size, lr, schedule, seed) -> tuple[float, float]:
    config = TrainConfig(
        z_dim=z_dim,
        fc_size=fc_size,
        lr=lr,
        lr_schedule=schedule,
        epochs=args.epochs,
        seed=seed,
        data=args.data,
        data_root=args.data_root,
        train_limit=args.train_limit or None,
        device=args.device,
        precision=args.precision,
    )
    start = time.perf_counter()
    result = train(config, data=args.splits)
    return result.history[-1]["val_loss"], time.perf_counter() - start


def main() -> None:
    args = parse_args()
    args.splits = load_mnist(args.data, args.data_root)
    n = min(args.train_limit or len(args.splits.train_x), len(args.splits.train_x))
    print(
        f"data: {args.splits.source}, {n:,} training images x {args.epochs} epochs, "
        f"seeds {args.seeds}; device {args.device}, torch threads {torch.get_num_threads()}"
    )
    differences = []
    for z_dim, fc_size, lr in CONFIGS:
        for seed in args.seeds:
            constant, t_c = final_val_loss(args, z_dim, fc_size, lr, "constant", seed)
            cosine, t_s = final_val_loss(args, z_dim, fc_size, lr, "cosine", seed)
            differences.append(cosine - constant)
            print(
                f"z_dim {z_dim}, fc {fc_size}, lr {lr:g}, seed {seed}: val_loss constant "
                f"{constant:.2f} ({t_c:.0f} s), cosine {cosine:.2f} ({t_s:.0f} s), "
                f"cosine - constant {cosine - constant:+.2f} nats"
            )
    print(f"median difference (cosine - constant): {statistics.median(differences):+.2f} nats")


if __name__ == "__main__":
    main()
