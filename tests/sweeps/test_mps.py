"""--mps where it cannot work, and how a local Ray hands an environment to its workers only
(what makes them clients of the sweep's MPS daemon; the daemon itself: tests/gpu/test_mps.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from sweeps import SweepConfig
from sweeps.local_ray import ray_session
from tests.conftest import RAY_NODE_IP, SUBPROCESS_NODE_IP
from vae_core.errors import ConfigError, VaeSweepError


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"address": "auto"}, "--mps is for a local sweep"),
        ({"gpus_per_trial": 0}, "share a GPU"),
        ({"gpus_per_trial": 1}, "share a GPU"),
    ],
)
def test_mps_options_that_cannot_work_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        SweepConfig(name="m", mps=True, **options)


def test_mps_takes_the_default_share_or_a_share_below_one():
    assert SweepConfig(name="m", mps=True).mps
    assert SweepConfig(name="m", mps=True, gpus_per_trial=0.25).gpus_per_trial == 0.25


def test_mps_without_a_gpu_is_one_line_and_writes_nothing(tmp_path, cli_env):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    storage = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "vae_sweep", "run", "--mps", "--data", "mnist-5k"]
        + ["--storage", str(storage), "--name", "m"],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "vae-sweep: error: --mps needs a CUDA GPU, but none is visible"
    assert not storage.exists()


# A local Ray started with worker_env: what one of its workers and the driver itself see.
PROBE = textwrap.dedent(
    """
    import os, sys
    import ray
    from sweeps.local_ray import ray_session

    @ray.remote(num_cpus=1)
    def seen():
        return os.environ.get("VAE_SWEEP_PROBE", "unset")

    with ray_session(None, sys.argv[1], worker_env={"VAE_SWEEP_PROBE": "worker"}):
        print(ray.get(seen.remote()), os.environ.get("VAE_SWEEP_PROBE", "unset"))
    """
)


def test_a_local_ray_gives_worker_env_to_its_workers_and_not_to_the_driver(cli_env):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, SUBPROCESS_NODE_IP],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-2:] == ["worker", "unset"]


def test_worker_env_needs_a_ray_of_its_own(ray_local):
    with (
        pytest.raises(VaeSweepError, match="already joined"),
        ray_session(None, RAY_NODE_IP, worker_env={"VAE_SWEEP_PROBE": "worker"}),
    ):
        pass
    with (
        pytest.raises(VaeSweepError, match="a cluster"),
        ray_session("auto", RAY_NODE_IP, worker_env={"VAE_SWEEP_PROBE": "worker"}),
    ):
        pass
