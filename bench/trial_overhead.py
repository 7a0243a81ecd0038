"""Where a trial's time outside its epochs goes, without Ray: consecutive trials in one process.

A sweep's worker (a reused Ray actor) runs trial after trial; what each spends outside its
epochs is start-up (data to the device, model, graph capture), the checkpoint state copied
off the device after every epoch, the checkpoint written (as sweeps.trial.TuneReport does),
and the end of the run. This times each part, trial by trial, so that a sweep's measured
time outside epochs can be split into vae_core's share and Ray's (the rest). A worker's first
trial also pays what a cold process pays once, timed first: importing torch._dynamo (which
torch.optim does on the first step) and, on a GPU, creating the CUDA context; trial 1's
set-up less the warm `make_step` shows the rest (cuDNN's first autotuning, lazy kernels).

A sweep's trials differ from these in two ways: each is a new model size, and on a GPU four
processes share it. `--sizes` gives each trial its own size; several copies of this script run
at once on one GPU share it (bench/gpu_checks.sh does both), which separates the two.

    python bench/trial_overhead.py --device cuda --data mnist            # the default space's size
    python bench/trial_overhead.py --device cuda --data mnist --sizes 28:900 12:751 56:719 4:399
    python bench/trial_overhead.py --train-limit 1024 --epochs 3         # CPU, quick
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from results_folder import save_checkpoint
from vae_core import ConvVAE, TrainConfig, VaeSweepError, load_mnist, train
from vae_core.device import configure_backends, resolve_device, resolve_precision
from vae_core.step import make_optimizer, make_step, uses_cuda_graph


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def one_trial(config: TrainConfig, data, device: torch.device) -> dict:
    """Seconds of each part of one train() call, timed around its report callback."""
    marks, saves = [], []

    def report(metrics: dict, state: dict | None) -> None:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(state, Path(folder) / "checkpoint.pt")
        saves.append(time.perf_counter() - start)
        marks.append((start, time.perf_counter(), metrics["epoch_seconds"]))

    called = time.perf_counter()
    train(config, report, data=data)
    sync(device)
    returned = time.perf_counter()
    # Before each report: that epoch, plus the state copied off the device (and, before the
    # first, everything train() sets up); after the last report: the end of train().
    gaps = [marks[0][0] - called - marks[0][2]]
    for (_, prev_end, _), (start, _, epoch) in zip(marks, marks[1:], strict=False):
        gaps.append(start - prev_end - epoch)
    state_copy = statistics.median(gaps[1:]) if len(gaps) > 1 else 0.0
    epochs = [m[2] for m in marks]
    return {
        "setup": gaps[0] - state_copy,
        "state_copy": state_copy,
        "checkpoint": statistics.median(saves),
        "teardown": returned - marks[-1][1],
        "first_epoch_extra": epochs[0] - statistics.median(epochs[1:] or epochs),
        "epoch": statistics.median(epochs),
        "outside": (returned - called) - sum(epochs),
    }


def cold_start(device: torch.device) -> dict:
    """What a worker process pays once, before its first trial's own set-up: timed first,
    while this process is still cold."""
    start = time.perf_counter()
    import torch._dynamo  # noqa: F401  (torch.optim imports it on an optimizer's first step)

    out = {"import torch._dynamo": time.perf_counter() - start}
    if device.type == "cuda":
        start = time.perf_counter()
        torch.zeros(1, device=device)  # creates the CUDA context
        sync(device)
        out["CUDA context"] = time.perf_counter() - start
    return out


def capture_seconds(config: TrainConfig, data, device: torch.device, precision: str) -> float:
    """make_step alone for a fresh model: graph capture on CUDA, next to nothing elsewhere."""
    graph = uses_cuda_graph(device, config.cuda_graph, config.compile)
    model = ConvVAE(config.z_dim, config.fc_size).to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config.lr, capturable=graph)
    noise = torch.Generator(device=device).manual_seed(0)
    images = data.train_x.to(device)
    sync(device)
    start = time.perf_counter()
    make_step(model, model, optimizer, noise, images, config.batch_size, precision, graph=graph)
    sync(device)
    return time.perf_counter() - start


def model_size(text: str) -> tuple[int, int]:
    """ "28:900" -> (z_dim 28, fc_size 900)."""
    try:
        z_dim, fc_size = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected Z_DIM:FC_SIZE, e.g. 28:900") from None
    return z_dim, fc_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--data", default="auto")
    p.add_argument("--data-root", default=None)
    p.add_argument("--train-limit", type=int, default=0, help="0: all training images")
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--z-dim", type=int, default=28)
    p.add_argument("--fc-size", type=int, default=900)
    p.add_argument(
        "--sizes",
        type=model_size,
        nargs="+",
        help="Z_DIM:FC_SIZE of each trial in turn, as a sweep's trials differ (default: "
        "--z-dim and --fc-size for every trial)",
    )
    p.add_argument("--threads", type=int, default=1, help="a sweep's trial gets 1 CPU")
    args = p.parse_args()

    device = resolve_device(args.device)
    cold = cold_start(device)
    data = load_mnist(args.data, args.data_root).limit_train(args.train_limit or None)
    sizes = args.sizes or [(args.z_dim, args.fc_size)]
    config = TrainConfig(
        z_dim=sizes[0][0],
        fc_size=sizes[0][1],
        epochs=args.epochs,
        device=device.type,
        threads=args.threads,
        lr_schedule="cosine",
    )
    configs = [
        replace(config, z_dim=z_dim, fc_size=fc_size)
        for z_dim, fc_size in (sizes[i % len(sizes)] for i in range(args.trials))
    ]
    precision = resolve_precision(
        config.precision,
        device,
        batch_size=config.batch_size,
        graph=uses_cuda_graph(device, config.cuda_graph, config.compile),
    )
    configure_backends(device, config.threads)
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "-"
    print(
        f"{args.trials} trials x {args.epochs} epochs of {len(data.train_x)} images in one "
        f"process; z_dim:fc {' '.join(f'{z}:{fc}' for z, fc in sizes)}, {precision}; gpu {gpu}"
    )
    print("cold process, once: " + ", ".join(f"{k} {v:.3f} s" for k, v in cold.items()))
    rows = [one_trial(c, data, device) for c in configs]
    print("seconds           " + " ".join(f"{k:>17}" for k in rows[0]))
    for i, (c, row) in enumerate(zip(configs, rows, strict=True), 1):
        label = f"{i} ({c.z_dim}:{c.fc_size})"
        print(f"trial {label:<11} " + " ".join(f"{v:17.3f}" for v in row.values()))
    capture = capture_seconds(config, data, device, precision)
    print(f"make_step alone, warm process (graph capture on CUDA): {capture:.3f} s")


if __name__ == "__main__":
    try:
        main()
    except VaeSweepError as err:  # no GPU, no data: one line, not a traceback
        raise SystemExit(f"error: {err}") from None
