"""A trial that errors past its retries (its worker killed each time, as a reclaimed spot node
would be) runs to its end with --resume-errored, and the study keeps its FAIL and its end."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd

from sweeps.tuner import MAX_FAILURES

SAMPLES = 2


@contextlib.contextmanager
def storage_of(db: Path):
    rdb = optuna.storages.RDBStorage(f"sqlite:///{db}")
    try:
        yield optuna.load_study(study_name="e", storage=rdb)
    finally:
        rdb.engine.dispose()


def trainable_pids(session: int) -> set[int]:
    """The trial workers (Ray titles a function trainable's actor ImplicitFunc) in process
    session `session`, the sweep's own."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes()
            trial = cmdline.startswith(b"ray::ImplicitFunc")
            if trial and os.getsid(int(entry.name)) == session:
                pids.add(int(entry.name))
    return pids


def test_an_errored_trial_runs_again_with_resume_errored(make_space, cli_env, tmp_path):
    space = make_space("errored", samples=SAMPLES, epochs=3, train_limit=300)
    storage = tmp_path / "results"
    args = ["--storage", str(storage), "--name", "e", "--no-analyze"]
    first = subprocess.Popen(
        [sys.executable, "-m", "vae_sweep", "run", "--space", str(space), "--data", "mnist-5k"]
        + ["--max-concurrent", "1", *args],
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        killed: set[int] = set()
        deadline = time.monotonic() + 240
        while len(killed) <= MAX_FAILURES:  # one more than the retries: the trial errors
            assert time.monotonic() < deadline, f"killed {len(killed)} workers in 240 s"
            for pid in trainable_pids(first.pid) - killed:
                time.sleep(1.0)  # let it start training, as a node lost mid-epoch
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            time.sleep(0.2)
        assert first.wait(timeout=300) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
    trials = pd.read_parquet(storage / "e" / "trials.parquet").set_index("trial_id")
    errored = trials.index[trials["status"] == "error"]
    assert len(errored) == 1, trials.to_string()

    resumed = subprocess.run(
        [sys.executable, "-m", "vae_sweep", "run", *args, "--resume", "--resume-errored"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = pd.read_parquet(storage / "e" / "trials.parquet").set_index("trial_id")
    assert after.loc[errored[0], "status"] in ("completed", "early_stopped"), after.to_string()
    with storage_of(storage / "e" / "optuna.db") as study:
        states = [t.state.name for t in study.trials if t.user_attrs["ray_trial_id"] == errored[0]]
    assert states[0] == "FAIL" and states[-1] in ("COMPLETE", "PRUNED"), states
