"""A real two-node Ray cluster on loopback addresses, with token auth, for the cluster tests.

Head and worker are separate `ray start` nodes on 127.0.0.2 and 127.0.0.3. Not 127.0.0.1: Ray
rewrites that address to the machine's outward IP (`resolve_ip_for_localhost` in
ray/_private/services.py), so its traffic would leave loopback. Everything the cluster writes
lives in a temporary HOME and temporary Ray dirs; the user's ~/.ray is never read or written.

Teardown kills exactly the processes this fixture started: those carrying its marker variable
or holding files under its temporary root, and their descendants. Not by process group: Ray's
workers call setsid. Not `ray stop`: it stops every Ray process on the machine, a user's own
cluster included.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Loopback addresses Ray keeps as they are. Override to run beside another cluster test run on
# the same machine (both would otherwise share 127.0.0.2/.3; ports never clash).
HEAD_IP = os.environ.get("VAE_SWEEP_TEST_HEAD_IP", "127.0.0.2")
WORKER_IP = os.environ.get("VAE_SWEEP_TEST_WORKER_IP", "127.0.0.3")

# Every process of a test cluster carries this variable; its value names the cluster.
MARKER_VAR = "VAE_SWEEP_TEST_CLUSTER"
# 256 MiB per node: the sweep's data set is a few MB, and the default (30% of RAM) would
# reserve gigabytes of /dev/shm on a shared machine.
OBJECT_STORE_BYTES = 256 * 1024**2
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 30
JOB_TIMEOUT_S = 480  # generous: on a loaded 2-core machine one 4-trial job took over 240 s
JOB_ENDED = {"SUCCEEDED", "FAILED", "STOPPED"}  # JobStatus values
# Temporary roots are /tmp/vsc-<pytest pid>-<random>: short (not $TMPDIR), because Ray's unix
# sockets live below them (108-byte limit on Linux), and named after their owner to find orphans.
TMP_BASE = "/tmp"
ROOT_PREFIX = "vsc-"

# Inherited settings that would point the test cluster at the user's Ray instead of its own.
_SCRUBBED_ENV = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@dataclass
class LoopbackCluster:
    """Addresses, token and environment of a running two-node test cluster."""

    head_ip: str
    worker_ip: str
    gcs_address: str  # "ip:port", for `ray.init(address=...)` and `ray start --address`
    dashboard_url: str  # job server (Job Submission SDK), on the head's address only
    token: str
    env: dict[str, str]  # for any subprocess that should act as a client of this cluster
    root: Path
    start_s: float = 0.0  # seconds `ray start` head + worker took, for the timing notes

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def job_client(self, headers: dict[str, str] | None = None):
        """A JobSubmissionClient with the token (or with `headers` instead, to test refusal)."""
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(
            self.dashboard_url, headers=self.auth_headers if headers is None else headers
        )

    def submit(self, entrypoint: str, runtime_env: dict | None = None) -> str:
        """Submit a Ray job with the token; returns its id. `runtime_env` as `ray job submit
        --runtime-env-json` takes it: its env_vars reach the driver and every worker of the
        job, on both nodes."""
        return self.job_client().submit_job(entrypoint=entrypoint, runtime_env=runtime_env)

    def wait_for_job(self, job_id: str, timeout: float = JOB_TIMEOUT_S) -> tuple[str, str]:
        """Wait until the job ends (stopping it after `timeout`); returns (status, logs)."""
        client = self.job_client()
        deadline = time.monotonic() + timeout
        while (status := client.get_job_status(job_id).value) not in JOB_ENDED:
            if time.monotonic() > deadline:
                client.stop_job(job_id)
                pytest.fail(f"job {job_id} still {status} after {timeout:.0f}s")
            time.sleep(0.5)
        return status, client.get_job_logs(job_id)

    def wait_until_running(self, job_id: str, timeout: float = 60) -> None:
        client = self.job_client()
        deadline = time.monotonic() + timeout
        while (status := client.get_job_status(job_id).value) != "RUNNING":
            if status in JOB_ENDED or time.monotonic() > deadline:
                pytest.fail(
                    f"job {job_id} {status}, not running:\n{client.get_job_logs(job_id)[-2000:]}"
                )
            time.sleep(0.2)

    def run_driver(self, code: str, *, timeout: float = 120, env: dict | None = None):
        """Run `code` in a fresh Python that connects as a driver; returns CompletedProcess.

        A subprocess, not this process: `ray.init` fixes auth mode and node for the life of
        the process, and tests elsewhere in the session start their own local Ray.
        """
        return subprocess.run(
            [sys.executable, "-c", code],
            env=self.env if env is None else env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def pids(self) -> set[int]:
        """PIDs of every process of this cluster now."""
        return owned_pids(self.root)

    def raylet_pid(self, node_ip: str) -> int:
        """PID of the raylet of the node at `node_ip` (to kill it)."""
        for pid in self.pids():
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if argv[0].endswith(b"/raylet") and f"--node_ip_address={node_ip}".encode() in argv:
                    return pid
        raise LookupError(f"no raylet for {node_ip}")

    def start_worker(self, cpus: int = 1) -> None:
        """Start the worker node (for a cluster made with `with_worker=False`) and wait until
        the head reports it alive: a node joining a running cluster, as the autoscaler's do."""
        _start_worker(self.env, self.root, self.gcs_address, cpus=cpus)
        _wait_for_nodes(self.dashboard_url, self.token, {self.head_ip, self.worker_ip})

    def connections(self) -> set[tuple[str, str]]:
        """(local, remote) addresses of every TCP connection the cluster holds now."""
        return tcp_peers(self.pids())

    def listening(self) -> set[tuple[str, int]]:
        """(address, port) of every TCP socket the cluster listens on now."""
        return listening_addresses(self.pids())

    def alive_nodes(self) -> list[dict]:
        """State API records (node_id, node_ip, is_head_node, ...) of the alive nodes."""
        return alive_nodes(self.dashboard_url, self.token)


