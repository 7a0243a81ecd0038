"""cuDNN autotuning (`torch.backends.cudnn.benchmark`): what it costs a worker's start, and what it
buys per step.

vae_core.device.configure_backends turns it on, so each process times every cuDNN algorithm for
each convolution shape it meets before using the fastest: a trial meets the training batch
(128: forward and both backward passes), the epoch's short last batch (55,000 % 128 = 88), and
the evaluation batches (1,024 and the last 904 of the 5,000 validation images). On an H200 a
worker's first trial set up 1.07 s slower than a warm process (bench/trial_overhead.py) and ran
its first epoch 1.13 s slower than its later ones; four trials start at once on a shared GPU,
where autotuning's timings are also taken while the others train. This says how much of that
the autotuning is, and whether the kernels it picks step faster than cuDNN's heuristics.

Each choice runs in its own fresh process (the choice is per process), alternating for
`--rounds`; both import torch._dynamo and create the CUDA context before anything is timed.

    python bench/cudnn_autotune.py --data mnist
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from vae_core import ConvVAE, VaeSweepError, load_mnist
from vae_core.device import configure_backends, resolve_device, resolve_precision
from vae_core.evaluate import per_image_elbo, recalibrate_batchnorm
from vae_core.step import make_optimizer, make_step

STEPS = 300  # steady-state steps timed


def timed(device: torch.device, fn) -> float:
    """Seconds of fn(), its GPU work included."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def one_process(benchmark: bool, args) -> dict:
    """In this (fresh) process: each shape's first use, then steady step and evaluation times."""
    import torch._dynamo  # noqa: F401  (every worker pays it at its first step; not measured here)

    device = resolve_device(args.device)
    torch.zeros(1, device=device)  # the CUDA context, also not measured here
    configure_backends(device, threads=1)
    torch.backends.cudnn.benchmark = benchmark
    data = load_mnist(args.data, args.data_root).to(device)
    graph = device.type == "cuda"
    batch = args.batch_size
    precision = resolve_precision("auto", device, batch_size=batch, graph=graph)
    model = ConvVAE(args.z_dim, args.fc_size).to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model, 1e-3, capturable=graph)
    noise = torch.Generator(device=device).manual_seed(0)
    images = data.train_x
    steps = []

    def new_step():
        step = make_step(model, model, optimizer, noise, images, batch, precision, graph=graph)
        steps.append(step)

    def evaluation():
        recalibrate_batchnorm(model, images, batch_size=batch, precision=precision)
        per_image_elbo(model, data.val_x, precision=precision)

    short = torch.arange(len(images) % batch or batch - 1, device=device)
    full = torch.randperm(len(images), device=device)[:batch]
    out = {
        "training batch, first use": timed(device, new_step),
        "short last batch, first use": timed(device, lambda: steps[0](short)),
        "evaluation, first use": timed(device, evaluation),
    }
    model.train()
    steady = timed(device, lambda: [steps[0](full) for _ in range(STEPS)])
    out["step, steady (ms)"] = 1000 * steady / STEPS
    out["evaluation, steady"] = timed(device, evaluation)
    out["precision"] = precision
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cpu only checks that the script runs")
    p.add_argument("--data", default="auto")
    p.add_argument("--data-root", default=None)
    p.add_argument("--z-dim", type=int, default=28)
    p.add_argument("--fc-size", type=int, default=900)
    p.add_argument("--batch-size", type=int, default=128, help="the default space's: 128")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--child", choices=("on", "off"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(one_process(args.child == "on", args)))
        return

    resolve_device(args.device)  # no GPU: one line here, before any process starts
    runs = {"off": [], "on": []}
    for _ in range(args.rounds):
        for choice in runs:  # off first in each round, then on: alternating processes
            child = [sys.executable, __file__, "--child", choice, *sys.argv[1:]]
            done = subprocess.run(child, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"error: the {choice} process failed: {done.stderr.strip()}")
            runs[choice].append(json.loads(done.stdout.splitlines()[-1]))
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "-"
    print(
        f"cudnn.benchmark off (heuristics) vs on (autotuning): z_dim {args.z_dim}, fc "
        f"{args.fc_size}, batch {args.batch_size}, {runs['on'][0]['precision']}; medians of "
        f"{args.rounds} fresh processes each; gpu {gpu}"
    )
    for key in runs["on"][0]:
        if key == "precision":
            continue
        off, on = (statistics.median(r[key] for r in runs[c]) for c in ("off", "on"))
        unit = "" if "(ms)" in key else " s"
        print(f"  {key:<28} off {off:8.3f}{unit}  on {on:8.3f}{unit}  on/off {on / off:5.2f}")


if __name__ == "__main__":
    try:
        main()
    except VaeSweepError as err:  # no GPU, no data: one line, not a traceback
        raise SystemExit(f"error: {err}") from None
