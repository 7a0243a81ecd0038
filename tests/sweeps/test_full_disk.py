"""A results folder that runs out of room mid-sweep, on a real small filesystem (a tmpfs this
test mounts; skipped where it may not): the sweep stops at the first refused write in one
line that says how to go on, no table shrinks, and once there is room the resume loses
nothing."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

SAMPLES = 4


@pytest.fixture
def small_disk(tmp_path):
    """A 12 MB tmpfs at tmp_path/disk: room for a few tiny trials' checkpoints, not all."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def run(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vae_sweep", "run", *args, "--no-analyze"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_a_full_disk_stops_the_sweep_in_one_line_and_the_resume_loses_nothing(
    small_disk, make_space, cli_env
):
    space = make_space("full", samples=SAMPLES, epochs=2, train_limit=300)
    args = ["--storage", str(small_disk), "--name", "f"]
    full = run("--space", str(space), "--data", "mnist-5k", *args, env=cli_env)
    assert full.returncode == 2, full.stderr[-3000:]
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith("vae-sweep: error: ") and "No space left on device" in last, last
    assert f"vae-sweep run --name f --storage {small_disk} --resume" in last
    assert "Traceback" not in full.stderr, full.stderr[-3000:]
    folder = small_disk / "f"
    table = folder / "trials.parquet"
    before = pd.read_parquet(table) if table.exists() else None  # the old table, whole

    subprocess.run(["mount", "-o", "remount,size=400m", str(small_disk)], check=True)
    resumed = run(*args, "--resume", env=cli_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = pd.read_parquet(folder / "trials.parquet").set_index("trial_id")
    assert len(after) == SAMPLES
    if before is not None:
        for row in before.itertuples():
            kept = after.loc[row.trial_id]
            assert (kept["status"], kept["epochs_run"]) == (row.status, row.epochs_run)
