"""How the trials that share a GPU share it: NVIDIA MPS, CUDA streams, or taking turns.

CUDA runs one process's kernels at a time, so trials that share a GPU as separate processes
take turns on it ("time-sliced"), while each graph-captured step of a small model leaves most
of the GPU idle. Two ways run their kernels at the same time: the processes as clients of an
MPS daemon of the sweep's own (sweeps/mps.py), or one process per GPU training them all, each
on a CUDA stream of its own (sweeps/trainer.py). On an H100 (BENCHMARKS.md), against
time-sliced: four trainings at once 1.87x with MPS, 1.84x with streams; the hand-written Tune
script's 16 trials x 4 epochs 4.51x faster under MPS, 3.50x with streams.

So `auto`, the default, runs a local sweep's GPU-sharing trials under MPS and, where MPS
cannot run (no control program, a daemon that does not start or cannot serve a client, a Ray
this process joined without one), on streams. Nothing shares a GPU on CPUs, with whole GPUs
per trial, or on a cluster (where MPS is the nodes' business): there `auto` is time-sliced.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from sweeps.config import POOL_STREAMS, SweepConfig
from sweeps.mps import mps_env
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
            now would not reach.
    """
    if config.sharing != "auto":
        return (config.sharing,)
    gpus = config.gpus_per_trial  # None: GPU_SHARE, below 1, when Ray has a GPU
    if config.address is not None or not cuda or not (gpus is None or 0 < gpus < 1):
        return ("time-sliced",)
    ways = ["mps", "streams", "time-sliced"]
    if ray_joined and not _ray_under_mps:
        ways.remove("mps")
    if gpus is not None and gpus < 1 / POOL_STREAMS:
        ways.remove("streams")
    return tuple(ways)


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
    ways = candidates(config, cuda=torch.cuda.is_available(), ray_joined=ray.is_initialized())
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
