"""Killing the worker node's raylet mid-sweep: the sweep finishes, its trials resume."""

from __future__ import annotations

import json
import os
import signal
import time

import pandas as pd
import pytest

pytestmark = pytest.mark.cluster

# The head notices the dead node after 5 failed health checks 1 s apart instead of 3 s
# apart. A dead raylet fails each check at once (connection refused); Ray's 10 s timeout
# per check stays, so a live node slowed by a busy machine is not declared dead.
FAST_FAILURE_DETECTION = {"RAY_health_check_period_ms": "1000"}
EPOCHS, SAMPLES = 3, 3
# No early stopping (grace period = budget), so every trial runs all its epochs and one is
# surely mid-way on the worker when the raylet dies.
SPACE = f"""\
description: three trials of three epochs, none stopped early (raylet-kill test)
samples: {SAMPLES}
params:
  z_dim: {{type: int, low: 2, high: 16, log: true}}
  fc_size: {{type: int, low: 64, high: 256}}
  lr: {{type: float, low: 5.0e-4, high: 2.0e-3, log: true}}
fixed:
  batch_size: 128
  epochs: {EPOCHS}
  train_limit: 4000
  precision: auto
asha:
  grace_period: {EPOCHS}
  reduction_factor: 2
"""
SHARED = "VAE_SWEEP_SHARED_STORAGE=1"  # see test_cluster_sweep.py


def results_lines(trial_dir) -> list[dict]:
    """Ray Tune's own per-result log of a trial (result.json: one JSON object per epoch)."""
    path = trial_dir / "result.json"
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def wait_for_trial_midway_on(node_ip: str, results, timeout: float = 480) -> str:
    """The id of a trial that reported (and checkpointed) an epoch on `node_ip` and has
    epochs left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for trial_dir in results.glob("*/") if results.exists() else []:
            lines = results_lines(trial_dir)
            if lines and lines[-1]["node_ip"] == node_ip and lines[-1]["epoch"] < EPOCHS:
                return trial_dir.name
        time.sleep(0.2)
    pytest.fail(f"no trial reached mid-way on {node_ip} in {timeout:.0f}s")


def test_sweep_survives_a_dead_worker_raylet(start_cluster):
    with start_cluster(FAST_FAILURE_DETECTION) as cluster:
        space, storage = cluster.root / "space.yaml", cluster.root / "results"
        space.write_text(SPACE)
        job_id = cluster.submit(
            f"{SHARED} vae-sweep run --address auto --gpus-per-trial 0 --space {space} "
            f"--data mnist-5k --storage {storage} --name kill --no-analyze"
        )
        victim = wait_for_trial_midway_on(cluster.worker_ip, storage / "kill")
        os.kill(cluster.raylet_pid(cluster.worker_ip), signal.SIGKILL)
        status, logs = cluster.wait_for_job(job_id)
        trials = pd.read_parquet(storage / "kill" / "trials.parquet")
        history = results_lines(storage / "kill" / victim)
    assert status == "SUCCEEDED", logs[-3000:]
    # No trial lost, none failed for good.
    assert len(trials) == SAMPLES, trials.to_string()
    assert set(trials["status"]) == {"completed"}, trials.to_string()
    # The victim went on from its last checkpoint on the head: epochs continue where they
    # stopped (no epoch twice), and Ray counts iterations anew from the restore.
    where = [(r["epoch"], r["node_ip"], r["iterations_since_restore"]) for r in history]
    moved = next((i for i, r in enumerate(history) if r["node_ip"] != cluster.worker_ip), 0)
    assert moved > 0 and history[0]["node_ip"] == cluster.worker_ip, where
    assert [r["epoch"] for r in history] == list(range(1, EPOCHS + 1)), where
    assert history[moved]["iterations_since_restore"] == 1
    assert history[moved]["node_ip"] == cluster.head_ip
