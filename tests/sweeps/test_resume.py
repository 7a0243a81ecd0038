"""Interrupt and resume: a killed driver loses no finished trial; names are never overwritten."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest

from vae_sweep import cli

SAMPLES = 5


def run_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "vae_sweep", "run", *args, "--no-analyze"]


def finished_rows(path) -> pd.DataFrame | None:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError):  # not written yet
        return None


def stop_group(proc: subprocess.Popen) -> None:
    """Kill what this test started: the driver's process group (its Ray processes too)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.parametrize(
    "stop",
    # SIGKILL: as if the driver's machine were lost, its home folder with it (the resume runs
    # on a clean one). SIGTERM: `ray job stop`, a process manager; handled as Ctrl-C.
    [signal.SIGKILL, signal.SIGTERM],
    ids=["lost-head", "sigterm"],
)
def test_stopped_sweep_resumes_and_keeps_its_finished_trials(make_space, cli_env, tmp_path, stop):
    space = make_space("resumable", samples=SAMPLES, epochs=3, train_limit=300)
    storage = tmp_path / "results"
    folder = storage / "killed"
    args = ["--storage", str(storage), "--name", "killed"]
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115 - closed in finally
    first = subprocess.Popen(
        run_cli("--space", str(space), "--data", "mnist-5k", *args),
        env=cli_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            rows = finished_rows(folder / "trials.parquet")
            if rows is not None and len(rows) >= 2:
                break
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "no 2 finished trials in 300 s"
            time.sleep(0.2)
        os.kill(first.pid, stop)  # the driver only
        code = first.wait(timeout=120)
    finally:
        stop_group(first)
        log.close()
    said = (tmp_path / "first.log").read_text()
    if stop == signal.SIGTERM:  # stopped as on Ctrl-C: saved, and told how to go on
        assert code == 130, said[-3000:]
        assert f"--storage {storage} --resume`" in said.splitlines()[-1]
    before = pd.read_parquet(folder / "trials.parquet")
    assert 2 <= len(before) < SAMPLES

    home = tmp_path / "clean-home"
    home.mkdir()
    resumed = subprocess.run(
        run_cli(*args, "--resume"),
        env={**cli_env, "HOME": str(home)} if stop == signal.SIGKILL else cli_env,
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = pd.read_parquet(folder / "trials.parquet").set_index("trial_id")
    assert len(after) == SAMPLES
    for row in before.itertuples():  # every trial finished before the kill is kept as it was
        kept = after.loc[row.trial_id]
        assert (kept["status"], kept["epochs_run"]) == (row.status, row.epochs_run)
        assert kept["best_val_loss"] == pytest.approx(row.best_val_loss)
        assert (folder / kept["checkpoint_path"]).is_file()

    epochs = pd.read_parquet(folder / "epochs.parquet")
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert len(epochs) == after["epochs_run"].sum()
    record = json.loads((folder / "sweep.json").read_text())
    assert len(record["resumes"]) == 1 and record["finished_at"] >= record["started_at"]
    storage_db = optuna.storages.RDBStorage(f"sqlite:///{folder / 'optuna.db'}")
    study = optuna.load_study(study_name="killed", storage=storage_db)
    told = {
        t.user_attrs.get("ray_trial_id")
        for t in study.trials
        if t.state != optuna.trial.TrialState.FAIL
    }
    assert told == set(after.index)
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    storage_db.engine.dispose()


def test_an_existing_name_is_never_overwritten(small_sweep, capsys):
    table = small_sweep / "trials.parquet"
    stamp = table.stat().st_mtime_ns
    code = cli.main(
        [
            "run",
            "--storage",
            str(small_sweep.parent),
            "--name",
            small_sweep.name,
            "--data",
            "mnist-5k",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "already exists" in err and "--resume" in err
    assert table.stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--resume"], "--name is required"),
        (["--resume", "--name", "x", "--samples", "3", "--seed", "1"], "drop --samples, --seed"),
        (["--resume", "--name", "never-ran"], "nothing to resume"),
    ],
)
def test_resume_errors(tmp_path, capsys, argv, message):
    code = cli.main(["run", "--storage", str(tmp_path / "results"), *argv])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
