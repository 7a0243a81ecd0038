"""Where a training step's time goes: its kernels by GPU time, and Adam's fused kernel against
the multi-tensor Adam that vae_core uses.

A sweep's speed on one GPU is bounded by the GPU's own speed at batch 128: four trials sharing
it under MPS trained ~93,500 images/s together, what one graph-captured trial reaches alone
(BENCHMARKS.md). So the step's kernels are what is left to make faster. This builds the step
as vae_core.train does (vae_core.step.make_step: one CUDA graph on a GPU, with Adam(capturable)),
times it in the steady state, then records `--steps` steps with torch.profiler and prints the
kernels per step, the GPU time they take (against the step's wall time: close means the GPU is
busy the whole step) and the kernels that take most of it. `--optimizers foreach fused`
compares Adam's multi-tensor kernels with its single fused kernel (torch.optim.Adam(fused=True),
which can be captured too), each in its own model and graph, timed in alternating rounds.

    python bench/step_profile.py --data mnist                                  # GPU, batch 128
    python bench/step_profile.py --data mnist --batch-size 512
    python bench/step_profile.py --data mnist --optimizers foreach fused --rounds 5
    python bench/step_profile.py --device cpu --data mnist-5k --steps 5       # checks it runs
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from vae_core import ConvVAE, VaeSweepError, load_mnist
from vae_core.device import configure_backends, resolve_device, resolve_precision
from vae_core.step import make_optimizer, make_step

WARMUP_STEPS = 20  # after capture: CUDA loads kernels at first use, the allocator settles


def build_step(args, device: torch.device, data, precision: str, optimizer: str, graph: bool):
    """A fresh model and its step, as vae_core.train builds them; `optimizer` picks Adam's
    kernels: "foreach" (vae_core's: capturable multi-tensor) or "fused"."""
    torch.manual_seed(0)
    model = ConvVAE(args.z_dim, args.fc_size).to(device, memory_format=torch.channels_last)
    adam = make_optimizer(model, 1e-3, capturable=graph)
    if optimizer == "fused":  # the same Adam (its rate a device tensor under a graph), fused
        lr = adam.param_groups[0]["lr"]
        adam = torch.optim.Adam(model.parameters(), lr=lr, capturable=graph, fused=True)
    noise = torch.Generator(device=device).manual_seed(0)
    return make_step(
        model, model, adam, noise, data.train_x, args.batch_size, precision, graph=graph
    )


def run(device: torch.device, step, idx: torch.Tensor, steps: int) -> float:
    """Seconds for `steps` steps, their GPU work included."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step(idx)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def kernel_table(args, device, data, precision, optimizer, idx, graph) -> tuple[float, float, list]:
    """Profile `args.steps` steps of a fresh step: (kernels per step, their ms per step, and the
    top rows as (name, calls per step, ms per step)). On a CPU, operators stand in for kernels."""
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    # The profiler runs (warm-up phase, not recorded) while the graph is captured: CUPTI then
    # sees the graph's kernel nodes when they are created, and reports them at each replay.
    with profile(activities=activities, schedule=schedule(wait=0, warmup=1, active=1)) as prof:
        step = build_step(args, device, data, precision, optimizer, graph)
        run(device, step, idx, WARMUP_STEPS)
        prof.step()
        run(device, step, idx, args.steps)  # recorded: the context ends in the active phase
    if cuda:
        rows = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
        rows = [(e.key, e.count, e.device_time_total) for e in rows]
    else:
        rows = [(e.key, e.count, e.self_cpu_time_total) for e in prof.key_averages()]
        rows = [r for r in rows if r[0].startswith("aten::")]
    rows.sort(key=lambda r: -r[2])
    per_step = [(name, count / args.steps, us / 1000 / args.steps) for name, count, us in rows]
    return (
        sum(r[1] for r in per_step),
        sum(r[2] for r in per_step),
        per_step[: args.top],
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cpu only checks that the script runs")
    p.add_argument("--data", default="auto")
    p.add_argument("--data-root", default=None)
    p.add_argument("--z-dim", type=int, default=28)
    p.add_argument("--fc-size", type=int, default=900)
    p.add_argument("--batch-size", type=int, default=128, help="the default space's: 128")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    p.add_argument("--optimizers", nargs="+", default=["foreach"], choices=("foreach", "fused"))
    p.add_argument("--steps", type=int, default=200, help="steps timed per round, and profiled")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--top", type=int, default=15, help="kernels listed")
    args = p.parse_args()
    for name in ("steps", "rounds", "top"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1, got {getattr(args, name)}")

    device = resolve_device(args.device)
    configure_backends(device, threads=None)
    data = load_mnist(args.data, args.data_root).to(device)
    if len(data.train_x) < args.batch_size:
        p.error(f"--batch-size {args.batch_size} is more than the {len(data.train_x)} images")
    precision = resolve_precision(args.precision, device, batch_size=args.batch_size)
    idx = torch.randperm(len(data.train_x), device=device)[: args.batch_size]
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "-"
    print(
        f"z_dim {args.z_dim}, fc {args.fc_size}, batch {args.batch_size}, {precision}, "
        f"{'graph-captured' if device.type == 'cuda' else 'eager'} step on {device} (gpu {gpu})"
    )

    graph = device.type == "cuda"
    steps = {}
    for o in args.optimizers:
        try:
            steps[o] = build_step(args, device, data, precision, o, graph)
            run(device, steps[o], idx, WARMUP_STEPS)
        except RuntimeError as err:  # e.g. a capture this torch refuses: the others still run
            steps.pop(o, None)
            print(f"Adam {o}: failed, {str(err).splitlines()[0]}")
    if not steps:
        raise SystemExit("error: no step could be built")
    times = {o: [] for o in steps}
    for r in range(args.rounds):
        order = list(steps) if r % 2 == 0 else list(reversed(steps))  # neither always first
        for o in order:
            times[o].append(1000 * run(device, steps[o], idx, args.steps) / args.steps)
    median = {o: statistics.median(t) for o, t in times.items()}
    for o in steps:
        kernels, busy, top = kernel_table(args, device, data, precision, o, idx, graph)
        unit = "kernels" if graph else "operators"
        if graph and kernels == 0:
            # A profiler that sees no kernels inside graph replays: the eager step launches
            # the same kernels one by one, which it does see.
            kernels, busy, top = kernel_table(args, device, data, precision, o, idx, False)
            unit = "kernels (none recorded inside the graph: the eager step's, one by one)"
        print(
            f"\nAdam {o}: {median[o]:.3f} ms a step (median of {args.rounds} rounds of "
            f"{args.steps}; {args.batch_size / median[o] * 1000:,.0f} images/s), "
            f"{kernels:.0f} {unit} taking {busy:.3f} ms a step"
        )
        for name, calls, ms in top:
            print(f"  {ms * 1000:8.1f} us {calls:5.1f}x  {name[:100]}")
    if len(median) > 1:
        base, *others = median
        for o in others:
            print(f"{base} / {o} step time: {median[base] / median[o]:.3f}")


if __name__ == "__main__":
    try:
        main()
    except VaeSweepError as err:  # no GPU, no data: one line, not a traceback
        raise SystemExit(f"error: {err}") from None
