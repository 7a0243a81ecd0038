"""The sweep's own MPS daemon on a real GPU (skipped without CUDA, and where NVIDIA's control
program is missing): a process given its environment is its client, a daemon already running is
used and left running, a sweep with no sharing option (`auto`) runs under it, and so does one
run in a Ray started under it. Each is bounded in time, so that clients that never get the GPU
fail the test instead of holding up the rest of the suite."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pandas as pd
import pytest

from sweeps.mps import CONTROL, PIPE_ENV, mps_daemon, mps_env, running_daemon
from tests.conftest import run_probe
from vae_core.errors import DeviceError

# A CUDA process that holds its context until told to end.
CLIENT = "import sys, torch; torch.zeros(1, device='cuda'); print('ready', flush=True); input()"
needs_mps = pytest.mark.skipif(shutil.which(CONTROL) is None, reason=f"needs {CONTROL}")


@needs_mps
def test_a_process_given_the_daemon_s_environment_is_its_client():
    with mps_daemon() as daemon:
        child = subprocess.Popen(
            [sys.executable, "-c", CLIENT],
            env={**os.environ, **daemon.env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        deadline = threading.Timer(60, child.kill)  # a client that never starts: "" below
        deadline.start()
        try:
            assert child.stdout.readline().strip() == "ready"
            servers = daemon.command("get_server_list").split()
            assert len(servers) == 1
            clients = daemon.command(f"get_client_list {servers[0]}").split()
            assert str(child.pid) in clients
        finally:
            deadline.cancel()
            child.communicate("\n", timeout=60)
        assert child.returncode == 0


@needs_mps
def test_a_daemon_already_running_is_used_and_left_running(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="sweeps.mps")
    with mps_daemon() as daemon:
        pipe = Path(daemon.env[PIPE_ENV])
        monkeypatch.setenv(PIPE_ENV, str(pipe))  # as for a daemon started by hand
        assert running_daemon() == pipe
        with mps_env() as env:
            assert env == {}  # this process's environment reaches it already
        assert running_daemon() == pipe  # not stopped
    assert f"clients of the daemon already running at {pipe}" in caplog.text


def test_no_control_program_is_one_error_naming_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DeviceError, match=CONTROL), mps_daemon():
        pass


@needs_mps
def test_a_sweep_runs_under_mps_by_default(make_space, tmp_path, cli_env):
    space = make_space("mps", samples=2, epochs=2, train_limit=2000)
    proc = subprocess.run(
        [sys.executable, "-m", "vae_sweep", "run", "--gpus-per-trial", "0.5"]
        + ["--space", str(space), "--data", "mnist-5k", "--no-analyze"]
        + ["--storage", str(tmp_path / "results"), "--name", "mps"],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "NVIDIA MPS" in proc.stderr
    folder = tmp_path / "results" / "mps"
    assert json.loads((folder / "sweep.json").read_text())["resources"]["sharing"] == "mps"
    trials = pd.read_parquet(folder / "trials.parquet")
    assert len(trials) == 2 and set(trials["device"]) == {"cuda"}
    assert trials["status"].isin(["completed", "early_stopped"]).all()


# A benchmark's pattern: one Ray, started under the way gpu_sharing picks, for several sweeps.
NESTED = textwrap.dedent(
    """
    import sys
    from sweeps import SweepConfig
    from sweeps.local_ray import ray_session
    from sweeps.sharing import gpu_sharing

    config = SweepConfig(name="n")
    with gpu_sharing(config) as (way, env), ray_session(None, sys.argv[1], worker_env=env):
        with gpu_sharing(config) as (inner, inner_env):
            print("ways", way, inner, sorted(inner_env))
    """
)


@needs_mps
def test_a_sweep_in_a_ray_started_under_the_daemon_is_under_it(cli_env):
    proc = run_probe(NESTED, cli_env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [line for line in proc.stdout.splitlines() if line.startswith("ways")] == [
        "ways mps mps []"  # the same daemon: none started again, nothing more to pass on
    ]
