"""Session fixtures: one local Ray on a loopback address, one small finished sweep and a
writable copy of it.

Ray starts only when a test asks for it (`ray_local`, or `small_sweep` through it), on
127.0.0.2: Ray rewrites 127.0.0.1 to the machine's outward IP, so no test traffic may use it.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RAY_NODE_IP = "127.0.0.2"
SUBPROCESS_NODE_IP = "127.0.0.7"  # `vae-sweep run` subprocesses start their own Ray here
RAY_CPUS = 2  # the tests are sized for a 2-core machine, whatever this one has

# A sweep small enough for CI: 300 images of the 5k sample, 3 epochs; grace 1 and reduction 3
# (keep the top third at epoch 1) make ASHA stop trials.
TINY_SPACE = """\
# vae-sweep run --space tiny.yaml --data mnist-5k
description: test sweep
samples: {samples}
params:
  z_dim: {{type: int, low: 2, high: 16, log: true}}
  fc_size: {{type: int, low: 32, high: 400}}
  lr: {{type: float, low: {lr_low}, high: {lr_high}, log: true}}
fixed: {{epochs: {epochs}, train_limit: {train_limit}, batch_size: 64, lr_schedule: {lr_schedule}}}
asha: {{grace_period: 1, reduction_factor: 3}}
"""


def tiny_space(
    path: Path,
    *,
    samples: int = 6,
    epochs: int = 3,
    train_limit: int = 300,
    lr_low: float = 3e-4,
    lr_high: float = 3e-2,
    lr_schedule: str = "constant",
) -> Path:
    """Write a test search space to `path` and return it."""
    path.write_text(
        TINY_SPACE.format(
            samples=samples,
            epochs=epochs,
            train_limit=train_limit,
            lr_low=repr(lr_low),
            lr_high=repr(lr_high),
            lr_schedule=lr_schedule,
        )
    )
    return path


def subprocess_env() -> dict[str, str]:
    """Environment for a `vae-sweep` subprocess: its own loopback Ray and a throwaway token,
    so nothing is written to the user's ~/.ray and no traffic leaves loopback."""
    return {
        **os.environ,
        "VAE_SWEEP_NODE_IP": SUBPROCESS_NODE_IP,
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def run_probe(code: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python given this session's subprocess node IP as its argument;
    its output captured as text."""
    return subprocess.run(
        [sys.executable, "-c", code, SUBPROCESS_NODE_IP],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.fixture
def make_space(tmp_path):
    """make_space(name="tiny", **sizes) -> the path of a test search space in tmp_path."""
    return lambda name="tiny", **sizes: tiny_space(tmp_path / f"{name}.yaml", **sizes)


@pytest.fixture
def cli_env() -> dict[str, str]:
    return subprocess_env()


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray for the whole session (2 CPUs, the GPUs it finds) on 127.0.0.2, token auth
    on with a throwaway token. Yields the cluster's resources."""
    import ray

    # Ray reads these while it starts; put back afterwards so other tests' subprocesses
    # (e.g. a cluster test making its own token) do not inherit this session's token.
    env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    saved = {key: os.environ.get(key) for key in [*env, "RAY_AUTH_MODE"]}
    os.environ.update(env)
    try:
        ray.init(
            _node_ip_address=RAY_NODE_IP,
            include_dashboard=False,
            num_cpus=RAY_CPUS,
            logging_level=logging.WARNING,
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield ray.cluster_resources()
    ray.shutdown()


@pytest.fixture(scope="session")
def small_sweep(ray_local, tmp_path_factory) -> Path:
    """A finished sweep: 6 trials x up to 3 epochs on 300 training images of the 5k sample,
    with cosine learning-rate schedules, ASHA stopping some. Yields its results folder
    (trials.parquet, epochs.parquet, sweep.json, optuna.db and the trials' checkpoints).
    Read it; do not modify it."""
    from search_spaces import load_space
    from sweeps import SweepConfig, run_sweep

    root = tmp_path_factory.mktemp("small_sweep")
    space = load_space(tiny_space(root / "tiny.yaml", lr_schedule="cosine"))
    outcome = run_sweep(
        SweepConfig(
            name="small",
            space=space,
            storage=str(root / "results"),
            data="mnist-5k",
            command=("pytest", "small_sweep"),
        )
    )
    assert not outcome.interrupted
    return Path(outcome.results_dir)


@pytest.fixture
def sweep_copy(small_sweep, tmp_path) -> Path:
    """A writable copy of the small sweep without any analysis, for tests that change it."""
    copy = tmp_path / "results"
    shutil.copytree(small_sweep, copy, ignore=shutil.ignore_patterns("analysis"))
    return copy
