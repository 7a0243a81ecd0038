"""A sweep started on a head with no CPUs (cluster.yaml's shape) uses the worker that joins.

The head alone has 0 CPUs and 0 GPUs, as on AWS before the autoscaler starts a GPU worker.
The sweep starts there, waits, and once a 2-CPU worker joins runs its trials on it, two at a
time: concurrency follows the nodes that join instead of being fixed at the start.
"""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

pytestmark = pytest.mark.cluster

SAMPLES, EPOCHS, WORKER_CPUS = 4, 2, 2
# No early stopping (grace period = budget) and 2,000 images: each trial runs for seconds,
# long enough that two running at once overlap in time.
SPACE = f"""\
description: four trials of two epochs, none stopped early (growing-cluster test)
samples: {SAMPLES}
params:
  z_dim: {{type: int, low: 2, high: 16, log: true}}
  fc_size: {{type: int, low: 64, high: 256}}
  lr: {{type: float, low: 5.0e-4, high: 2.0e-3, log: true}}
fixed: {{batch_size: 128, epochs: {EPOCHS}, train_limit: 2000}}
asha: {{grace_period: {EPOCHS}, reduction_factor: 2}}
"""
SHARED = "VAE_SWEEP_SHARED_STORAGE=1"  # see test_cluster_sweep.py


def running_intervals(results) -> list[tuple[float, float]]:
    """(start, end) wall times within which each trial surely ran, from Ray Tune's
    result.json of its epochs.

    Ray's `timestamp` is whole seconds (rounded down), so the first epoch's timestamp less its
    duration is up to 1 s before the trial's start: 1 s is added. The last timestamp is at
    or before its end. So a trial that starts on the CPU another has just freed never counts
    as overlapping it, while two trials running side by side (seconds each) do.
    """
    out = []
    for path in results.glob("*/result.json"):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        first, last = lines[0], lines[-1]
        out.append((first["timestamp"] - first["time_this_iter_s"] + 1, last["timestamp"]))
    return out


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals that overlap at one moment."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = now = 0
    for _, step in events:  # at equal times an end (-1) sorts first: touching is not overlap
        now += step
        best = max(best, now)
    return best


def wait_for_log(cluster, job_id: str, text: str, timeout: float = 120) -> str:
    client = cluster.job_client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = client.get_job_logs(job_id)
        if text in logs:
            return logs
        if client.get_job_status(job_id).value in {"SUCCEEDED", "FAILED", "STOPPED"}:
            break
        time.sleep(0.5)
    pytest.fail(f"job {job_id} never logged {text!r}:\n{client.get_job_logs(job_id)[-3000:]}")


def test_sweep_on_a_cpu_less_head_grows_onto_a_joining_worker(start_cluster):
    with start_cluster(head_cpus=0, with_worker=False) as cluster:
        space, storage = cluster.root / "space.yaml", cluster.root / "results"
        space.write_text(SPACE)
        job_id = cluster.submit(
            f"{SHARED} vae-sweep run --address auto --gpus-per-trial 0 --space {space} "
            f"--data mnist-5k --storage {storage} --name grow --no-analyze"
        )
        # The sweep has started, with no limit taken from the empty head, yet nothing can
        # run: no trial has reported.
        logs = wait_for_log(cluster, job_id, "sweep grow:")
        assert "4 trials, as many as the cluster's nodes hold at a time" in logs, logs[-3000:]
        time.sleep(3)
        assert not list((storage / "grow").glob("*/result.json"))
        cluster.start_worker(cpus=WORKER_CPUS)
        status, logs = cluster.wait_for_job(job_id)
        trials = pd.read_parquet(storage / "grow" / "trials.parquet")
        record = json.loads((storage / "grow" / "sweep.json").read_text())
        intervals = running_intervals(storage / "grow")
    assert status == "SUCCEEDED", logs[-3000:]
    assert len(trials) == SAMPLES and set(trials["status"]) == {"completed"}, trials.to_string()
    assert set(trials["node_ip"]) == {cluster.worker_ip}, trials.to_string()
    # No limit frozen at the start (the head had room for 0 trials): the worker's 2 CPUs
    # ran 2 trials at once, never more.
    assert record["search"]["max_concurrent"] is None
    # The nodes share their GPUs as they are set up; these CPU trials shared none.
    assert record["resources"]["sharing"] == "node"
    assert record["resources"]["sharing_by_node"] == {}
    assert len(intervals) == SAMPLES
    assert most_at_once(intervals) == WORKER_CPUS, intervals
