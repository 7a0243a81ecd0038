"""Several trials on one GPU: processes that take turns on it, or the same under NVIDIA MPS.

Four trials that share a GPU (`--gpus-per-trial 0.25`) are four processes, and CUDA runs one
process's kernels at a time, switching between them: together they train no faster than one
alone (~87,000 img/s at batch 128 on an H200, BENCHMARKS.md), while each step's small kernels
leave most of the GPU's 132 multiprocessors idle. Under NVIDIA's Multi-Process Service (mode
"on", with the daemon that `vae-sweep run --mps` starts: sweeps/mps.py, a private pipe folder,
so only these processes use it; stopped after each round) their kernels run at the same time.
This measures that against the time-sliced processes (mode "off"), a process per model, as a
sweep's trials run. Modes alternate for `--rounds`; it prints the training images per second of
all the models together, and MPS's ratio to the time-sliced processes.

Each process loads the data, creates its CUDA context and then waits, so that all start
training together; the time runs from that start until the last model has finished.

    python bench/mps.py --data mnist                          # 4 models x 3 epochs, full MNIST
    python bench/mps.py --device cpu --data mnist-5k --train-limit 512 --epochs 1 \
        --modes off --models 2                               # the plumbing, on a CPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from sweeps.mps import mps_env, running_daemon
from vae_core.errors import VaeSweepError

SIZES = ("28:900", "12:751", "56:719", "4:399")  # z_dim:fc_size, from the default sweep's trials
# The modes, in the order they run (MPS last: a machine without it still measures the other),
# and how the table calls them.
MODES = {"off": "time-sliced", "on": "MPS"}


class RoundFailed(RuntimeError):
    """A training process of a round failed; its message says why."""


def one_process(args) -> None:
    """A child: set up, say so, wait for the go, train its model (as a Ray trial trains: one
    model, in the process's main thread); print what it trained and when it finished."""
    import torch

    from vae_core import TrainConfig, load_mnist, train
    from vae_core.device import resolve_device

    device = resolve_device(args.device)
    data = load_mnist(args.data, args.data_root).limit_train(args.train_limit or None).to(device)
    torch.zeros(1, device=device)  # the CUDA context (an MPS client's, under MPS)
    if device.type == "cuda":
        torch.cuda.synchronize()  # the data is in place before the clock starts
    z_dim, fc_size = (int(n) for n in args.child_size.split(":"))
    config = TrainConfig(
        z_dim=z_dim,
        fc_size=fc_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        device=device.type,
        threads=1,  # a sweep's trial gets 1 CPU
    )

    Path(args.child_dir, f"ready-{os.getpid()}").touch()
    go = Path(args.child_dir, "go")
    while not go.exists():
        time.sleep(0.01)
    result = train(config, data=data)
    finished = time.time()
    images = len(data.train_x) * len(result.history)
    print(json.dumps({"images": images, "finished": finished, "precision": result.precision}))


def one_round(args, env: dict) -> dict:
    """A process per model, all at once; the images per second of all the models together,
    from the go to the last end."""
    with tempfile.TemporaryDirectory(prefix="vae-sweep-mps-") as folder:
        children = [
            subprocess.Popen(
                [sys.executable, __file__, *sys.argv[1:], "--child-dir", folder]
                + ["--child-size", size],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for size in args.sizes
        ]
        try:
            setup_ends = time.time() + args.round_timeout
            while len(list(Path(folder).glob("ready-*"))) < len(children):
                if any(c.poll() not in (None, 0) for c in children):
                    break
                if time.time() > setup_ends:  # e.g. CUDA contexts that never come
                    raise subprocess.TimeoutExpired(children[0].args, args.round_timeout)
                time.sleep(0.05)
            go = time.time()
            Path(folder, "go").touch()
            outs = [
                c.communicate(timeout=max(1.0, go + args.round_timeout - time.time()))
                for c in children
            ]
        except subprocess.TimeoutExpired:
            for c in children:
                c.kill()
                c.communicate()
            raise RoundFailed(f"set-up or training ran past {args.round_timeout:g} s") from None
    for child, (_, err) in zip(children, outs, strict=True):
        if child.returncode:  # its last line says why; a process killed by a signal says nothing
            why = (err.strip().splitlines() or [f"exit status {child.returncode}"])[-1]
            raise RoundFailed(f"a training process failed: {why.removeprefix('error: ')}")
    runs = [json.loads(out.splitlines()[-1]) for out, _ in outs]
    wall = max(r["finished"] for r in runs) - go
    return {
        "wall": wall,
        "images_per_s": sum(r["images"] for r in runs) / wall,
        "precision": runs[0]["precision"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cpu: only checks that off runs")
    p.add_argument("--data", default="auto")
    p.add_argument("--data-root", default=None)
    p.add_argument("--train-limit", type=int, default=0, help="0: all training images")
    p.add_argument("--models", type=int, default=4, help="4: as at the GPU share 0.25")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--sizes", nargs="+", default=list(SIZES), help="Z_DIM:FC_SIZE per model")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument(
        "--round-timeout", type=float, default=60.0, help="seconds to set up, and to train"
    )
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="see above")
    p.add_argument("--child-dir", help=argparse.SUPPRESS)
    p.add_argument("--child-size", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_dir:
        one_process(args)
        return
    if "on" in args.modes and args.device != "cuda":
        raise SystemExit("error: MPS (--modes on) needs --device cuda")
    if "off" in args.modes and args.device == "cuda" and (running := running_daemon()):
        raise SystemExit(
            f"error: an NVIDIA MPS daemon runs at {running}, so time-sliced processes (--modes "
            f"off) would be its clients too; stop it to measure them, or leave out 'off'"
        )
    args.sizes = [args.sizes[i % len(args.sizes)] for i in range(args.models)]

    runs, failed = {mode: [] for mode in args.modes}, {}
    for _ in range(args.rounds):
        for mode in [m for m in args.modes if m not in failed]:
            try:
                # "on": a daemon of `vae-sweep run --mps`'s own.
                with mps_env() if mode == "on" else nullcontext({}) as env:
                    runs[mode].append(one_round(args, {**os.environ, **env}))
                # As it comes, so that a later mode that hangs past a time limit loses nothing.
                print(f"{MODES[mode]}: {runs[mode][-1]['images_per_s']:,.0f} img/s", flush=True)
            except (VaeSweepError, RoundFailed) as err:  # e.g. no MPS here: the rest still count
                failed[mode] = str(err)
                runs.pop(mode)
    print(
        f"{args.models} models at once x {args.epochs} epochs, batch {args.batch_size}, "
        f"sizes {' '.join(args.sizes)}; medians of {args.rounds} round(s)"
    )
    medians = {}
    for mode, rows in runs.items():
        medians[mode] = statistics.median(r["images_per_s"] for r in rows)
        wall = statistics.median(r["wall"] for r in rows)
        print(
            f"  {MODES[mode]:<12} {medians[mode]:10,.0f} img/s together ({wall:.1f} s, "
            f"{rows[0]['precision']})"
        )
    for mode, why in failed.items():
        print(f"  {MODES[mode]:<12} failed: {why}")
    for mode in [m for m in medians if m != "off" and "off" in medians]:
        print(f"{MODES[mode]} / time-sliced: {medians[mode] / medians['off']:.2f}x")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    try:
        main()
    except VaeSweepError as err:  # no GPU, no data
        raise SystemExit(f"error: {err}") from None
