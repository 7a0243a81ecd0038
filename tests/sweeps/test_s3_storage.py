"""A sweep and its analysis on s3:// storage, against moto's S3 API on loopback (s3_server).

Both run as `vae-sweep` subprocesses, as a user runs them: the sweep's own Ray then starts
with the S3 environment, so its trial workers write their checkpoints to the same server.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import optuna
import pytest

from results_folder import storage
from results_folder.storage import PROBE_PREFIX
from tests.conftest import S3Server, subprocess_env, tiny_space
from vae_core.errors import ResultsError

SAMPLES, EPOCHS = 3, 2
NAME = "s3a"
SWEEP_FILES = ["epochs.parquet", "optuna.db", "sweep.json", "trials.parquet"]
ANALYSIS_FILES = ["best_trial.json", "report.html", "tsne.html", "tsne.parquet"]


def vae_sweep(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vae_sweep", *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def s3_sweep(s3_server: S3Server, tmp_path_factory) -> str:
    """The s3:// folder of a finished sweep (3 trials of up to 2 epochs on 300 images), run
    once for this module."""
    space = tiny_space(tmp_path_factory.mktemp("s3") / "tiny.yaml", samples=SAMPLES, epochs=EPOCHS)
    with s3_server.environment():
        runs = s3_server.new_bucket() + "/runs"
        proc = vae_sweep(
            "run",
            "--space",
            str(space),
            "--data",
            "mnist-5k",
            "--storage",
            runs,
            "--name",
            NAME,
            "--no-analyze",
            timeout=600,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return storage.join(runs, NAME)


def test_a_sweep_writes_its_folder_to_s3(s3_env, s3_sweep):
    folder = s3_sweep
    keys = s3_env.keys(folder)
    prefix = folder.removeprefix("s3://").partition("/")[2] + "/"
    assert [k for k in SWEEP_FILES if prefix + k not in keys] == [], keys
    runs = folder.rsplit("/", 1)[0]  # the --storage root, where the write check wrote
    assert not [k for k in s3_env.keys(runs) if PROBE_PREFIX in k]
    # Read back through the same filesystem layer the analysis uses.
    trials = storage.read_parquet(storage.join(folder, "trials.parquet"))
    epochs = storage.read_parquet(storage.join(folder, "epochs.parquet"))
    assert len(trials) == SAMPLES
    assert set(epochs["trial_id"]) == set(trials["trial_id"])
    assert epochs.groupby("trial_id")["epoch"].max().max() <= EPOCHS
    record = json.loads(storage.read_text(storage.join(folder, "sweep.json")))
    assert record["storage"] == runs and record["finished_at"]
    # The trials' workers (other processes) wrote their checkpoints to the bucket too; the
    # table names them relative to the folder.
    checkpoints = [prefix + path for path in trials["checkpoint_path"]]
    assert len(checkpoints) == SAMPLES and set(checkpoints) <= set(keys), (checkpoints, keys)
    with storage.local_copy(storage.join(folder, "optuna.db")) as db:
        study = optuna.load_study(study_name=NAME, storage=f"sqlite:///{db}")
        assert len(study.trials) == SAMPLES


def test_the_analysis_of_an_s3_sweep_writes_into_the_bucket(s3_env, s3_sweep):
    folder = s3_sweep
    before = set(s3_env.keys(folder))
    proc = vae_sweep("analyze", folder, "--iwae-k", "2", "--tsne-points", "200", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "best trial" in proc.stdout
    analysis = storage.join(folder, "analysis")
    prefix = analysis.removeprefix("s3://").partition("/")[2] + "/"
    assert s3_env.keys(analysis) == [prefix + name for name in ANALYSIS_FILES]
    saved = json.loads(storage.read_text(storage.join(analysis, "best_trial.json")))
    assert saved["tsne"]["points"] == 200
    # Nothing else in the sweep's folder changed hands: only analysis/ was added.
    assert {k for k in s3_env.keys(folder) if "/analysis/" not in k} == before


def test_a_lost_head_resumes_from_the_bucket_with_nothing_finished_lost(
    s3_bucket, make_space, tmp_path
):
    """`kill -9` of the driver, its home folder (caches, the staged optuna.db) gone with it,
    then --resume from the bucket on a clean home: every finished trial is kept, in the tables
    and in the study TPE sees, and the sweep ends with all its trials."""
    samples = 5
    space = make_space("lost", samples=samples, epochs=3, train_limit=300)
    runs, name = s3_bucket + "/runs", "lost"
    folder = storage.join(runs, name)
    args = ["--storage", runs, "--name", name, "--no-analyze"]
    first_home = tmp_path / "home"
    first_home.mkdir()
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115 - closed in finally
    first = subprocess.Popen(
        [sys.executable, "-m", "vae_sweep", "run", "--space", str(space), "--data", "mnist-5k"]
        + args,
        env={**subprocess_env(), "HOME": str(first_home)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not (2 <= finished(folder) < samples):
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no 2 finished trials in 300 s"
            time.sleep(0.5)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)  # its Ray too
        first.wait(timeout=30)
        log.close()
    shutil.rmtree(first_home)  # the machine is gone
    before = storage.read_parquet(storage.join(folder, "trials.parquet"))

    clean_home = tmp_path / "clean-home"
    clean_home.mkdir()
    resumed = subprocess.run(
        [sys.executable, "-m", "vae_sweep", "run", *args, "--resume"],
        capture_output=True,
        text=True,
        env={**subprocess_env(), "HOME": str(clean_home)},
        timeout=600,
        start_new_session=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = storage.read_parquet(storage.join(folder, "trials.parquet")).set_index("trial_id")
    assert len(after) == samples
    for row in before.itertuples():
        kept = after.loc[row.trial_id]
        assert (kept["status"], kept["epochs_run"]) == (row.status, row.epochs_run)
        assert kept["best_val_loss"] == pytest.approx(row.best_val_loss)
    with storage.local_copy(storage.join(folder, "optuna.db")) as db:
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
        told = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert set(told) == set(after.index)  # TPE saw every finished trial, before the loss too
    for row in before.itertuples():
        assert told[row.trial_id].user_attrs["status"] == row.status


def finished(folder: str) -> int:
    """Rows in the sweep's trials.parquet so far (0 before it is written)."""
    try:
        return len(storage.read_parquet(storage.join(folder, "trials.parquet")))
    except ResultsError:
        return 0
