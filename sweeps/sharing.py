"""How the trials that share a GPU share it: NVIDIA MPS, CUDA streams, or taking turns.

CUDA runs one process's kernels at a time, so trials that share a GPU as separate processes
take turns on it ("time-sliced"), while each graph-captured step of a small model leaves most
of the GPU idle. Two ways run their kernels at the same time: the processes as clients of an
MPS daemon of the sweep's own (sweeps/mps.py), or one process per GPU training them all, each
on a CUDA stream of its own (sweeps/trainer.py). On an H100 (BENCHMARKS.md), against
time-sliced: four trainings at once 1.87x with MPS, 1.84x with streams; the hand-written Tune
script's 16 trials x 4 epochs 4.51x faster under MPS, 3.50x with streams.

So `auto`, the default, runs a local sweep's GPU-sharing trials under MPS (a daemon that
already runs here, or one of the sweep's own) and, where MPS cannot run (no control program, a
daemon that does not start or cannot serve a client, a Ray this process joined without one),
on streams. Nothing shares a GPU on CPUs, with whole GPUs per trial, or on a cluster (where
MPS is the nodes' business): there `auto` is time-sliced.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from sweeps.config import POOL_STREAMS, SweepConfig
from sweeps.mps import mps_env, running_daemon
from vae_core.errors import DeviceError

log = logging.getLogger(__name__)

# What each way says when `auto` falls back to it.
INSTEAD = {
    "streams": "train on CUDA streams in one process per GPU instead (as with --streams)",
    "time-sliced": "take turns on it instead (as with --time-sliced)",
}

# True inside a gpu_sharing block that started an MPS daemon for the local Ray: a sweep run
# in the Ray started there (a benchmark runs several in one) is under that daemon already.
_ray_under_mps = False


def candidates(config: SweepConfig, *, cuda: bool, ray_joined: bool) -> tuple[str, ...]:
    """The ways to try, best first: the one asked for, or `auto`'s order.

    Args:
        cuda: a CUDA GPU is visible to this process (then the local Ray has it too).
        ray_joined: this process has joined a Ray already, whose workers an MPS daemon started
            now would not reach (one that already runs here, they reach).
    """
    if config.sharing != "auto":
        return (config.sharing,)
    if not cuda or not shares_a_gpu(config):
        return ("time-sliced",)
    ways = ["mps", "streams", "time-sliced"]
    if ray_joined and not (_ray_under_mps or running_daemon()):
        ways.remove("mps")
    if config.gpus_per_trial is not None and config.gpus_per_trial < 1 / POOL_STREAMS:
        ways.remove("streams")
    return tuple(ways)


def shares_a_gpu(config: SweepConfig) -> bool:
    """A local sweep whose trials each take a fraction of a GPU (None: GPU_SHARE, when Ray
    has a GPU; a resolved config knows); a cluster's nodes share theirs as they are set up to."""
    gpus = config.gpus_per_trial
    return config.address is None and (gpus is None or 0 < gpus < 1)


@contextmanager
def gpu_sharing(config: SweepConfig) -> Iterator[tuple[str, dict[str, str]]]:
    """The way the trials share a GPU, and the environment the local Ray's workers need for
    it (an MPS daemon's, running for the block), for a sweep started in the block.

    Raises:
        DeviceError: the way asked for cannot run here (`auto` falls back instead).
    """
    import ray
    import torch

    global _ray_under_mps
    cuda = torch.cuda.is_available()
    ways = candidates(config, cuda=cuda, ray_joined=ray.is_initialized())
    sliced = config.sharing == "time-sliced" and cuda and shares_a_gpu(config)
    if sliced and (running := running_daemon()):
        raise DeviceError(
            f"--time-sliced: an NVIDIA MPS daemon runs at {running}, and every CUDA process "
            f"here is its client; stop it (echo quit | nvidia-cuda-mps-control) to take turns"
        )
    if ways[0] == "mps" and _ray_under_mps and ray.is_initialized():
        yield "mps", {}  # this process's Ray was started under a daemon of ours
        return
    with ExitStack() as stack:
        way, env = start_first(ways, stack)
        _ray_under_mps = way == "mps"
        try:
            yield way, env
        finally:
            _ray_under_mps = False


def start_first(ways: tuple[str, ...], stack: ExitStack) -> tuple[str, dict[str, str]]:
    """The first of `ways` that can run here, started on `stack`; each one passed over is a
    line in the log with its reason.

    Raises:
        DeviceError: the last of `ways` cannot run either.
    """
    for way, fallback in zip(ways, ways[1:], strict=False):
        try:
            return way, _start(way, stack)
        except DeviceError as err:
            log.info("%s; the trials that share a GPU %s", err, INSTEAD[fallback])
    return ways[-1], _start(ways[-1], stack)


def _start(way: str, stack: ExitStack) -> dict[str, str]:
    if way == "mps":
        return stack.enter_context(mps_env(True))
    if way == "streams":
        from sweeps.trainer import check_streams

        check_streams()  # its Trainers start once Ray is up (sweeps.trainer.trainers)
    return {}
