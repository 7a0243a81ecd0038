"""A sweep under Ray's own autoscaler: it starts the workers the sweep needs, then releases them.

The head has 0 CPUs and no worker runs when the sweep starts; the autoscaler (v1, on the
head) launches workers of its one type (1 CPU, at most 2) through Ray's fake multi-node
provider: real raylets on this machine, on 127.0.0.1 like the head (see
fake_autoscaling_cluster in conftest.py for why, and for the config Ray's wheel lacks).
Every trial runs on them, and once idle for idle_timeout_minutes (6 s) they are removed.

Head and fake workers share 127.0.0.1, so node_ip cannot tell them apart: the trials' node_id
does (the provider names its workers fff...f00001, fff...f00002, the head's id is random).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.conftest import tiny_space

pytestmark = pytest.mark.cluster

VAE_SWEEP = os.path.join(os.path.dirname(sys.executable), "vae-sweep")
NAME = "auto"
SAMPLES, MAX_WORKERS = 3, 2
IDLE_MINUTES = 0.1
SWEEP_TIMEOUT_S = 240  # measured ~25 s alone on the 2-core machine
RELEASE_TIMEOUT_S = 60  # idle 6 s + an update per second + the raylets' shutdown
FAKE_NODE_ID_PREFIX = "f" * 51  # conftest.FAKE_NODE_ID_PREFIX


def is_loopback(address: str) -> bool:
    """127.x.x.x, ::1 or IPv4-mapped ::ffff:127.x.x.x; not 0.0.0.0, ::, an outward address."""
    ip = ipaddress.ip_address(address)
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def test_autoscaler_starts_workers_for_the_sweep_and_releases_them(start_fake_autoscaling_cluster):
    with start_fake_autoscaling_cluster(max_workers=MAX_WORKERS, idle_minutes=IDLE_MINUTES) as c:
        head = c.alive_nodes()
        assert [n["is_head_node"] for n in head] == [True], head  # no worker yet
        head_id = head[0]["node_id"]

        space = tiny_space(c.root / "space.yaml", samples=SAMPLES, epochs=2, train_limit=300)
        storage, log = c.root / "results", c.root / "sweep.log"
        t0 = time.monotonic()
        with log.open("w") as out:
            sweep = subprocess.Popen(
                [VAE_SWEEP, "run", "--address", c.gcs_address, "--gpus-per-trial", "0",
                 "--space", str(space), "--data", "mnist-5k", "--storage", str(storage),
                 "--shared-storage", "--name", NAME, "--no-analyze"],
                env=c.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        # While it runs: the workers that join, and every socket the cluster listens on.
        workers: dict[str, str] = {}  # node_id -> node_ip
        listening: set[tuple[str, int]] = set()
        first_worker_s = None
        try:
            while sweep.poll() is None:
                if time.monotonic() - t0 > SWEEP_TIMEOUT_S:
                    pytest.fail(f"sweep still running after {SWEEP_TIMEOUT_S}s:\n"
                                f"{log.read_text()[-3000:]}")  # fmt: skip
                listening |= c.listening()
                for n in c.alive_nodes():
                    if not n["is_head_node"]:
                        workers[n["node_id"]] = n["node_ip"]
                        first_worker_s = first_worker_s or time.monotonic() - t0
                time.sleep(1)
        finally:
            if sweep.poll() is None:
                sweep.kill()
                sweep.wait()
        sweep_s = time.monotonic() - t0
        output = log.read_text()
        assert sweep.returncode == 0, output[-3000:]

        # Idle, the workers go: the head alone is left, removed by the autoscaler as idle.
        t1 = time.monotonic()
        while len(alive := c.alive_nodes()) > 1:
            listening |= c.listening()
            if time.monotonic() - t1 > RELEASE_TIMEOUT_S:
                pytest.fail(f"workers still alive {RELEASE_TIMEOUT_S}s after the sweep: {alive}")
            time.sleep(1)
        release_s = time.monotonic() - t1
        assert [n["node_id"] for n in alive] == [head_id], alive
        monitor = (c.root / "h" / "session_latest" / "logs" / "monitor.log").read_text()
        trials = pd.read_parquet(storage / NAME / "trials.parquet")

    print(
        f"\nhead up {c.start_s:.1f}s; first worker {first_worker_s or -1:.1f}s into the sweep; "
        f"sweep {sweep_s:.1f}s on {len(workers)} worker(s); all released {release_s:.1f}s later"
    )
    # The autoscaler launched the workers (the provider's ids), at most max_workers of them,
    # on loopback, and no launch failed.
    assert 1 <= len(workers) <= MAX_WORKERS, workers
    assert all(i.startswith(FAKE_NODE_ID_PREFIX) for i in workers), workers
    assert set(workers.values()) == {c.worker_ip}, workers
    assert "launch failed" not in monitor
    assert "Removing" in monitor and "(idle)" in monitor, monitor[-3000:]
    # Every trial finished, each on a fake worker, none on the head.
    assert len(trials) == SAMPLES, trials.to_string()
    assert set(trials["status"]) <= {"completed", "early_stopped"}, trials.to_string()
    assert set(trials["node_id"]) <= set(workers), (trials.to_string(), workers)
    assert head_id not in set(trials["node_id"])
    assert set(trials["node_ip"]) == {c.worker_ip}, trials.to_string()
    # Nothing of the cluster, head or fake worker, listened beyond loopback (0.0.0.0, ::,
    # the machine's outward address).
    assert listening, "no listening socket seen"
    assert not {a for a in listening if not is_loopback(a[0])}, sorted(listening)
