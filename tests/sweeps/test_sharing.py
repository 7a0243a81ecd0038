"""How the trials that share a GPU share it: the ways `auto` tries and in which order, the
fallback when one cannot run (here, with no GPU, for real), and the options that choose one.
On a GPU: tests/gpu/test_mps_daemon.py (auto runs a sweep under MPS) and
tests/gpu/test_sweep_gpu.py (each way in a Ray this process joined)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sweeps import SweepConfig
from sweeps.mps import PIPE_ENV, mps_env, running_daemon
from sweeps.sharing import candidates, gpu_sharing, start_first
from vae_core.errors import ConfigError, DeviceError
from vae_sweep import cli
from vae_sweep.run import sweep_config

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


@pytest.mark.parametrize(
    ("options", "cuda", "ray_joined", "under_mps", "ways"),
    [
        ({}, True, False, False, ("mps", "streams", "time-sliced")),
        ({"gpus_per_trial": 0.5}, True, False, False, ("mps", "streams", "time-sliced")),
        # More than 32 trials at once on a GPU: more than PyTorch has streams for.
        ({"gpus_per_trial": 0.02}, True, False, False, ("mps", "time-sliced")),
        # A Ray this process joined: a daemon started now would not reach its workers...
        ({}, True, True, False, ("streams", "time-sliced")),
        # ...unless this process started that Ray under a daemon of its own (gpu_sharing).
        ({}, True, True, True, ("mps", "streams", "time-sliced")),
        # Nothing to share: no GPU, whole GPUs, CPU trials, a cluster's nodes.
        ({}, False, False, False, ("time-sliced",)),
        ({"gpus_per_trial": 1}, True, False, False, ("time-sliced",)),
        ({"gpus_per_trial": 0}, True, False, False, ("time-sliced",)),
        ({"address": "auto"}, True, False, False, ("time-sliced",)),
        # Asked for: that way only, so that it fails with its reason if it cannot run.
        ({"sharing": "streams"}, True, True, False, ("streams",)),
        ({"sharing": "mps"}, False, False, False, ("mps",)),
        ({"sharing": "time-sliced", "gpus_per_trial": 0.25}, True, False, False, ("time-sliced",)),
    ],
)
def test_the_ways_tried_best_first(monkeypatch, options, cuda, ray_joined, under_mps, ways):
    monkeypatch.setattr("sweeps.sharing._ray_under_mps", under_mps)
    monkeypatch.setattr("sweeps.sharing.running_daemon", lambda: None)
    config = SweepConfig(name="s", **options)
    assert candidates(config, cuda=cuda, ray_joined=ray_joined) == ways


def test_a_daemon_already_running_here_reaches_a_joined_ray_s_workers(monkeypatch, mps_pipe):
    monkeypatch.setattr("sweeps.sharing._ray_under_mps", False)
    with listening(mps_pipe):
        ways = candidates(SweepConfig(name="s"), cuda=True, ray_joined=True)
    assert ways == ("mps", "streams", "time-sliced")


@no_gpu
def test_auto_falls_back_way_by_way_saying_why(caplog):
    caplog.set_level(logging.INFO, logger="sweeps.sharing")
    with ExitStack() as stack:
        assert start_first(("mps", "streams", "time-sliced"), stack) == ("time-sliced", {})
    assert [r.getMessage() for r in caplog.records] == [
        "--mps needs a CUDA GPU, but none is visible; the trials that share a GPU train on "
        "CUDA streams in one process per GPU instead (as with --streams)",
        "--streams needs a CUDA GPU, but none is visible; the trials that share a GPU take "
        "turns on it instead (as with --time-sliced)",
    ]


@no_gpu
@pytest.mark.parametrize("way", ["mps", "streams"])
def test_a_way_asked_for_that_cannot_run_is_its_error(way):
    with (
        pytest.raises(DeviceError, match=f"--{way} needs a CUDA GPU"),
        gpu_sharing(SweepConfig(name="s", sharing=way)),
    ):
        pass


@no_gpu
def test_auto_without_a_gpu_starts_nothing():
    with gpu_sharing(SweepConfig(name="s")) as (way, env):
        assert (way, env) == ("time-sliced", {})


def parse(*argv: str):
    return cli.build_parser().parse_args(["run", *argv])


@pytest.mark.parametrize(
    ("argv", "sharing"),
    [
        ((), "auto"),
        (("--mps",), "mps"),
        (("--streams",), "streams"),
        (("--time-sliced",), "time-sliced"),
    ],
)
def test_the_sharing_options(argv, sharing):
    assert sweep_config(parse(*argv)).sharing == sharing


def test_two_ways_at_once_are_refused_in_one_line(cli_env):
    proc = subprocess.run(
        [sys.executable, "-m", "vae_sweep", "run", "--mps", "--streams"],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "vae-sweep run: error: argument --streams: not allowed with argument --mps"
    )


def test_an_unknown_way_is_refused():
    with pytest.raises(ConfigError, match="GPU sharing must be one of auto, mps, streams, "):
        SweepConfig(name="s", sharing="mig")


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


# NVIDIA's daemon is not found by a stream connection alone (an H100 run, 2026-11-26).
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
    with listening(mps_pipe), pytest.raises(DeviceError) as err, mps_env(True):
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
