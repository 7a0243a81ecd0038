"""`ray job stop` of a sweep on the two-node cluster, storage in a bucket only, then `--resume`
as a new job: nothing that had finished is lost.

The nodes share nothing but the bucket (moto's S3 server on loopback): no --shared-storage.
The AWS settings reach the job's driver and its trial workers on both nodes as the job's
runtime environment, as `ray job submit --runtime-env-json` passes them.
"""

from __future__ import annotations

import time

import optuna
import pandas as pd
import pytest

from results_folder import storage
from sweeps.config import SHARED_STORAGE_ENV
from tests.conftest import S3_HOST
from vae_core.errors import ResultsError

pytestmark = pytest.mark.cluster

NAME = "job-stop"
SAMPLES = 4
# As test_cluster_sweep.py's: 2 epochs of the 5k sample, one trial per node at a time.
SWEEP = (
    f"vae-sweep run --address auto --gpus-per-trial 0 --space quick --samples {SAMPLES} "
    f"--epochs 2 --data mnist-5k --name {NAME} --no-analyze"
)
RESUME = f"vae-sweep run --address auto --name {NAME} --no-analyze --resume"
STOP_AT = 2  # finished trials in the bucket's trials.parquet when the job is stopped
KEPT = ["status", "epochs_run", "best_val_loss"]


def finished(folder: str) -> pd.DataFrame | None:
    """The sweep's trials.parquet in the bucket (None before it is written)."""
    try:
        return storage.read_parquet(storage.join(folder, "trials.parquet"))
    except ResultsError:
        return None


def wait_for_finished(cluster, job_id: str, folder: str, timeout: float = 300) -> pd.DataFrame:
    """trials.parquet once it shows STOP_AT finished trials (the job still running)."""
    client = cluster.job_client()
    deadline = time.monotonic() + timeout
    while True:
        rows = finished(folder)
        if rows is not None and len(rows) >= STOP_AT:
            assert len(rows) < SAMPLES, f"all trials finished before the stop:\n{rows}"
            return rows
        status = client.get_job_status(job_id).value
        if status != "RUNNING" or time.monotonic() > deadline:
            pytest.fail(
                f"job {status}, {0 if rows is None else len(rows)} trials finished:\n"
                f"{client.get_job_logs(job_id)[-3000:]}"
            )
        time.sleep(0.5)


def assert_kept(earlier: pd.DataFrame, later: pd.DataFrame, when: str) -> None:
    """Every trial of `earlier` is in `later` as it was."""
    earlier, later = earlier.set_index("trial_id"), later.set_index("trial_id")
    missing = sorted(set(earlier.index) - set(later.index))
    assert not missing, f"{when}: trials {missing} lost:\n{earlier[KEPT]}\n{later[KEPT]}"
    for trial_id, row in earlier.iterrows():
        kept = later.loc[trial_id]
        assert (kept["status"], kept["epochs_run"]) == (row["status"], row["epochs_run"]), when
        assert kept["best_val_loss"] == pytest.approx(row["best_val_loss"], nan_ok=True), when


def test_a_stopped_job_resumes_from_the_bucket_with_nothing_finished_lost(cluster, s3_server):
    t0 = time.monotonic()
    runs = s3_server.new_bucket() + "/runs"
    folder = storage.join(runs, NAME)
    # The job's NO_PROXY keeps the cluster's addresses and adds the S3 server's.
    no_proxy = ",".join([S3_HOST, cluster.env["NO_PROXY"]])
    runtime_env = {
        "env_vars": {
            **s3_server.env,
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
            SHARED_STORAGE_ENV: "",  # not declared shared, whatever this machine sets
        }
    }
    with s3_server.environment(), pytest.MonkeyPatch.context() as mp:
        # This process reads the bucket and talks to the job server: neither via a proxy.
        mp.setenv("NO_PROXY", no_proxy)
        mp.setenv("no_proxy", no_proxy)

        first = cluster.submit(f"{SWEEP} --storage {runs}", runtime_env=runtime_env)
        cluster.wait_until_running(first)
        seen = wait_for_finished(cluster, first, folder)
        t_stop = time.monotonic()
        cluster.job_client().stop_job(first)  # what `ray job stop` calls
        status, logs = cluster.wait_for_job(first)
        t_stopped = time.monotonic()
        assert status == "STOPPED", logs[-3000:]
        graceful = f"--storage {runs} --resume`" in logs  # Tune saved before SIGKILL
        before = finished(folder)
        assert before is not None and len(before) < SAMPLES, before

        second = cluster.submit(f"{RESUME} --storage {runs}", runtime_env=runtime_env)
        status, logs = cluster.wait_for_job(second)
        t_resumed = time.monotonic()
        assert status == "SUCCEEDED", logs[-3000:]
        after = finished(folder)
        with storage.local_copy(storage.join(folder, "optuna.db")) as db:
            study = optuna.load_study(study_name=NAME, storage=f"sqlite:///{db}")
            trials = [t for t in study.trials if t.state.is_finished()]
        told = {t.user_attrs.get("ray_trial_id"): t for t in trials}

    print(
        f"\njob stop: {len(seen)} finished at the stop, {len(before)} after it "
        f"({'saved on SIGTERM' if graceful else 'killed before saving'}); "
        f"first job {t_stop - t0:.0f}s, stop {t_stopped - t_stop:.1f}s, "
        f"resume {t_resumed - t_stopped:.0f}s"
    )
    assert after is not None and len(after) == SAMPLES, after
    assert_kept(seen, before, "the stop")
    assert_kept(before, after, "the resume")
    # Trials ran on both nodes: each node's workers had the bucket's settings.
    assert set(after["node_ip"]) == {cluster.head_ip, cluster.worker_ip}, after.to_string()
    # Optuna was told of every trial in the table, with the status the table gives it.
    assert set(told) == set(after["trial_id"]), (sorted(told), after["trial_id"].tolist())
    for row in after.itertuples():
        assert told[row.trial_id].user_attrs["status"] == row.status, row.trial_id
