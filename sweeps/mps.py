"""NVIDIA MPS for a local sweep: the trials that share a GPU run their kernels at the same time.

Trials that share a GPU (`--gpus-per-trial 0.25`) are separate processes, and CUDA runs one
process's kernels at a time, switching between them: four graph-captured trials trained no
faster together than one alone on an H200 (~87,000 img/s at batch 128, BENCHMARKS.md), while
each step's small kernels leave most of the GPU's multiprocessors idle. NVIDIA's Multi-Process
Service runs the kernels of its client processes at once.

The daemon started here is the sweep's own: its pipe and log folders are a temporary folder,
and only processes whose environment names that folder are its clients. The local Ray's
workers get that environment (sweeps.local_ray starts Ray with it); the driver, which analyses
the sweep on the same GPU afterwards, and any other program on the machine do not.

Where a daemon already runs for this process (a system-wide one at /tmp/nvidia-mps, or the one
CUDA_MPS_PIPE_DIRECTORY names), CUDA makes every process here its client, the trials included:
the sweep uses that one, and leaves it running, instead of starting a second that would compete
with it for the GPU.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vae_core.errors import DeviceError

log = logging.getLogger(__name__)

CONTROL = "nvidia-cuda-mps-control"  # ships with NVIDIA's driver
PIPE_ENV = "CUDA_MPS_PIPE_DIRECTORY"  # where a client finds its daemon
DEFAULT_PIPE = "/tmp/nvidia-mps"  # where CUDA looks without PIPE_ENV
LOG_ENV = "CUDA_MPS_LOG_DIRECTORY"
COMMAND_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0  # the daemon stops its server, then itself, after `quit`
CLIENT_TIMEOUT_S = 60.0  # for the first client: the daemon starts its server for it
# The first client, before any trial: a CUDA context through the daemon, then exit. A machine
# where the daemon starts but cannot serve (a container without the IPC that MPS needs) then
# fails in seconds with CUDA's reason, instead of every trial failing or waiting. Through the
# driver library itself (ctypes): it takes a fraction of a second, where importing torch
# would take seconds.
CLIENT_PROBE = textwrap.dedent(
    """
    import ctypes, sys
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as err:
        sys.exit(f"no CUDA driver library: {err}")
    device, context = ctypes.c_int(), ctypes.c_void_p()
    for call, args in [
        ("cuInit", (0,)),
        ("cuDeviceGet", (ctypes.byref(device), 0)),
        ("cuDevicePrimaryCtxRetain", (ctypes.byref(context), device)),
    ]:
        status = getattr(cuda, call)(*args)
        if status:
            name = ctypes.c_char_p()
            cuda.cuGetErrorName(status, ctypes.byref(name))
            sys.exit(f"{call} failed: {(name.value or b'CUDA error').decode()} ({status})")
    """
)


@dataclass(frozen=True)
class MpsDaemon:
    control: str  # the nvidia-cuda-mps-control executable
    env: dict[str, str]  # what a process needs in its environment to be a client

    def command(self, text: str) -> str:
        """Send one command (see `man nvidia-cuda-mps-control`) and return its answer."""
        done = subprocess.run(
            [self.control],
            input=text + "\n",
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        return done.stdout

    def servers(self) -> list[int]:
        """PIDs of its MPS servers: one starts when the first client connects."""
        return [int(w) for w in self.command("get_server_list").split() if w.isdigit()]

    def clients(self, server: int) -> list[int]:
        """PIDs of the processes connected to `server`."""
        return [int(w) for w in self.command(f"get_client_list {server}").split() if w.isdigit()]

    def check_a_client(self, timeout: float = CLIENT_TIMEOUT_S) -> None:
        """A process given `env` gets a CUDA context through the daemon (check_a_client)."""
        check_a_client(self.env, timeout)


def check_a_client(env: dict[str, str], timeout: float = CLIENT_TIMEOUT_S) -> None:
    """A process given `env` on top of ours gets a CUDA context, through the MPS daemon that
    `env` (or our environment) names; see CLIENT_PROBE.

    Raises:
        DeviceError: it could not, or did not within `timeout` seconds.
    """
    try:
        done = subprocess.run(
            [sys.executable, "-c", CLIENT_PROBE],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        why = f"no CUDA context within {timeout:g} s"
    else:
        if done.returncode == 0:
            return
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    raise DeviceError(f"the NVIDIA MPS daemon runs, but a CUDA process cannot use it: {why}")


@contextmanager
def mps_daemon() -> Iterator[MpsDaemon]:
    """Start an MPS control daemon of our own for the duration of the block, then stop it.

    Raises:
        DeviceError: no nvidia-cuda-mps-control, or the daemon did not start.
    """
    control = shutil.which(CONTROL)
    if control is None:
        raise DeviceError(f"--mps needs NVIDIA's {CONTROL} on the PATH (it comes with the driver)")
    # A short folder: the daemon's pipes are Unix sockets, whose paths may not exceed 107 bytes.
    with tempfile.TemporaryDirectory(prefix="vae-mps-", ignore_cleanup_errors=True) as folder:
        pipe, logs = Path(folder, "pipe"), Path(folder, "log")
        pipe.mkdir()
        logs.mkdir()
        daemon = MpsDaemon(control, {PIPE_ENV: str(pipe), LOG_ENV: str(logs)})
        _start(daemon, logs)
        try:
            yield daemon
        finally:
            _stop(daemon, pipe)


@contextmanager
def mps_env(on: bool) -> Iterator[dict[str, str]]:
    """The environment that makes a process a client of an MPS daemon started for the block;
    empty where one already runs (running_daemon: every process here is its client), and
    with no daemon when `on` is false.

    Raises:
        DeviceError: no CUDA GPU, mps_daemon's, or a CUDA process cannot use the daemon.
    """
    if not on:
        yield {}
        return
    import torch

    if not torch.cuda.is_available():
        raise DeviceError("--mps needs a CUDA GPU, but none is visible")
    running = running_daemon()
    if running is not None:
        check_a_client({})  # this process's environment reaches it
        log.info(
            "NVIDIA MPS: the trials that share a GPU run their kernels at the same time, as "
            "clients of the daemon already running at %s (left running)",
            running,
        )
        yield {}
        return
    with mps_daemon() as daemon:
        daemon.check_a_client()
        log.info(
            "NVIDIA MPS: the trials that share a GPU run their kernels at the same time "
            "(a daemon of the sweep's own, stopped at its end)"
        )
        yield daemon.env


def running_daemon() -> Path | None:
    """The pipe folder of an MPS daemon that already serves this process's CUDA contexts, if
    one listens there: CUDA_MPS_PIPE_DIRECTORY's, or /tmp/nvidia-mps without it."""
    pipe = Path(os.environ.get(PIPE_ENV) or DEFAULT_PIPE)
    return pipe if _listens(pipe / "control") else None


