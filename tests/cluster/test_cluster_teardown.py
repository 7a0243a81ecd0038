"""The test cluster's teardown leaves no Ray process behind, even when the test fails."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster


class Boom(Exception):
    """Stands for a failing test inside the cluster's `with` block."""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_teardown_stops_every_process_when_the_test_fails(start_cluster):
    with pytest.raises(Boom), start_cluster() as cluster:
        # A running job adds the processes that are easiest to leak: the job's driver, its
        # shell and Ray workers on both nodes, which Ray puts in sessions of their own.
        cluster.wait_until_running(
            cluster.submit('python -c "import ray, time; ray.init(); time.sleep(600)"')
        )
        time.sleep(1)  # let the driver connect and its workers start
        seen, root = cluster.pids(), cluster.root
        raise Boom
    assert len(seen) > 15, f"only {len(seen)} processes found: the check would be weak"
    assert not [pid for pid in seen if alive(pid)]
    assert not root.exists()
