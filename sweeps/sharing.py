"""How the trials that share a GPU share it: NVIDIA MPS (sweeps/mps.py), or taking turns.

`auto`, the default, runs a local sweep's GPU-sharing trials under MPS and takes turns, saying
why in one line, where MPS cannot run. On a cluster each node shares its GPU as it is set up
("node"), and the trials report what they found (sweep.json's sharing_by_node). Why and what
it gains: docs/design.md, "How trials share a GPU".
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from sweeps.config import SweepConfig
from sweeps.mps import PIPE_ENV, mps_env, running_daemon, stop_left_behind
from vae_core.errors import DeviceError

log = logging.getLogger(__name__)


def shares_a_gpu(config: SweepConfig) -> bool:
    """A local sweep whose trials each take a fraction of a GPU (None: GPU_SHARE, when Ray
    has a GPU; a resolved config knows); a cluster's nodes share theirs as they are set up to."""
    gpus = config.gpus_per_trial
    return config.address is None and (gpus is None or 0 < gpus < 1)


@contextmanager
def gpu_sharing(config: SweepConfig) -> Iterator[tuple[str, dict[str, str]]]:
    """The way the trials share a GPU ("mps", "time-sliced", or "node" on a cluster), and the
    environment the local Ray's workers need for it (an MPS daemon's, running for the block),
    for a sweep started in the block.

    Raises:
        DeviceError: the way asked for cannot run here (`auto` takes turns instead).
    """
    import ray
    import torch

    if config.address is not None:
        yield "node", {}
        return
    stop_left_behind()
    cuda = torch.cuda.is_available()
    if config.sharing == "mps" and not cuda:
        raise DeviceError("--mps needs a CUDA GPU, but none is visible")
    shared = cuda and shares_a_gpu(config)
    if not shared or config.sharing == "time-sliced":
        if shared and config.sharing == "time-sliced" and (running := running_daemon()):
            raise DeviceError(
                f"--time-sliced: an NVIDIA MPS daemon runs at {running}, and every CUDA "
                f"process here is its client; stop it (echo quit | nvidia-cuda-mps-control) "
                f"to take turns"
            )
        yield "time-sliced", {}
        return
    if ray.is_initialized():
        yield _joined_ray_way(config), {}
        return
    with ExitStack() as stack:
        try:
            way, env = "mps", stack.enter_context(mps_env())
        except DeviceError as err:
            if config.sharing == "mps":
                raise
            log.warning("%s; the trials that share a GPU take turns on it instead", err)
            way, env = "time-sliced", {}
        yield way, env


def _joined_ray_way(config: SweepConfig) -> str:
    """A Ray this process joined (a benchmark's, a notebook's) already has its workers: they
    are MPS clients if it was started with a daemon's environment (ray_session's worker_env,
    kept in the job's runtime environment) or a daemon serves this machine."""
    import ray

    env_vars = ray.get_runtime_context().runtime_env.get("env_vars") or {}
    if PIPE_ENV in env_vars or running_daemon():
        return "mps"
    if config.sharing == "mps":
        raise DeviceError(
            "--mps: this process joined a Ray whose workers no MPS daemon reaches; start that "
            "Ray inside gpu_sharing (sweeps.sharing), or let vae-sweep start its own"
        )
    log.warning(
        "NVIDIA MPS is off: the Ray this process joined was started without an MPS daemon; "
        "the trials that share a GPU take turns on it"
    )
    return "time-sliced"
