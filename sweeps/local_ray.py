"""Where a sweep runs: a local Ray started in this process on a loopback address, or a cluster.

A local Ray runs on 127.0.0.1 in Ray's single-machine mode, where every server it starts
listens on 127.0.0.1 only; outside it Ray rewrites 127.0.0.1 to the machine's outward address.
Ray reads the mode's variable when it is first imported, so `vae-sweep run` calls
single_machine_mode() before it imports Ray. Another 127.x address is kept as given, but Ray
then listens on every interface. What listens where, as tested: docs/cluster.md, "A local Ray".
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sweeps.config import LOCAL_NODE_IP, RAY_ADDRESS_ENV
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
            off): `node_ip`, or the fallback choose_node_ip picks, whatever RAY_ADDRESS or a
            `ray start` on this machine says; "auto" or HOST:PORT joins a running cluster.
        node_ip: the local Ray's preferred loopback address (see the module docstring).
        worker_env: environment variables for the local Ray's workers only, not this
            process (a driver that became an MPS client would keep the sweep's MPS daemon
            from stopping: it waits for its clients). They go in the job's runtime
            environment, where a later sweep in the same Ray finds them.

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
            ray.init(
                # "local": a new Ray, where None would join the one RAY_ADDRESS names or the
                # last `ray start --head` here left in /tmp/ray/ray_current_cluster (and hang
                # if that one is dead).
                address="local",
                _node_ip_address=ip,
                include_dashboard=False,
                logging_level=logging.WARNING,
                runtime_env={"env_vars": worker_env} if worker_env else None,
            )
        else:
            if address == os.environ.get(RAY_ADDRESS_ENV):
                log.info(
                    "joining the Ray cluster at %s (%s is set; unset it for a local Ray)",
                    address,
                    RAY_ADDRESS_ENV,
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
