"""A --storage that cannot be written is one line at the start of `vae-sweep run`: before the
data is loaded or Ray is started, and with nothing written.

Each run asks for data that cannot be loaded (full MNIST from a folder that does not exist):
the storage's message, not the data's, shows the check came first. chmod does not stop root,
which CI may run the tests as, so the local cases are paths no one can create.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from results_folder.storage import check_writable
from tests.conftest import subprocess_env
from vae_core.errors import ResultsError

# Python, torch and Ray's imports take 2-3 s on a loaded 2-core machine; loading MNIST and
# starting Ray take 20 s or more there. The check itself takes milliseconds (CHECK_SECONDS).
RUN_SECONDS = 10
CHECK_SECONDS = 3
ERROR = "vae-sweep: error: cannot write results to the storage "


def refused_run(storage: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, float]:
    """`vae-sweep run` on `storage`, and the seconds it took to end."""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "vae_sweep", "run", "--storage", storage, "--name", "x"]
        + ["--samples", "1", "--data", "mnist", "--data-root", str(tmp_path / "no-mnist")],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    return proc, time.monotonic() - start


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR), proc.stderr
    return lines[0]


@pytest.mark.parametrize("where", ["proc", "under-a-file"])
def test_an_unwritable_local_storage_is_one_line_before_anything_starts(tmp_path, where):
    (tmp_path / "file").write_text("not a folder")
    storage, reason = {
        "proc": ("/proc/forbidden", "No such file or directory"),
        "under-a-file": (f"{tmp_path}/file/sub", f"{tmp_path}/file is a file, not a folder"),
    }[where]
    before = sorted(tmp_path.rglob("*"))
    proc, seconds = refused_run(storage, tmp_path)
    assert one_error_line(proc) == f"{ERROR}{storage}: {reason}"
    assert seconds < RUN_SECONDS
    assert sorted(tmp_path.rglob("*")) == before
    assert not Path(storage).exists()


def test_the_check_leaves_nothing_behind(tmp_path):
    # A folder that does not exist yet is checked in its nearest existing parent and not
    # created: a sweep refused later (a --resume with nothing to resume) leaves nothing.
    check_writable(str(tmp_path / "a" / "b"))
    (tmp_path / "kept").mkdir()
    check_writable(str(tmp_path / "kept"))
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["kept"]


@pytest.mark.parametrize("storage", ["/proc/forbidden", "/dev/null/sub"])
def test_the_check_is_quick_and_names_the_path(storage):
    start = time.monotonic()
    with pytest.raises(ResultsError, match=f"^cannot write results to the storage {storage}: "):
        check_writable(storage)
    assert time.monotonic() - start < CHECK_SECONDS


def test_a_missing_bucket_is_one_line(s3_env, tmp_path):
    bucket = f"vae-sweep-missing-{uuid.uuid4().hex[:8]}"
    storage = f"s3://{bucket}/runs"
    start = time.monotonic()
    with pytest.raises(ResultsError, match="NO_SUCH_BUCKET"):
        check_writable(storage)
    assert time.monotonic() - start < CHECK_SECONDS
    proc, seconds = refused_run(storage, tmp_path)
    line = one_error_line(proc)
    assert line.startswith(f"{ERROR}{storage}: ") and "bucket does not exist" in line, line
    assert "Request ID" not in line
    assert seconds < RUN_SECONDS
    assert bucket not in {b["Name"] for b in s3_env.client().list_buckets()["Buckets"]}


def test_refused_credentials_are_one_line(s3_env, s3_bucket, tmp_path):
    storage = f"{s3_bucket}/runs"
    with s3_env.refusing_credentials():
        start = time.monotonic()
        with pytest.raises(ResultsError, match="INVALID_ACCESS_KEY_ID"):
            check_writable(storage)
        assert time.monotonic() - start < CHECK_SECONDS
        proc, seconds = refused_run(storage, tmp_path)
    line = one_error_line(proc)
    assert "INVALID_ACCESS_KEY_ID" in line and "does not exist in our records" in line, line
    assert seconds < RUN_SECONDS
    assert s3_env.keys(s3_bucket) == []


def test_a_writable_bucket_passes_and_keeps_nothing(s3_env, s3_bucket):
    check_writable(f"{s3_bucket}/runs")
    assert s3_env.keys(s3_bucket) == []
