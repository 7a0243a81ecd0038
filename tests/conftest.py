"""Session fixtures: one local Ray on a loopback address, one small finished sweep and a
writable copy of it, and an S3 API on loopback.

Ray starts only when a test asks for it (`ray_local`, or `small_sweep` through it), on
127.0.0.2: Ray rewrites 127.0.0.1 to the machine's outward IP, so no Ray traffic may use it.
The S3 API (moto's server, `s3_server`) is a plain HTTP server on 127.0.0.1, which Ray never
sees as a node address.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
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


# --- an S3 API on loopback ------------------------------------------------------------------

S3_HOST = "127.0.0.1"
S3_REGION = "us-east-1"
# Environment variables that would send AWS requests elsewhere or sign them with other keys.
AWS_SCRUBBED = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
# No proxy between the tests and the server: a proxy would take the traffic off loopback.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class S3Server:
    """moto's S3 API at `endpoint`, and the environment that points AWS clients at it."""

    endpoint: str  # http://127.0.0.1:PORT

    @property
    def env(self) -> dict[str, str]:
        """What the AWS SDKs (boto3, and pyarrow's S3FileSystem, which reads
        AWS_ENDPOINT_URL) need to use this server and nothing else."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": S3_REGION,
            "AWS_REGION": S3_REGION,
            # Without a region or keys the SDKs would ask the EC2 metadata address.
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "NO_PROXY": S3_HOST,
            "no_proxy": S3_HOST,
        }

    @contextlib.contextmanager
    def environment(self) -> Iterator[None]:
        """This process's environment (and so its subprocesses') pointed at the server for
        the block, and put back afterwards."""
        with pytest.MonkeyPatch.context() as mp:
            for key in AWS_SCRUBBED:
                mp.delenv(key, raising=False)
            for key, value in self.env.items():
                mp.setenv(key, value)
            yield

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=S3_REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def new_bucket(self) -> str:
        """A fresh, empty bucket's URI: s3://NAME."""
        name = f"vae-sweep-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def keys(self, uri: str) -> list[str]:
        """Every object's key under `uri` (s3://BUCKET/PREFIX), sorted, but the empty "folder"
        markers pyarrow's create_dir writes (keys that end in "/")."""
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        keys = (o["Key"] for page in pages for o in page.get("Contents", []))
        return sorted(k for k in keys if not k.endswith("/"))

    @contextlib.contextmanager
    def refusing_credentials(self) -> Iterator[None]:
        """moto's IAM check on for the block: it then refuses the test keys, which its IAM
        never issued, as AWS refuses wrong ones."""
        previous = self._authenticate_after("0")
        try:
            yield
        finally:
            self._authenticate_after(previous)

    def _authenticate_after(self, requests: str) -> str:
        """Have moto check credentials after this many more requests ("inf": never); returns
        the previous setting."""
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=requests.encode(),
            headers={"Content-Type": "text/plain"},  # moto reads the raw body
            method="POST",
        )
        with _NO_PROXY.open(request, timeout=10) as response:
            return json.loads(response.read())["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """moto's S3 server, a real HTTP server in a subprocess on 127.0.0.1, for the session.

    It changes no environment: `s3_env` and `s3_bucket` point a test at it. A sweep on it
    runs in a `vae-sweep run` subprocess, which starts its own Ray with that environment;
    the session's Ray (`ray_local`) started without it, and its workers never see it.
    """
    port = free_port(S3_HOST)
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", S3_HOST, "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://{S3_HOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                pytest.fail(f"moto's server ended ({server.returncode}): {log.read_text()}")
            try:
                with _NO_PROXY.open(f"{endpoint}/moto-api/data.json", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"moto's server did not answer in 60 s: {log.read_text()}")
                time.sleep(0.2)
        yield S3Server(endpoint)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def s3_env(s3_server) -> Iterator[S3Server]:
    """The S3 server, with this test's environment pointed at it (put back afterwards):
    what the test runs, in process or as a subprocess (subprocess_env() copies it), uses it."""
    with s3_server.environment():
        yield s3_server


@pytest.fixture
def s3_bucket(s3_env) -> str:
    """A fresh bucket on the S3 server, as s3://NAME, with the environment of s3_env."""
    return s3_env.new_bucket()
