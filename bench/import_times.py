"""What a trial's worker pays to import its code, on this machine: each module in a fresh process.

A sweep's trial worker imports Ray Tune, torch and (at the first optimiser step) torch._dynamo
before its first epoch. On the lent GPU machines these imports took ~2.7x as long as on the
2-core CPU machine (`import torch._dynamo` 3.5 s against 1.3 s). This says why, as far as a
script can: the kernel (a gVisor sandbox reports 4.4.0, and serves every file system call
itself), whether Python may write bytecode, and whether each module's compiled bytecode is
cached; then it times each import twice, in two fresh processes one after the other (the
second with the first's bytecode and the page cache warm). On an H200 machine (2026-11-26,
Firecracker) the answer was the bytecode: none was cached and PYTHONDONTWRITEBYTECODE was set,
so each process compiled torch, Ray Tune and torch._dynamo again (BENCHMARKS.md).

    python bench/import_times.py
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import time

MODULES = ("torch", "ray.tune", "torch._dynamo")
# Each import after what the worker has imported by then (a Ray worker runs with ray imported).
BEFORE = {"ray.tune": "import ray; ", "torch._dynamo": "import torch; "}


def import_seconds(module: str) -> float:
    """Seconds to import `module` in a fresh interpreter, after what BEFORE says."""
    code = (
        f"import time; {BEFORE.get(module, '')}t = time.perf_counter(); import {module}; "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return float(out.split()[-1])


def bytecode_cached(module: str) -> str:
    """Whether the module's own file has its compiled bytecode beside it, and may get it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return "not a source module"
    cached = importlib.util.cache_from_source(spec.origin)
    folder = os.path.dirname(spec.origin)
    return (
        f"{'cached' if os.path.exists(cached) else 'NOT cached'}, "
        f"folder {'writable' if os.access(folder, os.W_OK) else 'read-only'} ({folder})"
    )


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print(
        f"kernel {platform.release()}; Python {platform.python_version()} at {sys.executable}; "
        f"{os.cpu_count()} CPUs; writes bytecode: {not sys.dont_write_bytecode}"
        + (f"; PYTHONPYCACHEPREFIX={sys.pycache_prefix}" if sys.pycache_prefix else "")
    )
    for module in MODULES:
        print(f"{module}: {bytecode_cached(module)}")
    t0 = time.perf_counter()
    for module in MODULES:
        first, second = import_seconds(module), import_seconds(module)
        print(f"import {module:<13} {first:6.2f} s, again {second:6.2f} s")
    print(f"({time.perf_counter() - t0:.1f} s in all)")


if __name__ == "__main__":
    main()
