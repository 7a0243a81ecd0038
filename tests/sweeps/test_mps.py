"""--mps where it cannot work, our side of the MPS control program's protocol, and how a local
Ray hands an environment to its workers only (what makes them clients of the sweep's MPS
daemon; NVIDIA's daemon itself, with a GPU: tests/gpu/test_mps_daemon.py)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import torch

from search_spaces import load_space
from sweeps import SweepConfig, run_sweep
from sweeps.local_ray import ray_session
from sweeps.mps import (
    CONTROL,
    PIPE_ENV,
    STOP_TIMEOUT_S,
    check_a_client,
    mps_daemon,
    running_daemon,
    stop_left_behind,
)
from tests.conftest import RAY_NODE_IP, run_probe
from vae_core.errors import ConfigError, DeviceError, VaeSweepError


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
        SweepConfig(name="m", sharing="mps", **options)


def test_mps_takes_the_default_share_or_a_share_below_one():
    assert SweepConfig(name="m", sharing="mps").sharing == "mps"
    assert SweepConfig(name="m", sharing="mps", gpus_per_trial=0.25).gpus_per_trial == 0.25


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


# Stands in for NVIDIA's nvidia-cuda-mps-control, which needs a GPU, to check our side of it:
# `-d` leaves a background process holding the caller's output open (as a daemon that does not
# close it would) and listening at the control socket, a SOCK_SEQPACKET one as NVIDIA's is
# (seen on an H100); `quit` ends it and leaves the socket file behind, as NVIDIA's does. A
# client reads one command on stdin.
FAKE_CONTROL = """#!/bin/sh
control="$CUDA_MPS_PIPE_DIRECTORY/control"
if [ "$1" = "-d" ]; then
  if [ -n "$FAKE_MPS_FAIL" ]; then echo "An instance of this daemon is already running"; exit 1; fi
  "$FAKE_MPS_PYTHON" -c "$LISTEN" "$control" &
  echo $! > "$CUDA_MPS_PIPE_DIRECTORY/pid"
  while [ ! -S "$control" ]; do sleep 0.05; done
  exit 0
fi
read -r command
echo "$command" >> "$FAKE_MPS_COMMANDS"
case "$command" in
  quit) kill "$(cat "$CUDA_MPS_PIPE_DIRECTORY/pid")" ;;
  get_server_list) echo 4242 ;;
  "get_client_list 4242") printf '17\\n18\\n' ;;
esac
"""


@pytest.fixture
def commands(tmp_path, monkeypatch) -> Path:
    """The stand-in control program first on the PATH; the file its commands go to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / CONTROL
    program.write_text(FAKE_CONTROL)
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MPS_COMMANDS", str(tmp_path / "commands"))
    monkeypatch.setenv("FAKE_MPS_PYTHON", sys.executable)
    monkeypatch.setenv("LISTEN", LISTEN)
    return tmp_path / "commands"


LISTEN = """
import socket, sys, time
control = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
control.bind(sys.argv[1])
control.listen()
time.sleep(300)
"""


def test_the_daemon_starts_without_reading_its_output_to_the_end_and_quits_after(
    commands, monkeypatch
):
    started = time.monotonic()
    with mps_daemon() as daemon:
        assert time.monotonic() - started < 10  # not waiting for the daemon to close it
        pipe = Path(daemon.env[PIPE_ENV])
        monkeypatch.setenv(PIPE_ENV, str(pipe))
        assert running_daemon() == pipe  # listening, though not to a stream connection
        assert daemon.command("get_server_list").split() == ["4242"]
        assert daemon.command("get_client_list 4242").split() == ["17", "18"]
        stopping = time.monotonic()
    # Its socket file stays after `quit`: stopping waits for nothing to listen, not for the
    # file to go (STOP_TIMEOUT_S).
    assert time.monotonic() - stopping < STOP_TIMEOUT_S / 2
    assert commands.read_text().split() == ["get_server_list", "get_client_list", "4242", "quit"]
    assert running_daemon() is None and not pipe.exists()


