"""Search space files: every shipped one loads, every kind of bad one fails with one clear error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from search_spaces import load_space, parse_space, shipped_spaces
from search_spaces.space import SHIPPED_DIR
from vae_core.errors import ConfigError
from vae_sweep import cli

SHIPPED = sorted(SHIPPED_DIR.rglob("*.yaml"))
POST = {"z_dim": 10, "fc_size": 400, "lr": 1e-3}

GOOD = """\
params:
  z_dim: {type: int, low: 2, high: 64, log: true}
  lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
  batch_size: {type: choice, values: [64, 128]}
fixed: {epochs: 3}
"""
# (name, file text, what the one error message must name besides the file)
BAD = [
    (
        "unknown_param",
        "params:\n  dropout: {type: float, low: 0.1, high: 0.5}\n",
        ["params.dropout", "unknown parameter"],
    ),
    ("unknown_key", GOOD + "schedule: fifo\n", ["schedule", "unknown key"]),
    (
        "unknown_param_key",
        "params:\n  z_dim: {type: int, low: 2, high: 8, step: 2}\n",
        ["params.z_dim.step", "unknown key"],
    ),
    (
        "inverted",
        "params:\n  fc_size: {type: int, low: 1024, high: 64}\n",
        ["params.fc_size", "inverted"],
    ),
    (
        "empty_range",
        "params:\n  fc_size: {type: int, low: 64, high: 64}\n",
        ["params.fc_size", "empty"],
    ),
    (
        "log_zero",
        "params:\n  lr: {type: float, low: 0.0, high: 0.1, log: true}\n",
        ["params.lr", "log range needs low > 0"],
    ),
    (
        "wrong_type",
        "params:\n  z_dim: {type: int, low: two, high: 64}\n",
        ["params.z_dim.low", "must be an integer"],
    ),
    (
        "yaml_float_string",
        "params:\n  lr: {type: float, low: 1e-4, high: 1.0e-2}\n",
        ["params.lr.low", "write 1.0e-4"],
    ),
    (
        "float_for_int",
        "params:\n  z_dim: {type: float, low: 2.0, high: 64.0}\n",
        ["params.z_dim.type", "must be int or choice"],
    ),
    (
        "bad_fixed",
        GOOD.replace("epochs: 3", "epochs: 0, precision: fp16"),
        ["fixed.epochs", "fixed.precision"],
    ),
    (
        "bad_schedule",
        GOOD.replace("epochs: 3", "epochs: 3, lr_schedule: linear"),
        ["fixed.lr_schedule", "must be one of constant, cosine, but got 'linear'"],
    ),
    (
        "searched_schedule",
        GOOD.replace("params:\n", "params:\n  lr_schedule: {type: choice, values: [cosine]}\n"),
        ["params.lr_schedule", "unknown parameter"],
    ),
    (
        "searched_and_fixed",
        GOOD.replace("epochs: 3", "epochs: 3, z_dim: 8"),
        ["fixed.z_dim", "either searched or fixed"],
    ),
    (
        "batch_of_one_fixed",
        GOOD.replace("  batch_size: {type: choice, values: [64, 128]}\n", "").replace(
            "epochs: 3", "epochs: 3, batch_size: 1"
        ),
        ["fixed.batch_size", "batch_size must be at least 2 (BatchNorm needs 2 images", "got 1"],
    ),
    (
        "batch_of_one_searched",
        GOOD.replace("values: [64, 128]", "values: [1, 64]"),
        ["params.batch_size.values[0]", "batch_size must be at least 2", "got 1"],
    ),
    (
        "batch_range_from_one",
        GOOD.replace("{type: choice, values: [64, 128]}", "{type: int, low: 1, high: 256}"),
        ["params.batch_size.low", "batch_size must be at least 2", "got 1"],
    ),
    (
        "grace_over_budget",
        GOOD + "asha: {grace_period: 5}\n",
        ["asha.grace_period", "must not exceed"],
    ),
    ("not_yaml", "params: [z_dim\n  lr: {", ["not valid YAML", "line"]),
    ("empty_file", "", ["must be a mapping"]),
    ("not_a_mapping", "- z_dim\n- lr\n", ["must be a mapping"]),
    ("no_params", "fixed: {epochs: 3}\n", ["params", "non-empty mapping"]),
]


def test_every_shipped_space_loads_and_starts_with_its_command():
    assert [p.stem for p in SHIPPED] == shipped_spaces() == ["default", "quick"]
    for path in SHIPPED:
        space = load_space(path)
        assert space.name == path.stem and space.params
        first = path.read_text().splitlines()[0]
        assert first == f"# vae-sweep run --space {path.stem}", path
        assert space.contains(POST), f"the post's config must lie inside {path.name}"
        assert space.grace_period <= space.epochs


def test_default_space_is_the_issues():
    space = load_space("default")
    params = {p.name: p for p in space.params}
    assert set(params) == {"z_dim", "fc_size", "lr"}
    assert (
        params["z_dim"].type,
        params["z_dim"].low,
        params["z_dim"].high,
        params["z_dim"].log,
    ) == ("int", 2, 64, True)
    assert (params["fc_size"].low, params["fc_size"].high) == (64, 1024)
    assert (params["lr"].type, params["lr"].low, params["lr"].high, params["lr"].log) == (
        "float",
        1e-4,
        1e-2,
        True,
    )
    assert {"batch_size", "epochs", "precision"} <= set(space.fixed)
    assert space.fixed["lr_schedule"] == "cosine"  # bench/lr_schedule.py: better at 20 epochs


def test_a_good_file_loads_with_its_types(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(GOOD)
    space = load_space(path)
    assert space.name == "mine" and space.param_names == ("z_dim", "lr", "batch_size")
    assert space.fixed == {"epochs": 3, "precision": "auto"}  # batch_size is searched
    assert space.params[1].low == pytest.approx(1e-4) and isinstance(space.params[1].low, float)
    assert space.params[2].values == (64, 128)
    assert space.contains({"z_dim": 10, "lr": 1e-3, "batch_size": 128})
    assert not space.contains({"z_dim": 10, "lr": 1e-3, "batch_size": 32})


def test_a_fixed_learning_rate_schedule_loads(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(GOOD.replace("epochs: 3", "epochs: 3, lr_schedule: cosine"))
    assert load_space(path).fixed == {"epochs": 3, "lr_schedule": "cosine", "precision": "auto"}


@pytest.mark.parametrize(("name", "text", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_file_gives_one_clear_error(tmp_path, name, text, expected):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_space(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    for part in expected:
        assert part in message


def test_every_problem_is_listed_at_once(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text(
        "params:\n  fc_size: {type: int, low: 9, high: 1}\n"
        "  lr: {type: float, low: 0, high: 1, log: true}\nfixed: {colour: red}\n"
    )
    message = str(pytest.raises(ConfigError, load_space, path).value)
    for key in ("params.fc_size", "params.lr", "fixed.colour"):
        assert key in message


def test_unknown_name_lists_the_shipped_ones():
    message = str(pytest.raises(ConfigError, load_space, "nonexistent").value)
    assert "default" in message and "quick" in message


def test_parse_space_round_trips_to_dict():
    space = load_space("quick")
    raw = {k: v for k, v in space.to_dict().items() if k not in ("name", "path")}
    assert parse_space(raw, name="quick", path=space.path) == space


@pytest.mark.parametrize(("name", "text", "expected"), BAD, ids=[b[0] for b in BAD])
def test_run_with_a_bad_space_creates_no_results(tmp_path, capsys, name, text, expected):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    storage = tmp_path / "results"
    code = cli.main(["run", "--space", str(path), "--storage", str(storage), "--name", "x"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("vae-sweep: error:") and "\n" not in err and str(path) in err
    assert not storage.exists()


def test_cli_reports_a_bad_space_as_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD[3][1])
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "vae_sweep",
            "run",
            "--space",
            str(path),
            "--storage",
            str(tmp_path / "results"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "params.fc_size" in lines[0] and "inverted" in lines[0]
    assert not (tmp_path / "results").exists()


def test_spaces_command_lists_the_shipped_spaces():
    run = subprocess.run(
        [sys.executable, "-m", "vae_sweep", "spaces"], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    for name in shipped_spaces():
        assert f"{name}:" in run.stdout
    for param in ("z_dim", "fc_size", "lr"):
        assert param in run.stdout
    assert Path(SHIPPED_DIR / "quick.yaml").as_posix() in run.stdout
