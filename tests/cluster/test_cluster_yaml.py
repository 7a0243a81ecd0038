"""cluster.yaml and cluster.local.yaml pass Ray's own validation and keep the cluster locked.

The check is the one `ray up` runs before it starts anything: `prepare_config` merges the
provider's defaults, then `validate_config` checks the result against ray-schema.json. Neither
needs cloud credentials.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CLUSTER_FILES = sorted(REPO.glob("cluster*.yaml"))


def validate(path: Path) -> dict:
    """Ray's validation of a cluster file; returns the config `ray up` would use."""
    config = prepare_config(yaml.safe_load(path.read_text()))
    validate_config(config)
    return config


def test_the_shipped_cluster_files_are_checked():
    assert [p.name for p in CLUSTER_FILES] == ["cluster.local.yaml", "cluster.yaml"]


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_cluster_file_passes_ray_validation(path):
    validate(path)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("max_workers: 4", "max_worker: 4"),  # top level: the first occurrence
        ("    min_workers: 0", "    min_worker: 0"),  # inside a node type
        ("head_node_type: head", "head_node_type: [head]"),  # wrong type
    ],
    ids=["top-level-typo", "node-type-typo", "wrong-type"],
)
def test_a_broken_copy_fails_validation(tmp_path, old, new):
    text = (REPO / "cluster.yaml").read_text()
    assert old in text
    broken = tmp_path / "cluster.yaml"
    broken.write_text(text.replace(old, new, 1))
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_every_node_starts_with_token_auth(path):
    config = validate(path)
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    ray_starts = [c for c in starts if "ray start" in c]
    assert len(ray_starts) == 2
    assert all("RAY_AUTH_MODE=token ray start" in c for c in ray_starts)
    # The token travels from the laptop to every node; no token text sits in the file.
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_dashboard_stays_on_the_head_loopback(path):
    config = validate(path)
    head_start = next(c for c in config["head_start_ray_commands"] if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in head_start


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_nodes_install_the_clone_that_ray_up_copies(path):
    config = validate(path)
    # `ray up` runs from the clone's root and copies it, less .git and what .gitignore names
    # (.venv, results), to every node; the nodes install that copy, nothing from a network
    # ref that might not exist.
    assert config["file_mounts"]["~/vae-sweep"] == "."
    assert config["rsync_filter"] == [".gitignore"]
    assert "**/.git" in config["rsync_exclude"]
    setup = " ".join(config["setup_commands"])
    assert '"$HOME/vae-sweep[cluster]"' in setup
    assert "github.com" not in setup and "tar.gz" not in setup
    # The laptop's Ray and the cluster's must match for job submission.
    assert f'"ray[default]=={ray.__version__}"' in setup
    ignored = (REPO / ".gitignore").read_text().split()
    assert {".venv/", "results/"} <= set(ignored)


def test_aws_cluster_shape():
    config = validate(REPO / "cluster.yaml")
    nodes = config["available_node_types"]
    assert config["provider"]["type"] == "aws"
    assert nodes[config["head_node_type"]]["resources"] == {"CPU": 0}  # no trials on the head
    gpu = nodes["gpu_worker"]
    assert gpu["min_workers"] == 0 < gpu["max_workers"] <= config["max_workers"]
    assert config["docker"]["worker_image"].startswith(f"rayproject/ray:{ray.__version__}-")


# Stands in for NVIDIA's nvidia-cuda-mps-control on a GPU worker: `-d` starts "the daemon"
# once (a marker file), and refuses a second as NVIDIA's does.
FAKE_CONTROL = """#!/bin/sh
if [ -e "$MPS_MARKER" ]; then echo "An instance of this daemon is already running"; exit 1; fi
touch "$MPS_MARKER"
"""


def test_gpu_workers_start_mps_before_ray_and_start_ray_whatever_it_says(tmp_path):
    config = validate(REPO / "cluster.yaml")
    starts = config["worker_start_ray_commands"]
    mps = [c for c in starts if "nvidia-cuda-mps-control -d" in c]
    assert len(mps) == 1
    assert starts.index(mps[0]) < next(i for i, c in enumerate(starts) if "ray start" in c)
    assert not any("mps" in c for c in config["head_start_ray_commands"])  # the head has no GPU
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-cuda-mps-control").write_text(FAKE_CONTROL)
    (bin_dir / "nvidia-cuda-mps-control").chmod(0o755)
    marker = tmp_path / "started"

    def run(path: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PATH": path, "MPS_MARKER": str(marker)}
        return subprocess.run(["bash", "-c", mps[0]], env=env, capture_output=True, text=True)

    first = run(f"{bin_dir}:{os.environ['PATH']}")
    assert first.returncode == 0 and marker.exists() and "no new" not in first.stdout
    again = run(f"{bin_dir}:{os.environ['PATH']}")  # `ray up` again: it already runs
    assert again.returncode == 0 and "already running" in again.stdout
    assert "vae-sweep: no new NVIDIA MPS daemon on this node" in again.stdout
    missing = run("/usr/bin:/bin")  # an image without NVIDIA's driver tools
    assert missing.returncode == 0 and "no new NVIDIA MPS daemon" in missing.stdout
