"""Two real Ray nodes on loopback addresses with token auth: who gets in and who does not."""

from __future__ import annotations

import ipaddress
import json
import urllib.error
import urllib.request

import pytest
from ray.exceptions import AuthenticationError

pytestmark = pytest.mark.cluster

NODES_CODE = """
import json, ray
ray.init(address={address!r}, log_to_driver=False)
print(json.dumps([
    {{"ip": n["NodeManagerAddress"], "alive": n["Alive"], "resources": n["Resources"]}}
    for n in ray.nodes()
]))
"""
# Sees the worker's custom resource only if the driver joined the whole cluster.
JOB_ENTRYPOINT = 'python -c "import ray; ray.init(); print(ray.cluster_resources())"'


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback)


def test_both_nodes_join(cluster):
    proc = cluster.run_driver(NODES_CODE.format(address=cluster.gcs_address))
    assert proc.returncode == 0, proc.stderr[-2000:]
    nodes = {n["ip"]: n for n in json.loads(proc.stdout.strip().splitlines()[-1])}
    assert set(nodes) == {cluster.head_ip, cluster.worker_ip}
    assert all(n["alive"] for n in nodes.values())
    assert nodes[cluster.worker_ip]["resources"]["worker_node"] == 1
    assert "worker_node" not in nodes[cluster.head_ip]["resources"]


def test_job_with_token_succeeds(cluster):
    status, logs = cluster.wait_for_job(cluster.submit(JOB_ENTRYPOINT))
    assert status == "SUCCEEDED", logs[-2000:]
    assert "'worker_node': 1.0" in logs


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer not-the-token"}], ids=["no-token", "wrong-token"]
)
def test_job_client_without_the_token_is_refused(cluster, headers):
    # The SDK checks the server's version when it is built, so refusal comes right here.
    with pytest.raises(AuthenticationError):
        cluster.job_client(headers=headers).submit_job(entrypoint="echo should-not-run")


def test_job_server_answers_401_without_a_token(cluster):
    # Raw HTTP as well as the SDK: the SDK adds a token by itself whenever this process has
    # token mode on (a local `ray.init` earlier in the session turns it on).
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as refused:
        direct.open(f"{cluster.dashboard_url}/api/jobs/", timeout=10)
    assert refused.value.code == 401


@pytest.mark.parametrize(
    "auth_env",
    [{"RAY_AUTH_MODE": "disabled"}, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "wrong"}],
    ids=["auth-off", "wrong-token"],
)
def test_driver_without_the_token_is_refused(cluster, auth_env):
    # One connection attempt instead of Ray's default 20 (one a second).
    env = {**cluster.env, **auth_env, "RAY_gcs_server_port_wait_time_s": "1"}
    proc = cluster.run_driver(NODES_CODE.format(address=cluster.gcs_address), env=env)
    assert proc.returncode != 0
    assert "InvalidAuthToken" in proc.stderr


def test_cluster_traffic_stays_on_loopback(cluster):
    # Look while a job runs, so drivers and workers on both nodes hold connections too.
    job_id = cluster.submit('python -c "import ray, time; ray.init(); time.sleep(3)"')
    cluster.wait_until_running(job_id)
    peers = cluster.connections()
    status, logs = cluster.wait_for_job(job_id)
    assert status == "SUCCEEDED", logs[-2000:]
    assert peers, "found no connections: the check would pass vacuously"
    assert not {p for p in peers if not (is_loopback(p[0]) and is_loopback(p[1]))}