def free_port() -> int:
    """A TCP port nothing listens on, on any address, and not handed out before in this run.

    Bound on all interfaces rather than on the node's address because several Ray servers
    listen on 0.0.0.0, which clashes with a port already taken on any single address. The
    kernel may give a just-closed port again, and `ray start` refuses two of its servers on
    one port ("trying to use a port number ... used by other components": seen in a suite run
    where the head's GCS and dashboard were both given 57441).
    """
    while True:
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


_HANDED_OUT: set[int] = set()  # free_port's answers so far


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state letter) for every process, from /proc (Linux)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # exited while we looked
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        table[int(entry.name)] = (int(ppid), state)
    return table


def _is_marked(pid: int, needle: bytes, root: str) -> bool:
    """True if the process carries the marker variable or holds a file under `root` open.

    Both, because neither alone is enough: processes that rename themselves (ray::IDLE,
    ray-dashboard-*) overwrite the memory /proc/PID/environ shows, and the marker is what
    catches processes before they open their log files under the Ray temp dir.
    """
    try:
        if needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            return True
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(root):
                return True
    return False


def owned_pids(root: Path) -> set[int]:
    """Live processes of the test cluster whose files are under `root`, with all descendants."""
    needle = f"{MARKER_VAR}={root.name}".encode()
    table = _proc_table()
    live = {pid for pid, (_, state) in table.items() if state != "Z" and pid != os.getpid()}
    ours = {pid for pid in live if _is_marked(pid, needle, str(root) + os.sep)}
    # Children a dying parent has not yet handed its log files to (a job's shell, `sleep`).
    children: dict[int, list[int]] = {}
    for pid in live:
        children.setdefault(table[pid][0], []).append(pid)
    stack = list(ours)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in ours:
                ours.add(child)
                stack.append(child)
    return ours


