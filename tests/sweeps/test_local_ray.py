"""The local Ray: which loopback address it takes, what it listens on, and who it lets in."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from sweeps.local_ray import LOOPBACK_ALIAS, can_bind, choose_node_ip
from tests.conftest import SUBPROCESS_NODE_IP, run_probe, subprocess_env
from vae_core.errors import VaeSweepError

MISSING_IP = "127.0.0.9"  # the address the fallback test makes unavailable, as macOS's lo0 is


def test_the_preferred_address_is_kept_where_it_works():
    assert choose_node_ip("127.0.0.7", localhost_ok=True, bindable=lambda ip: True) == "127.0.0.7"
    assert choose_node_ip("127.0.0.1", localhost_ok=True, bindable=lambda ip: True) == "127.0.0.1"


@pytest.mark.parametrize(
    ("preferred", "localhost_ok", "missing", "chosen"),
    [
        # macOS: only 127.0.0.1 exists on lo0; single-machine mode keeps it.
        (MISSING_IP, True, {MISSING_IP, LOOPBACK_ALIAS}, "127.0.0.1"),
        # Ray imported before single-machine mode (a notebook): the next loopback address.
        ("127.0.0.1", False, set(), LOOPBACK_ALIAS),
    ],
)
def test_an_unavailable_address_falls_back(caplog, preferred, localhost_ok, missing, chosen):
    ip = choose_node_ip(preferred, localhost_ok=localhost_ok, bindable=lambda ip: ip not in missing)
    assert ip == chosen
    assert f"runs on {chosen} instead of {preferred}" in caplog.text


def test_no_usable_address_is_one_error_naming_each():
    with pytest.raises(VaeSweepError) as err:
        choose_node_ip(MISSING_IP, localhost_ok=False, bindable=lambda ip: False)
    message = str(err.value)
    assert MISSING_IP in message and "127.0.0.1" in message and LOOPBACK_ALIAS in message
    assert "ifconfig lo0 alias" in message


def test_can_bind_tells_the_machine_s_addresses():
    assert can_bind("127.0.0.1")
    assert not can_bind("192.0.2.1")  # TEST-NET-1: never an address of this machine


# --- a real local sweep, its preferred address made unavailable --------------------------------

# `vae-sweep run` in a process whose sockets cannot bind MISSING_IP: what a Mac without the
# lo0 alias does. Ray's own servers run in child processes and are not affected.
FORCED = textwrap.dedent(
    f"""
    import errno, socket, sys
    real_bind = socket.socket.bind
    def bind(self, address):
        if isinstance(address, tuple) and address[0] == {MISSING_IP!r}:
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        return real_bind(self, address)
    socket.socket.bind = bind
    from vae_sweep.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)
# A client that knows the sweep's GCS address but not its token.
TOKENLESS = "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False)"


def _hex_ip(field: str) -> str:
    raw = bytes.fromhex(field)
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def _tree(root: int) -> set[int]:
    """`root` and its descendants (Ray's workers call setsid, but stay children)."""
    parent = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(entry.path, "stat").read_text()
                parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, grew = {root}, True
    while grew:
        new = {pid for pid, ppid in parent.items() if ppid in tree} - tree
        tree |= new
        grew = bool(new)
    return tree


