"""Where a sweep runs: a local Ray started in this process on a loopback address, or a cluster.

Ray rewrites a node address of 127.0.0.1 or localhost to the machine's outward IP
(`resolve_ip_for_localhost` in ray/_private/services.py) and then talks over the network
interface; any other 127.x address is kept as given, so with `_node_ip_address="127.0.0.2"`
every connection of a local sweep stays on loopback. Ports still listen on all interfaces
(Ray binds them so), which is why Ray's token authentication stays on (Ray's default for a
cluster that `ray.init` starts itself).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from vae_core.errors import VaeSweepError

log = logging.getLogger(__name__)


@contextmanager
def ray_session(address: str | None, node_ip: str) -> Iterator[dict[str, float]]:
    """Connect to Ray for the duration of the block and yield the cluster's resources.

    Args:
        address: None starts a local Ray in this process on `node_ip` (dashboard off);
            "auto" or HOST:PORT joins a running cluster.
        node_ip: the local Ray's loopback address (not 127.0.0.1: see the module docstring).

    A Ray this process already joined (a test session's, a notebook's) is used as it is and
    left running.
    """
    if ray.is_initialized():
        yield ray.cluster_resources()
        return
    # Ray's usage statistics would be sent to Anyscale; a sweep sends nothing off the machine.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        if address is None:
            log.info("starting a local Ray on %s", node_ip)
            ray.init(
                _node_ip_address=node_ip, include_dashboard=False, logging_level=logging.WARNING
            )
        else:
            log.info("connecting to the Ray cluster at %s", address)
            ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = "start a local Ray" if address is None else f"connect to Ray at {address}"
        raise VaeSweepError(f"cannot {where}: {_first_line(err)}") from err
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