def stop_owned(root: Path) -> None:
    """SIGKILL every process of the test cluster until none is left; raise if any survive.

    SIGKILL, not SIGTERM: measured here, gcs_server and raylet of Ray 2.60 were still running
    20 s after SIGTERM, and a test cluster has nothing to save. Repeated because a raylet can
    fork one more worker between the scan and its own death.
    """
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while pids := owned_pids(root):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Ray test processes survived SIGKILL: {sorted(pids)}")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _reap_orphans() -> None:
    """Stop clusters left by an earlier pytest that died before its teardown could run.

    Only roots named after a pytest process that no longer exists: a cluster of a test run
    going on beside this one is left alone.
    """
    for root in Path(TMP_BASE).glob(f"{ROOT_PREFIX}*"):
        owner = root.name[len(ROOT_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            stop_owned(root)
            shutil.rmtree(root, ignore_errors=True)


def _no_proxy() -> str:
    """NO_PROXY with the cluster's addresses first: HTTP to the job server must not go via a
    proxy (which would carry it off this machine)."""
    current = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
    return ",".join(filter(None, [HEAD_IP, WORKER_IP, current]))


def _cluster_env(home: Path, marker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env.update(
        HOME=str(home),
        RAY_AUTH_MODE="token",  # every node and client: `ray start` alone leaves auth off
        RAY_USAGE_STATS_ENABLED="0",
        # Job entrypoints (`python`, `vae-sweep`) must resolve to this interpreter's venv.
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        PYTHONUNBUFFERED="1",
        NO_PROXY=_no_proxy(),
        no_proxy=_no_proxy(),
    )
    env[MARKER_VAR] = marker
    return env


def _ray(args: list[str], env: dict[str, str], log: Path) -> None:
    """Run one `ray` CLI command to completion; on failure raise with its output."""
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    with log.open("a") as out:
        proc = subprocess.run(
            [ray_cli, *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=START_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"`ray {args[0]}` failed ({proc.returncode}):\n{tail}")


def _generate_token(env: dict[str, str]) -> str:
    # The documented user path: `ray get-auth-token --generate` writes $HOME/.ray/auth_token
    # (and prints the token, which stays out of the logs).
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    subprocess.run(
        [ray_cli, "get-auth-token", "--generate"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=START_TIMEOUT_S,
    )
    token_file = Path(env["HOME"], ".ray", "auth_token")
    token_file.chmod(0o600)
    return token_file.read_text().strip()


def _start_head(
    env: dict[str, str], root: Path, gcs_port: int, dash_port: int, cpus: int = 1
) -> None:
    _ray(
        [
            "start",
            "--head",
            f"--node-ip-address={HEAD_IP}",
            f"--port={gcs_port}",
            f"--dashboard-host={HEAD_IP}",
            f"--dashboard-port={dash_port}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",  # default 52365 is shared machine-wide
            "--min-worker-port=0",
            "--max-worker-port=0",  # random ports, not a fixed shared range
            f"--num-cpus={cpus}",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            f"--temp-dir={root / 'h'}",
            "--disable-usage-stats",
        ],
        env,
        root / "ray-start.log",
    )


def _start_worker(env: dict[str, str], root: Path, gcs_address: str, cpus: int = 1) -> None:
    _ray(
        [
            "start",
            f"--address={gcs_address}",
            f"--node-ip-address={WORKER_IP}",
            f"--num-cpus={cpus}",
            "--resources",
            json.dumps({"worker_node": 1}),
            f"--dashboard-agent-listen-port={free_port()}",
            "--min-worker-port=0",
            "--max-worker-port=0",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            f"--temp-dir={root / 'w'}",
            "--disable-usage-stats",
        ],
        env,
        root / "ray-start.log",
    )


def _alive_node_ips(dashboard_url: str, token: str) -> set[str]:
    """Node addresses the head reports alive (state API over HTTP, so no driver is needed)."""
    req = urllib.request.Request(
        f"{dashboard_url}/api/v0/nodes?limit=100",
        headers={"Authorization": f"Bearer {token}"},
    )
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    with direct.open(req, timeout=5) as resp:
        nodes = json.load(resp)["data"]["result"]["result"]
    return {n["node_ip"] for n in nodes if n["state"] == "ALIVE"}


def _wait_for_nodes(dashboard_url: str, token: str, want: set[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = _alive_node_ips(dashboard_url, token)
            if want <= last:
                return
        except OSError as exc:  # job server still starting
            last = exc
        time.sleep(0.5)
    raise RuntimeError(f"cluster not ready after {START_TIMEOUT_S}s; last answer: {last!r}")


@contextlib.contextmanager
def loopback_cluster(
    extra_env: dict[str, str] | None = None, *, head_cpus: int = 1, with_worker: bool = True
) -> Iterator[LoopbackCluster]:
    """Start head + worker with token auth; always stop them and delete their files.

    Args:
        extra_env: more environment for both nodes and the cluster's clients, e.g. Ray
            settings as RAY_<name> variables.
        head_cpus: the head's CPUs; 0 is cluster.yaml's head, which runs no trial.
        with_worker: False starts the head alone; `LoopbackCluster.start_worker` adds the
            worker later, as an autoscaler would.
    """
    _reap_orphans()
    root = Path(tempfile.mkdtemp(prefix=f"{ROOT_PREFIX}{os.getpid()}-", dir=TMP_BASE))
    env = {**_cluster_env(root / "home", root.name), **(extra_env or {})}
    (root / "home").mkdir()
    try:
        t0 = time.monotonic()
        token = _generate_token(env)
        gcs_port, dash_port = free_port(), free_port()
        _start_head(env, root, gcs_port, dash_port, cpus=head_cpus)
        gcs_address = f"{HEAD_IP}:{gcs_port}"
        if with_worker:
            _start_worker(env, root, gcs_address)
        dashboard_url = f"http://{HEAD_IP}:{dash_port}"
        _wait_for_nodes(dashboard_url, token, {HEAD_IP, WORKER_IP} if with_worker else {HEAD_IP})
        yield LoopbackCluster(
            head_ip=HEAD_IP,
            worker_ip=WORKER_IP,
            gcs_address=gcs_address,
            dashboard_url=dashboard_url,
            token=token,
            env=env,
            root=root,
            start_s=time.monotonic() - t0,
        )
    finally:
        try:
            stop_owned(root)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _hex_ip(field: str) -> str:
    """Address of a /proc/net/tcp{,6} entry ("0100007F" = 127.0.0.1; 32-bit words are
    little-endian)."""
    raw = bytes.fromhex(field)
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def tcp_peers(pids: set[int]) -> set[tuple[str, str]]:
    """(local, remote) addresses of the open or opening TCP connections of these processes."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
    peers = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():  # a kernel without IPv6
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            # 01 ESTABLISHED, 02 SYN_SENT: connections, not listening sockets.
            if cols[9] in inodes and cols[3] in ("01", "02"):
                peers.add((_hex_ip(cols[1].split(":")[0]), _hex_ip(cols[2].split(":")[0])))
    return peers


@pytest.fixture
def start_cluster():
    """The context manager itself, for tests that need a cluster of their own."""
    return loopback_cluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[LoopbackCluster]:
    """One two-node cluster shared by the tests that leave it intact (start-up ~12 s).

    The in-process job clients of the tests use `requests`, which reads NO_PROXY from this
    process's environment: set while the cluster runs.
    """
    with pytest.MonkeyPatch.context() as mp, loopback_cluster() as c:
        mp.setenv("NO_PROXY", c.env["NO_PROXY"])
        mp.setenv("no_proxy", c.env["no_proxy"])
        yield c


# --- Ray's own autoscaler with its fake multi-node provider --------------------------------
#
# The provider (ray/autoscaler/_private/fake_multi_node/node_provider.py) starts each worker
# as a `ray._private.node.Node` inside the head's autoscaler process ("monitor"), with no
# node_ip_address: the node takes `ray.util.get_node_ip_address()` there, which is the
# machine's outward address unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, when it is
# get_localhost_ip(), 127.0.0.1. So this cluster lives on 127.0.0.1 with that setting (which
# also keeps the head on 127.0.0.1 instead of rewriting it, see the module docstring), and
# every Ray server of the head and of the fake workers listens on 127.0.0.1 only.
#
# The provider section is example.yaml's, which Ray 2.60's wheel lacks. Without
# disable_node_updaters the autoscaler starts a NodeUpdater thread for each new node; its
# first step, provider.set_node_tags, raises in this provider ("Readonly node provider cannot
# be updated", in monitor.err), the thread ends with a non-zero exit code, and
# process_completed_updates removes the node as "launch failed" about a second after launch
# (measured: 9 workers in 35 s, every trial erred). Without use_node_id_as_ip the autoscaler
# keys its load metrics by the raylet's IP while the provider reports the node id as the IP,
# so it never sees the node's heartbeat or idleness.
AUTOSCALER_IP = "127.0.0.1"
FAKE_WORKER_TYPE = "ray.worker.cpu"
# The provider's node ids: FAKE_HEAD_NODE_ID's prefix, then the worker's number (00001, ...).
FAKE_NODE_ID_PREFIX = "f" * 51


def fake_multinode_config(
    gcs_address: str, *, max_workers: int = 2, worker_cpus: int = 1, idle_minutes: float = 0.1
) -> dict:
    """An autoscaling config for the fake provider: a head with 0 CPUs, one CPU worker type."""
    return {
        "cluster_name": "fake_multinode",
        "max_workers": max_workers,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": gcs_address,  # else the provider uses <outward IP>:6379
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            FAKE_WORKER_TYPE: {
                "resources": {"CPU": worker_cpus, "object_store_memory": OBJECT_STORE_BYTES},
                "node_config": {},
                "min_workers": 0,
                "max_workers": max_workers,
            },
        },
        "head_node_type": "ray.head.default",
        "auth": {},
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": idle_minutes,
        "docker": {},
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
    }


@contextlib.contextmanager
def fake_autoscaling_cluster(**config_kwargs) -> Iterator[LoopbackCluster]:
    """A 0-CPU head on 127.0.0.1 whose autoscaler starts fake workers (real raylets on
    127.0.0.1) through Ray's fake multi-node provider; always stopped and deleted.

    `config_kwargs` go to fake_multinode_config. The token is in RAY_AUTH_TOKEN of the head's
    environment, which the autoscaler, and so every fake worker it starts, inherits.
    `worker_ip` of the result is AUTOSCALER_IP: head and workers share it.
    """
    _reap_orphans()
    root = Path(tempfile.mkdtemp(prefix=f"{ROOT_PREFIX}{os.getpid()}-", dir=TMP_BASE))
    env = _cluster_env(root / "home", root.name)
    token = secrets.token_hex(32)
    env.update(
        RAY_AUTH_TOKEN=token,
        RAY_FAKE_CLUSTER="1",  # the provider refuses to start without it
        AUTOSCALER_UPDATE_INTERVAL_S="1",  # as ray.cluster_utils.AutoscalingCluster
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # fake workers on 127.0.0.1 (see above)
        NO_PROXY=AUTOSCALER_IP,
        no_proxy=AUTOSCALER_IP,
    )
    (root / "home").mkdir()
    try:
        t0 = time.monotonic()
        gcs_port, dash_port = free_port(), free_port()
        gcs_address = f"{AUTOSCALER_IP}:{gcs_port}"
        config = root / "autoscaler.yaml"
        config.write_text(json.dumps(fake_multinode_config(gcs_address, **config_kwargs)))
        _ray(
            [
                "start",
                "--head",
                f"--node-ip-address={AUTOSCALER_IP}",
                f"--port={gcs_port}",
                f"--dashboard-host={AUTOSCALER_IP}",
                f"--dashboard-port={dash_port}",
                f"--ray-client-server-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}",
                "--min-worker-port=0",
                "--max-worker-port=0",
                "--num-cpus=0",
                f"--object-store-memory={OBJECT_STORE_BYTES}",
                f"--temp-dir={root / 'h'}",
                "--disable-usage-stats",
                f"--autoscaling-config={config}",
            ],
            env,
            root / "ray-start.log",
        )
        dashboard_url = f"http://{AUTOSCALER_IP}:{dash_port}"
        _wait_for_nodes(dashboard_url, token, {AUTOSCALER_IP})
        yield LoopbackCluster(
            head_ip=AUTOSCALER_IP,
            worker_ip=AUTOSCALER_IP,
            gcs_address=gcs_address,
            dashboard_url=dashboard_url,
            token=token,
            env=env,
            root=root,
            start_s=time.monotonic() - t0,
        )
    finally:
        try:
            stop_owned(root)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def alive_nodes(dashboard_url: str, token: str) -> list[dict]:
    """The state API's records (node_id, node_ip, is_head_node, ...) of the alive nodes."""
    req = urllib.request.Request(
        f"{dashboard_url}/api/v0/nodes?limit=100",
        headers={"Authorization": f"Bearer {token}"},
    )
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    with direct.open(req, timeout=5) as resp:
        nodes = json.load(resp)["data"]["result"]["result"]
    return [n for n in nodes if n["state"] == "ALIVE"]


def listening_addresses(pids: set[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket these processes listen on."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[9] in inodes and cols[3] == "0A":  # 0A: LISTEN
                ip, port = cols[1].split(":")
                out.add((_hex_ip(ip), int(port, 16)))
    return out


@pytest.fixture
def start_fake_autoscaling_cluster():
    """fake_autoscaling_cluster itself, for tests that start one of their own."""
    return fake_autoscaling_cluster
