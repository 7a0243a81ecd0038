"""Where a sweep runs: a local Ray started in this process on a loopback address, or a cluster.

A local Ray runs, by preference, on 127.0.0.1 in Ray's single-machine mode: there Ray keeps
the node address 127.0.0.1, and every server it starts (GCS, raylet and object manager, the
workers, the dashboard and runtime-env agents) listens on 127.0.0.1 only; measured with Ray
2.60 and checked by tests/sweeps/test_local_ray.py. Outside that mode Ray rewrites 127.0.0.1
to the machine's outward address (`resolve_ip_for_localhost` in ray/_private/services.py)
and talks over the network.

Single-machine mode is Ray's own default on macOS and Windows (no firewall prompts there);
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` turns it on elsewhere. Ray reads that variable once,
when it is first imported (ENABLE_RAY_CLUSTER in ray/_private/ray_constants.py), so
`vae-sweep run` calls single_machine_mode() before it imports Ray, and only for a local sweep:
a driver in that mode could not find its own node on a cluster.

Any other 127.x address (`--node-ip 127.0.0.2`, what the tests use to run several Rays side
by side) is kept by Ray as given, so connections stay on loopback, but Ray 2.60 binds its
servers on every interface for such an address (only a localhost node address makes them bind
127.0.0.1). On macOS such an address exists only after `sudo ifconfig lo0 alias 127.0.0.2`;
where it cannot be bound the local Ray falls back to 127.0.0.1 (choose_node_ip).

Either way Ray turns token authentication on for a cluster that `ray.init` starts (it writes
~/.ray/auth_token if there is none, or uses RAY_AUTH_TOKEN): a client without the token is
refused.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sweeps.config import LOCAL_NODE_IP
from vae_core.errors import VaeSweepError, one_line

log = logging.getLogger(__name__)

SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's single-machine mode
LOOPBACK_ALIAS = "127.0.0.2"  # the next choice when 127.0.0.1 cannot be kept (see above)


def single_machine_mode() -> None:
    """Let a local Ray keep 127.0.0.1 and listen there only. Call before Ray is imported;
    afterwards it changes nothing (choose_node_ip then picks another loopback address).
    A value the user set is left alone."""
    os.environ.setdefault(SINGLE_MACHINE_ENV, "0")


def localhost_kept() -> bool:
    """True if this process's Ray keeps a node address of 127.0.0.1 (single-machine mode)."""
    # The flag Ray computed from SINGLE_MACHINE_ENV when it was imported; Ray 2.60 has no
    # public accessor for it.
    from ray._private import ray_constants

    return not ray_constants.ENABLE_RAY_CLUSTER


def can_bind(ip: str) -> bool:
    """True if this machine has the address `ip` (macOS has only 127.0.0.1 of 127/8)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((ip, 0))
        except OSError:
            return False
    return True


def choose_node_ip(
    preferred: str, *, localhost_ok: bool, bindable: Callable[[str], bool] = can_bind
) -> str:
    """The local Ray's address: `preferred` if it works here, else the first that does of
    127.0.0.1 (in single-machine mode) and LOOPBACK_ALIAS.

    Args:
        preferred: --node-ip, a loopback address (SweepConfig checked it).
        localhost_ok: whether Ray keeps 127.0.0.1 in this process (localhost_kept()).
        bindable: whether an address exists on this machine (can_bind).

    Raises:
        VaeSweepError: none of them works; the message names each and why.
    """
    candidates = [preferred] + [ip for ip in (LOCAL_NODE_IP, LOOPBACK_ALIAS) if ip != preferred]
    problems = []
    for ip in candidates:
        if ip == LOCAL_NODE_IP and not localhost_ok:
            problems.append(
                f"{ip}: Ray would replace it with the machine's network address (Ray was "
                f"imported before {SINGLE_MACHINE_ENV}=0 was set)"
            )
        elif not bindable(ip):
            problems.append(
                f"{ip}: not an address of this machine (on macOS: sudo ifconfig lo0 alias {ip})"
            )
        else:
            if ip != preferred:
                log.warning(
                    "the local Ray runs on %s instead of %s (%s)", ip, preferred, problems[0]
                )
            return ip
    raise VaeSweepError("no loopback address for the local Ray: " + "; ".join(problems))


@contextmanager
def ray_session(
    address: str | None, node_ip: str, *, worker_env: dict[str, str] | None = None
) -> Iterator[dict[str, float]]:
    """Connect to Ray for the duration of the block and yield the cluster's resources.

    Args:
        address: None starts a local Ray in this process on a loopback address (dashboard
            off): `node_ip`, or the fallback choose_node_ip picks; "auto" or HOST:PORT joins
            a running cluster.
        node_ip: the local Ray's preferred loopback address (see the module docstring).
        worker_env: environment variables for the local Ray's workers only (see environment).

    A Ray this process already joined (a test session's, a notebook's) is used as it is and
    left running.
    """
    import ray

    if worker_env and (address is not None or ray.is_initialized()):
        where = "a cluster" if address is not None else "a Ray this process has already joined"
        raise VaeSweepError(
            f"cannot give {', '.join(worker_env)} to the workers of {where}: only a local Ray "
            f"that vae-sweep starts passes them on"
        )
    if ray.is_initialized():
        yield ray.cluster_resources()
        return
    # Ray's usage statistics would be sent to Anyscale; a sweep sends nothing off the machine.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        if address is None:
            ip = choose_node_ip(node_ip, localhost_ok=localhost_kept())
            log.info("starting a local Ray on %s", ip)
            with environment(worker_env or {}):
                ray.init(
                    _node_ip_address=ip, include_dashboard=False, logging_level=logging.WARNING
                )
        else:
            log.info("connecting to the Ray cluster at %s", address)
            ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = "start a local Ray" if address is None else f"connect to Ray at {address}"
        raise VaeSweepError(f"cannot {where}: {one_line(err)}") from err
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()


@contextmanager
def environment(variables: dict[str, str]) -> Iterator[None]:
    """`variables` set in this process's environment inside the block, as they were after.

    ray.init starts the local Ray's raylet with a copy of this environment, and the raylet
    starts every worker with a copy of its own: so the workers get `variables`, and this
    process keeps none of them (a driver that became an MPS client would keep the sweep's MPS
    daemon from stopping: it waits for its clients).
    """
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
