"""How the trials that share a GPU share it: what `auto` picks, the fallback when MPS cannot run
(here, with no GPU, for real), a Ray this process joined, and the options that choose a way.
On a GPU: tests/gpu/test_mps_daemon.py (auto runs a sweep under MPS) and
tests/gpu/test_sweep_gpu.py (each way in a Ray this process joined)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sweeps import SweepConfig
from sweeps.mps import CONTROL, PIPE_ENV, mps_env, running_daemon
from sweeps.sharing import gpu_sharing
from tests.conftest import run_probe
from vae_core.errors import ConfigError, DeviceError
from vae_sweep import cli
from vae_sweep.run import sweep_config

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


@no_gpu
@pytest.mark.parametrize(
    ("options", "way"),
    [
        ({}, "time-sliced"),  # no GPU: nothing to share
        ({"gpus_per_trial": 0.25}, "time-sliced"),
        # A cluster's nodes share theirs as they are set up to.
        ({"address": "auto", "gpus_per_trial": 0.25}, "node"),
    ],
)
def test_what_auto_picks_without_a_gpu(options, way):
    with gpu_sharing(SweepConfig(name="s", **options)) as chosen:
        assert chosen == (way, {})


@pytest.mark.parametrize("gpus", [0, 1, 2])
def test_trials_that_share_no_gpu_take_no_daemon(monkeypatch, gpus):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("sweeps.sharing.running_daemon", lambda: None)
    with gpu_sharing(SweepConfig(name="s", gpus_per_trial=gpus)) as chosen:
        assert chosen == ("time-sliced", {})


# A process of its own: one that has joined a Ray (this session's) asks that Ray instead.
NO_CONTROL_PROGRAM = textwrap.dedent(
    """
    import logging, torch
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    torch.cuda.is_available = lambda: True  # the rest runs for real
    from sweeps import SweepConfig
    from sweeps.sharing import gpu_sharing

    with gpu_sharing(SweepConfig(name="s")) as chosen:
        print(chosen)
    """
)


def test_auto_takes_turns_where_mps_cannot_run_saying_why(cli_env, tmp_path):
    proc = run_probe(NO_CONTROL_PROGRAM, {**cli_env, "PATH": str(tmp_path)}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "('time-sliced', {})"
    said = [line for line in proc.stderr.splitlines() if line.startswith("sweeps.sharing")]
    assert said == [
        f"sweeps.sharing: --mps needs NVIDIA's {CONTROL} on the PATH (it comes with the "
        "driver); the trials that share a GPU take turns on it instead"
    ]


@no_gpu
def test_mps_asked_for_that_cannot_run_is_its_error():
    with (
        pytest.raises(DeviceError, match="--mps needs a CUDA GPU"),
        gpu_sharing(SweepConfig(name="s", sharing="mps")),
    ):
        pass


def test_a_joined_ray_s_workers_are_under_mps_only_where_a_daemon_reaches_them(
    ray_local, monkeypatch, mps_pipe, caplog
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    caplog.set_level(logging.INFO, logger="sweeps.sharing")
    with gpu_sharing(SweepConfig(name="s")) as chosen:  # started without a daemon's env
        assert chosen == ("time-sliced", {})
    assert "NVIDIA MPS is off: the Ray this process joined" in caplog.text
    with (
        pytest.raises(DeviceError, match="no MPS daemon reaches"),
        gpu_sharing(SweepConfig(name="s", sharing="mps")),
    ):
        pass
    with listening(mps_pipe), gpu_sharing(SweepConfig(name="s")) as chosen:
        assert chosen == ("mps", {})  # a daemon every process here is a client of


def parse(*argv: str):
    return cli.build_parser().parse_args(["run", *argv])


@pytest.mark.parametrize(
    ("argv", "sharing"),
    [
        ((), "auto"),
        (("--mps",), "mps"),
        (("--time-sliced",), "time-sliced"),
    ],
)
def test_the_sharing_options(argv, sharing):
    assert sweep_config(parse(*argv)).sharing == sharing


def test_two_ways_at_once_are_refused_in_one_line(cli_env):
    proc = subprocess.run(
        [sys.executable, "-m", "vae_sweep", "run", "--mps", "--time-sliced"],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "vae-sweep run: error: argument --time-sliced: not allowed with argument --mps"
    )


def test_an_unknown_way_is_refused():
    with pytest.raises(ConfigError, match="GPU sharing must be one of auto, mps, time-sliced, "):
        SweepConfig(name="s", sharing="mig")


@pytest.mark.parametrize("way", ["mps", "time-sliced"])
def test_a_way_on_a_cluster_is_refused_naming_cluster_yaml(way):
    with pytest.raises(ConfigError, match=f"--{way} is for a local sweep: .*cluster.yaml"):
        SweepConfig(name="s", sharing=way, address="auto")


# A daemon that already runs here: NVIDIA's needs a GPU, so a Unix socket (SOCK_SEQPACKET, as
# NVIDIA's is) listens in its place at `control` in the pipe folder CUDA_MPS_PIPE_DIRECTORY names.
@pytest.fixture
def mps_pipe(monkeypatch) -> Iterator[Path]:
    # Short: a Unix socket's path may not exceed 107 bytes, and pytest's tmp_path can.
    with tempfile.TemporaryDirectory(prefix="mps-") as folder:
        monkeypatch.setenv(PIPE_ENV, folder)
        yield Path(folder)


@contextmanager
def listening(pipe: Path, kind: int = socket.SOCK_SEQPACKET) -> Iterator[None]:
    (pipe / "control").unlink(missing_ok=True)  # left by the one before, as a daemon leaves it
    with socket.socket(socket.AF_UNIX, kind) as control:
        control.bind(str(pipe / "control"))
        if kind != socket.SOCK_DGRAM:
            control.listen()
        yield


# NVIDIA's control socket is SOCK_SEQPACKET (seen on an H100): each kind is tried.
@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_SEQPACKET, socket.SOCK_DGRAM])
def test_a_running_daemon_is_found_by_its_listening_control_socket(mps_pipe, kind):
    assert running_daemon() is None  # nothing there
    with listening(mps_pipe, kind):
        assert running_daemon() == mps_pipe
    assert (mps_pipe / "control").is_socket()
    assert running_daemon() is None  # the socket a stopped daemon leaves: CUDA would not use it


@no_gpu
def test_mps_uses_a_running_daemon_instead_of_starting_one(mps_pipe, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the rest runs for real
    monkeypatch.setenv("PATH", str(tmp_path))  # no control program: nothing is started
    with listening(mps_pipe), pytest.raises(DeviceError) as err, mps_env():
        pass
    # Not "needs NVIDIA's nvidia-cuda-mps-control": it went to the running daemon, through
    # which this machine's CUDA gives no context. CUDA's own words say so.
    message = str(err.value)
    assert message.startswith("the NVIDIA MPS daemon runs, but a CUDA process cannot use it: ")
    assert "libcuda.so.1" in message or "CUDA_ERROR_" in message, message


def test_taking_turns_under_a_running_daemon_is_refused(mps_pipe, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = SweepConfig(name="s", sharing="time-sliced", gpus_per_trial=0.25)
    with listening(mps_pipe), pytest.raises(DeviceError) as err, gpu_sharing(config):
        pass
    assert str(err.value) == (
        f"--time-sliced: an NVIDIA MPS daemon runs at {mps_pipe}, and every CUDA process here "
        f"is its client; stop it (echo quit | nvidia-cuda-mps-control) to take turns"
    )
    # Whole GPUs: nothing takes turns, so nothing to refuse.
    with listening(mps_pipe), gpu_sharing(replace(config, gpus_per_trial=1)) as (way, env):
        assert (way, env) == ("time-sliced", {})
