"""`vae-sweep analyze` end to end, through a subprocess as a user runs it."""

import json
import subprocess
import sys


def vae_sweep(*args):
    return subprocess.run(
        [sys.executable, "-m", "vae_sweep", *args], capture_output=True, text=True, timeout=600
    )


def snapshot(folder):
    """Every file outside analysis/ with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and "analysis" not in p.parts
    }


def test_analyze_through_a_uri_writes_only_the_analysis_folder(sweep_copy):
    before = snapshot(sweep_copy)
    # A file:// URI goes through pyarrow's filesystem layer, as s3:// or gs:// would.
    proc = vae_sweep("analyze", sweep_copy.as_uri(), "--iwae-k", "2", "--tsne-points", "200")
    assert proc.returncode == 0, proc.stderr
    assert "best trial" in proc.stdout and "IWAE NLL" in proc.stdout
    out = sweep_copy / "analysis"
    assert sorted(p.name for p in out.iterdir()) == [
        "best_trial.json",
        "report.html",
        "tsne.html",
        "tsne.parquet",
    ]
    assert json.loads((out / "best_trial.json").read_text())["tsne"]["points"] == 200
    assert snapshot(sweep_copy) == before  # optuna.db included: it was read from a copy

    again = vae_sweep("analyze", str(sweep_copy), "--iwae-k", "1", "--tsne-points", "0")
    assert again.returncode == 0, again.stderr
    saved = json.loads((out / "best_trial.json").read_text())
    assert saved["test"]["iwae_k"] == 1 and saved["tsne"]["points"] == saved["tsne"]["of"]
    assert snapshot(sweep_copy) == before


def test_a_truncated_table_is_one_line_on_stderr(sweep_copy):
    path = sweep_copy / "epochs.parquet"
    path.write_bytes(path.read_bytes()[:100])
    proc = vae_sweep("analyze", str(sweep_copy))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.startswith("vae-sweep: error: ") and "epochs.parquet" in proc.stderr
    assert not (sweep_copy / "analysis").exists()


def test_help_lists_the_options():
    proc = vae_sweep("analyze", "--help")
    assert proc.returncode == 0
    for option in ("--metric", "--iwae-k", "--tsne-points", "--data-root", "--out"):
        assert option in proc.stdout
