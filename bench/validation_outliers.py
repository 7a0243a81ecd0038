"""Validation explosions: the post's model and evaluation against vae_core's, on eleven configs.

Each (z_dim, fc_size, lr) and seed is trained twice with vae_core.train, the same seeds and
batches: once with the post's unbounded log-variance head, once with today's bounded one. At
every epoch the model is evaluated both ways: with BatchNorm's running statistics as training
left them (the old evaluation) and after re-estimating them (vae_core.evaluate's
recalibrate_batchnorm, today's). That gives four variants from two trainings:

    post      unbounded head, running statistics     (the post's model and evaluation)
    recal     unbounded head, re-estimated statistics
    bound     bounded head,   running statistics
    both-mean bounded head,   re-estimated statistics
    both      as both-mean, read as val_loss, the outlier-capped mean (today's vae_core)

All but the last read the plain mean over the validation images.

A run is "bad" when it is marked diverged, or ends with a validation loss above 1,000 (or not
finite), although its training loss never diverged. Under "post" a non-finite validation loss
marks the run diverged and stops it (a rule on the validation loss); the other variants use
vae_core's rule (training loss only, vae_core.train.training_diverged). Counts are printed per
variant.

    python bench/validation_outliers.py --data-root ../shared/mnist                # CPU, fp32
    python bench/validation_outliers.py --data-root ../shared/mnist --precision bf16
    python bench/validation_outliers.py --data-root ../shared/mnist --device cuda --train-limit 0
    # one configuration's validation curves, epoch by epoch, old evaluation against today's:
    python bench/validation_outliers.py --data-root ../shared/mnist --config 12 751 1.605e-3 \
        --seeds 0 --epochs 30 --curves
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import math
import time

import torch

from vae_core import ConvVAE, TrainConfig, load_mnist
from vae_core.device import cpu_capability, resolve_device, resolve_precision
from vae_core.evaluate import evaluate, recalibrate_batchnorm

# Eleven configurations whose validation loss can explode: a default GPU sweep's high-lr and
# diverged ones, and two moderate ones (the sweep's best and the post's neighbourhood).
CONFIGS = [
    (2, 83, 4.626e-3),
    (11, 685, 2.689e-3),
    (43, 506, 8.282e-3),
    (5, 608, 9.431e-3),
    (28, 900, 9.062e-3),
    (17, 633, 8.664e-3),
    (8, 920, 8.459e-3),
    (2, 153, 6.905e-3),
    (37, 101, 5.706e-3),
    (12, 751, 1.605e-3),
    (10, 400, 1e-3),
]
# The module, not the function that vae_core exports under the same name.
train_module = importlib.import_module("vae_core.train")
BAD_LOSS = 1000.0  # nats: no MNIST VAE that trains ends its validation this high
VARIANTS = ("post", "recal", "bound", "both-mean", "both")


def run_once(config: TrainConfig, data, *, bounded: bool) -> dict:
    """Train once; per epoch, the validation loss with running and with re-estimated stats."""
    stale: list = []  # per epoch: the evaluation with BatchNorm's running statistics

    def evaluate_then_recalibrate(model, images, **kwargs):
        stale.append(evaluate(model, data_on_device.val_x, precision=kwargs["precision"]))
        recalibrate_batchnorm(model, images, **kwargs)

    logvar_max = ConvVAE.__init__.__kwdefaults__["logvar_max"] if bounded else None
    patched = {
        "ConvVAE": functools.partial(ConvVAE, logvar_max=logvar_max),
        "recalibrate_batchnorm": evaluate_then_recalibrate,
    }
    saved = {name: getattr(train_module, name) for name in patched}
    device = resolve_device(config.device)
    data_on_device = data.limit_train(config.train_limit).to(device)
    try:
        for name, value in patched.items():
            setattr(train_module, name, value)
        result = train_module.train(config, data=data_on_device)
    finally:
        for name, value in saved.items():
            setattr(train_module, name, value)
    epochs = result.history
    return {
        "train": [m["train_loss"] for m in epochs],
        "trained_ok": not result.diverged,
        "stale_mean": [v.loss for v in stale],
        "stale_robust": [v.robust_loss for v in stale],
        "fresh_mean": [m["val_mean"] for m in epochs],
        "fresh_robust": [m["val_loss"] for m in epochs],
        "fresh_outliers": [m["val_outliers"] for m in epochs],
        "seconds": sum(m["epoch_seconds"] for m in epochs),
    }


def bad(trained_ok: bool, val_curve: list[float], *, val_stops: bool) -> bool:
    """Marked diverged, or ends above BAD_LOSS, while training itself was fine."""
    if not trained_ok:
        return False  # a real divergence is not an evaluation problem
    if val_stops and any(not math.isfinite(v) for v in val_curve):
        return True  # the old rule: a non-finite validation loss marked the run diverged
    last = val_curve[-1] if val_curve else math.nan
    return not (math.isfinite(last) and last <= BAD_LOSS)


def variants(unbounded: dict, bounded: dict) -> dict[str, bool]:
    return {
        "post": bad(unbounded["trained_ok"], unbounded["stale_mean"], val_stops=True),
        "recal": bad(unbounded["trained_ok"], unbounded["fresh_mean"], val_stops=False),
        "bound": bad(bounded["trained_ok"], bounded["stale_mean"], val_stops=False),
        "both-mean": bad(bounded["trained_ok"], bounded["fresh_mean"], val_stops=False),
        "both": bad(bounded["trained_ok"], bounded["fresh_robust"], val_stops=False),
    }


def print_curves(unbounded: dict, bounded: dict) -> None:
    """Per epoch: the old evaluation (post) against today's (both), and training losses."""
    print("epoch  train(post)  val post     train(both)  val both  val mean  outliers")
    # strict=False: a run whose training diverged has fewer epochs than the other
    pairs = zip(unbounded["stale_mean"], bounded["fresh_robust"], strict=False)
    for e, (old, new) in enumerate(pairs, 1):
        print(
            f"{e:>5}  {unbounded['train'][e - 1]:11.2f}  {old:<11.4g}  "
            f"{bounded['train'][e - 1]:11.2f}  {new:8.2f}  {bounded['fresh_mean'][e - 1]:8.2f}"
            f"  {bounded['fresh_outliers'][e - 1]:>8}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist", choices=["auto", "mnist", "mnist-5k"])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--train-limit", type=int, default=10_000, help="0: all")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--config",
        nargs=3,
        type=float,
        metavar=("Z_DIM", "FC_SIZE", "LR"),
        help="run this configuration instead of the eleven above",
    )
    parser.add_argument("--curves", action="store_true", help="print every epoch's losses")
    parser.add_argument("--json", default=None, help="also write every run's numbers here")
    args = parser.parse_args()

    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    data = load_mnist(args.data, args.data_root)
    where = torch.cuda.get_device_name() if device.type == "cuda" else cpu_capability()
    print(f"{data.source}, {args.train_limit or 'all'} training images, {args.epochs} epochs, ")
    print(f"{device.type} ({where}), {precision}, seeds {args.seeds}")
    counts = dict.fromkeys(VARIANTS, 0)
    runs = []
    start = time.perf_counter()
    configs = (
        [(int(args.config[0]), int(args.config[1]), args.config[2])] if args.config else CONFIGS
    )
    for z_dim, fc_size, lr in configs:
        for seed in args.seeds:
            config = TrainConfig(
                z_dim=z_dim,
                fc_size=fc_size,
                lr=lr,
                epochs=args.epochs,
                seed=seed,
                data=data.source,
                train_limit=args.train_limit or None,
                device=device.type,
                precision=precision,
                threads=args.threads,
            )
            unbounded = run_once(config, data, bounded=False)
            bounded = run_once(config, data, bounded=True)
            verdict = variants(unbounded, bounded)
            for name, is_bad in verdict.items():
                counts[name] += is_bad
            runs.append(
                {"z_dim": z_dim, "fc_size": fc_size, "lr": lr, "seed": seed}
                | {"unbounded": unbounded, "bounded": bounded, "bad": verdict}
            )
            post_last = unbounded["stale_mean"][-1] if unbounded["stale_mean"] else math.nan
            print(
                f"z={z_dim:<3} fc={fc_size:<4} lr={lr:.2e} seed={seed}  final val: "
                f"post {post_last:10.4g}  "
                f"both {bounded['fresh_robust'][-1]:8.2f}  "
                f"(train {bounded['train'][-1]:.1f}, outliers {bounded['fresh_outliers'][-1]})  "
                f"bad: {' '.join(k for k, v in verdict.items() if v) or '-'}",
                flush=True,
            )
            if args.curves:
                print_curves(unbounded, bounded)
    total = len(configs) * len(args.seeds)
    print(f"\nruns with a validation blow-up but sound training, of {total} ({precision}):")
    for name in VARIANTS:
        print(f"  {name:<6} {counts[name]:>3}")
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "counts": counts, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
