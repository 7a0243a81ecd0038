"""NVIDIA MPS for a local sweep: the trials that share a GPU run their kernels at the same time.

The daemon started here is the sweep's own, in a folder of its own under OWN_ROOT whose
environment only the local Ray's workers get; a daemon already serving this machine is used
and left running instead; and daemons that killed sweeps left behind are stopped
(stop_left_behind). Why, and what it gains: docs/design.md, "How trials share a GPU".
"""

from __future__ import annotations

import errno
import fcntl
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
# Where the daemons the sweeps start live, one folder each: short (a pipe is a Unix socket,
# whose path may not exceed 107 bytes) and per user (another user's sweeps are not ours).
OWN_ROOT = Path(tempfile.gettempdir()) / f"vae-sweep-mps-{os.getuid()}"
LOCK_FILE = "lock"  # held by the sweep that made the folder, for as long as it runs
ON = (
    "NVIDIA MPS is on: the trials that share a GPU run their kernels at the same time "
    "(--time-sliced turns it off)"
)
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
    control = _control()
    OWN_ROOT.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=OWN_ROOT))
    # Locked while this process runs, whatever ends it: the kernel lets go of a killed
    # process's locks, which is how the next sweep tells a daemon left behind (stop_left_behind).
    with (folder / LOCK_FILE).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            daemon = _daemon_in(folder, control)
            _start(daemon, folder / "log")
            try:
                yield daemon
            finally:
                _stop(daemon, folder / "pipe")
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def stop_left_behind() -> int:
    """Stop the daemons of our own that sweeps whose driver was killed left running (a sweep
    stops its own as it ends), each with one line saying so; returns how many there were.
    Their folders go too. A daemon whose sweep still runs is left alone."""
    control = shutil.which(CONTROL)
    stopped = 0
    for folder in sorted(OWN_ROOT.glob("*-*")) if OWN_ROOT.is_dir() else ():
        if _in_use(folder):
            continue
        pipe = folder / "pipe"
        if control is not None and _listens(pipe / "control"):
            _stop(_daemon_in(folder, control), pipe)
            stopped += 1
            log.warning(
                "NVIDIA MPS: stopped the daemon at %s that a sweep (process %s) left running "
                "when it was killed",
                pipe,
                folder.name.split("-", 1)[0],
            )
        shutil.rmtree(folder, ignore_errors=True)
    return stopped


@contextmanager
def mps_env() -> Iterator[dict[str, str]]:
    """The environment that makes a process a client of an MPS daemon started for the block;
    empty where one already runs (running_daemon: every process here is its client).

    Raises:
        DeviceError: no CUDA GPU, mps_daemon's, or a CUDA process cannot use the daemon.
    """
    import torch

    if not torch.cuda.is_available():
        raise DeviceError("--mps needs a CUDA GPU, but none is visible")
    running = running_daemon()
    if running is not None:
        check_a_client({})  # this process's environment reaches it
        log.info("%s, as clients of the daemon already running at %s (left running)", ON, running)
        yield {}
        return
    with mps_daemon() as daemon:
        check_a_client(daemon.env)
        log.info("%s, as clients of a daemon of the sweep's own (stopped at its end)", ON)
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


def _control() -> str:
    control = shutil.which(CONTROL)
    if control is None:
        raise DeviceError(f"--mps needs NVIDIA's {CONTROL} on the PATH (it comes with the driver)")
    return control


def _daemon_in(folder: Path, control: str) -> MpsDaemon:
    pipe, logs = folder / "pipe", folder / "log"
    pipe.mkdir(exist_ok=True)
    logs.mkdir(exist_ok=True)
    return MpsDaemon(control, {PIPE_ENV: str(pipe), LOG_ENV: str(logs)})


def _in_use(folder: Path) -> bool:
    """Whether a running process holds `folder`'s lock (mps_daemon takes it for its life)."""
    try:
        with (folder / LOCK_FILE).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False  # no lock file: a folder a killed sweep left before it took the lock
    return False
