"""Whether the packages every trial's worker imports have compiled bytecode on this machine.

An image built with `pip install --no-compile` that also sets PYTHONDONTWRITEBYTECODE=1 has
none and never writes it: then each of Ray's workers compiles torch and Ray Tune from source as
it starts, ~5 s per worker on an H200 machine (BENCHMARKS.md).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

log = logging.getLogger(__name__)

WORKER_PACKAGES = ("torch", "ray")  # the bulk of what a worker imports


def uncompiled(names: tuple[str, ...] = WORKER_PACKAGES) -> list[str]:
    """The packages among `names` whose `__init__` has no cached bytecode here (a missing
    package counts as compiled: there is nothing to compile)."""
    missing = []
    for name in names:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        if not (origin and origin.endswith(".py")):
            continue
        # Where Python keeps the bytecode (PYTHONPYCACHEPREFIX included).
        if not os.path.exists(importlib.util.cache_from_source(origin)):
            missing.append(name)
    return missing


def warn_if_uncompiled(names: tuple[str, ...] = WORKER_PACKAGES) -> None:
    """Log, in one line, how to compile what every worker would otherwise compile itself.
    Call after this process imported them: where Python may write bytecode, it has by then."""
    missing = uncompiled(names)
    if not missing:
        return
    folders = sorted(
        {os.path.dirname(os.path.dirname(importlib.util.find_spec(n).origin)) for n in missing}
    )
    log.warning(
        "%s %s no compiled bytecode here%s: each of Ray's worker processes compiles %s again "
        "as it starts (seconds per worker); compile once with: %s -m compileall -q %s",
        " and ".join(missing),
        "has" if len(missing) == 1 else "have",
        " (PYTHONDONTWRITEBYTECODE is set)" if sys.dont_write_bytecode else "",
        "it" if len(missing) == 1 else "them",
        sys.executable,
        " ".join(folders),
    )