def _listens(path: Path) -> bool:
    """Whether a process holds the Unix socket at `path`: connecting, not only finding the
    file, since a daemon that was killed leaves its socket behind, and CUDA then runs without
    MPS."""
    # NVIDIA's is SOCK_SEQPACKET (seen on an H100) but undocumented, and a connection of
    # another type fails (EPROTOTYPE) as one to a stale socket does (ECONNREFUSED): try each.
    for kind in (socket.SOCK_SEQPACKET, socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_UNIX, kind) as control:
            control.settimeout(1.0)
            try:
                control.connect(str(path))
            except OSError as err:
                if err.errno == errno.EPROTOTYPE:
                    continue
                return False  # none there, a stale socket, or a path too long for a socket
            return True
    return False


def _start(daemon: MpsDaemon, logs: Path) -> None:
    # Its output goes to a file, not a pipe: the daemon it forks could hold a pipe open for as
    # long as it runs, and reading that pipe to its end would wait as long.
    out = logs / "start.txt"
    try:
        with out.open("w") as sink:
            done = subprocess.run(
                [daemon.control, "-d"],
                env={**os.environ, **daemon.env},
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=COMMAND_TIMEOUT_S,
            )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DeviceError(f"cannot start an NVIDIA MPS daemon: {err}") from err
    if done.returncode != 0:
        why = out.read_text().strip() or f"exit status {done.returncode}"
        raise DeviceError(f"cannot start an NVIDIA MPS daemon: {why.splitlines()[-1]}")


def _stop(daemon: MpsDaemon, pipe: Path) -> None:
    """Ask the daemon to quit and wait (a little) until it has: nothing listens at its control
    socket (the file stays)."""
    try:
        daemon.command("quit")
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("the MPS daemon did not take `quit` (%s); it may still run", err)
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _listens(pipe / "control") and time.monotonic() < deadline:
        time.sleep(0.1)