def test_a_daemon_that_cannot_start_is_one_error_with_its_reason(commands, monkeypatch):
    monkeypatch.setenv("FAKE_MPS_FAIL", "1")
    with pytest.raises(DeviceError) as err, mps_daemon():
        pass
    assert str(err.value) == (
        "cannot start an NVIDIA MPS daemon: An instance of this daemon is already running"
    )
    assert not commands.exists()  # nothing to stop


def test_a_daemon_no_cuda_process_can_use_is_one_error_with_the_reason(commands):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU (the real daemon's client: tests/gpu)")
    with mps_daemon() as daemon, pytest.raises(DeviceError) as err:
        check_a_client(daemon.env)
    message = str(err.value)
    assert message.startswith("the NVIDIA MPS daemon runs, but a CUDA process cannot use it: ")
    # This machine has no CUDA driver library, or one that finds no GPU: CUDA's own words.
    assert "libcuda.so.1" in message or "CUDA_ERROR_" in message, message
    assert "\n" not in message


def test_a_client_that_never_gets_a_context_is_an_error_in_bounded_time(commands, monkeypatch):
    monkeypatch.setattr("sweeps.mps.CLIENT_PROBE", "import time; time.sleep(60)")
    started = time.monotonic()
    with mps_daemon() as daemon, pytest.raises(DeviceError, match="no CUDA context within 1 s"):
        check_a_client(daemon.env, timeout=1)
    assert time.monotonic() - started < 30


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
    proc = run_probe(PROBE, cli_env, timeout=300)
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


# A sweep's driver, killed while its daemon runs (as `kill -9` or a lost terminal would).
KILLED_SWEEP = textwrap.dedent(
    """
    import os, signal
    from sweeps.mps import mps_daemon

    with mps_daemon() as daemon:
        print(daemon.env["CUDA_MPS_PIPE_DIRECTORY"], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.fixture
def own_root(monkeypatch) -> Path:
    """A short folder of its own for the sweeps' daemons (a pipe is a Unix socket, whose path
    may not exceed 107 bytes: pytest's tmp_path can), for this process and its children."""
    with tempfile.TemporaryDirectory(prefix="m") as folder:
        monkeypatch.setenv("TMPDIR", folder)
        root = Path(folder) / f"vae-sweep-mps-{os.getuid()}"
        monkeypatch.setattr("sweeps.mps.OWN_ROOT", root)
        yield root


def test_a_daemon_left_by_a_killed_sweep_is_stopped_by_the_next_sweep_in_one_line(
    commands, own_root, ray_local, make_space, tmp_path, caplog
):
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_SWEEP], capture_output=True, text=True, timeout=60
    )
    assert killed.returncode == -9, killed.stderr
    pipe = Path(killed.stdout.strip())
    assert pipe.parent.parent == own_root
    os.environ[PIPE_ENV] = str(pipe)  # as a client of the left daemon would look
    try:
        assert running_daemon() == pipe  # still running, with nobody to stop it
    finally:
        del os.environ[PIPE_ENV]

    caplog.set_level(logging.INFO)
    space = load_space(make_space(samples=1, epochs=1, train_limit=128))
    outcome = run_sweep(
        SweepConfig(name="next", space=space, storage=str(tmp_path / "r"), data="mnist-5k")
    )
    assert len(outcome.trials) == 1
    said = [r.getMessage() for r in caplog.records if "MPS" in r.getMessage()]
    owner = int(pipe.parent.name.split("-")[0])
    assert said == [
        f"NVIDIA MPS: stopped the daemon at {pipe} that a sweep (process {owner}) left "
        f"running when it was killed"
    ]
    assert commands.read_text().split() == ["quit"]
    assert not pipe.parent.exists()  # its folder is gone too


def test_a_daemon_whose_sweep_still_runs_is_left_alone(commands, own_root):
    with mps_daemon() as daemon:  # this process's: a sweep that still runs
        assert stop_left_behind() == 0
        assert Path(daemon.env[PIPE_ENV]).parent.exists()
    assert commands.read_text().split() == ["quit"]  # stopped by its own sweep only
    assert list(own_root.iterdir()) == []