def listening(pids: set[int]) -> set[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP socket these processes hold."""
    owner = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        owner[link[8:-1]] = name
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if Path(table).exists():
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[9] in owner and cols[3] == "0A":  # 0A: LISTEN
                    ip, port = cols[1].split(":")
                    out.add((owner[cols[9]], _hex_ip(ip), int(port, 16)))
    return out


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback)


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads sockets from /proc (Linux)")
def test_a_local_sweep_falls_back_listens_on_loopback_only_and_wants_the_token(
    tmp_path, make_space, cli_env
):
    space = make_space(samples=2, epochs=1)
    argv = ["run", "--space", str(space), "--data", "mnist-5k", "--no-analyze"]
    argv += ["--storage", str(tmp_path / "results"), "--name", "fallback", "--node-ip", MISSING_IP]
    sweep = subprocess.Popen(
        [sys.executable, "-c", FORCED, *argv],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[tuple[str, str, int]] = set()
    refused = None
    try:
        # Watch every socket the sweep's processes listen on, for as long as it runs.
        while sweep.poll() is None:
            seen |= listening(_tree(sweep.pid))
            gcs = sorted(port for name, _, port in seen if name == "gcs_server")
            if gcs and refused is None:
                # Its own single-machine mode, so that Ray keeps 127.0.0.1 for this client too.
                env = {k: v for k, v in cli_env.items() if k != "RAY_AUTH_TOKEN"}
                env.update(RAY_AUTH_MODE="disabled", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
                env["RAY_gcs_server_port_wait_time_s"] = "1"  # one try, not 20
                refused = subprocess.run(
                    [sys.executable, "-c", TOKENLESS, f"127.0.0.1:{gcs[0]}"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
            time.sleep(0.2)
        out, err = sweep.communicate(timeout=60)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.communicate()
    assert sweep.returncode == 0, err[-3000:]
    assert f"the local Ray runs on 127.0.0.1 instead of {MISSING_IP}" in err
    db = tmp_path / "results" / "fallback" / "optuna.db"
    assert f"watch it: optuna-dashboard sqlite:///{db}" in err  # printed at the start
    trials = pd.read_parquet(tmp_path / "results" / "fallback" / "trials.parquet")
    assert len(trials) == 2 and set(trials["node_ip"]) == {"127.0.0.1"}, trials.to_string()
    # Every Ray server was seen (the sockets test cannot pass on an empty list), and each
    # listened on loopback only.
    names = {name for name, _, _ in seen}
    assert {"gcs_server", "raylet"} <= names, seen
    assert [s for s in seen if not is_loopback(s[1])] == [], seen
    # Token authentication stayed on: a client without the token is refused.
    assert refused is not None and refused.returncode != 0
    assert "InvalidAuthToken" in refused.stderr, refused.stderr[-2000:]


# --- a local Ray whatever `ray start` left on the machine ---------------------------------------

# Starts the sweep's local Ray as `vae-sweep run` does and prints its GCS address.
LOCAL_SESSION = textwrap.dedent(
    """
    import sys
    from sweeps.local_ray import single_machine_mode
    single_machine_mode()
    import ray
    from sweeps.local_ray import ray_session
    with ray_session(None, sys.argv[1]):
        print(ray.get_runtime_context().gcs_address)
    """
)
DEAD_IP = "127.0.0.5"  # no Ray runs here


def test_a_local_sweep_starts_its_own_ray_where_ray_start_left_an_address():
    # `ray start --head` writes its address to <Ray's temp dir>/ray_current_cluster, which
    # ray.init() without an address joins (and retries for minutes when that Ray is gone).
    # RAY_TMPDIR gives this test a temp dir of its own, so the machine's /tmp/ray (every Ray
    # here reads its ray_current_cluster) is left alone. Short: Ray's sockets live below it.
    tmp = Path(tempfile.mkdtemp(prefix="vsr-", dir="/tmp"))
    try:
        (tmp / "ray").mkdir()
        with socket.socket() as s:
            s.bind((DEAD_IP, 0))
            dead = f"{DEAD_IP}:{s.getsockname()[1]}"  # nothing listens once it is closed
        (tmp / "ray" / "ray_current_cluster").write_text(dead)
        env = {k: v for k, v in subprocess_env().items() if k != "RAY_ADDRESS"}
        env["RAY_TMPDIR"] = str(tmp)
        proc = run_probe(LOCAL_SESSION, env, timeout=180)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().startswith(f"{SUBPROCESS_NODE_IP}:"), proc.stdout
    assert dead not in proc.stderr
