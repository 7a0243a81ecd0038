"""The command line's options: train's come from TrainConfig, sets of values are choices."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pandas as pd
import pytest

from vae_core.config import DATA_SOURCES, DEVICES, LR_SCHEDULES, PRECISIONS, TrainConfig
from vae_core.train import VAL_COLUMNS
from vae_sweep import cli
from vae_sweep.run import sweep_summary
from vae_sweep.train import config_from


def parse(*argv: str):
    return cli.build_parser().parse_args(list(argv))


def test_train_help_lists_every_config_field_and_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for field in dataclasses.fields(TrainConfig):
        assert "--" + field.name.replace("_", "-") in text, field.name
    for allowed in (DATA_SOURCES, DEVICES, PRECISIONS, LR_SCHEDULES):
        assert "{" + ",".join(allowed) + "}" in text
    assert "--no-cuda-graph" in text and "--no-compile" in text
    assert "--out" in text and "--force" in text


def test_train_defaults_are_train_config_s():
    assert config_from(parse("train")) == TrainConfig()
    args = parse("train")
    for field in dataclasses.fields(TrainConfig):
        assert getattr(args, field.name) == field.default, field.name
    assert args.out == "runs/train" and args.force is False


def test_train_options_reach_the_config():
    args = parse(
        "train",
        *("--z-dim", "4", "--lr", "0.01", "--train-limit", "500", "--threads", "2"),
        *("--precision", "fp32", "--compile", "--no-cuda-graph"),
    )
    config = config_from(args)
    assert (config.z_dim, config.lr, config.train_limit, config.threads) == (4, 0.01, 500, 2)
    assert config.precision == "fp32" and config.compile and not config.cuda_graph
    assert type(config.z_dim) is int and type(config.lr) is float


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--precision", "fp16"], "precision must be one of auto, fp32, bf16"),
        (["train", "--device", "tpu"], "device must be one of auto, cpu, cuda"),
        (["run", "--data", "svhn"], "data must be one of auto, mnist, mnist-5k"),
        (["analyze", "r", "--metric", "loss"], "metric must be one of " + ", ".join(VAL_COLUMNS)),
    ],
)
def test_a_value_outside_its_set_is_refused_while_parsing(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and f"but got {argv[-1]!r}" in err
    assert len(err.strip().splitlines()) == 1, err


def test_the_sweep_summary_names_the_best_trial_s_searched_parameters():
    trials = pd.DataFrame(
        {
            "trial_id": ["a", "b"],
            "status": ["completed", "early_stopped"],
            "best_val_loss": [120.0, 101.234],
            "best_epoch": [3, 2],
            "epochs_run": [3, 2],
            "checkpoint_path": ["/r/a/model.pt", "/r/b/model.pt"],
            "z_dim": [4, 12],
            "lr": [0.01, 0.0016384],
            "batch_size": [128, 128],  # not searched: not shown
        }
    )
    outcome = SimpleNamespace(
        trials=trials,
        samples=3,
        results_dir="/r",
        params=("z_dim", "lr"),
        best=lambda: trials.iloc[1],
    )
    assert sweep_summary(outcome).splitlines() == [
        "2/3 trials finished (1 completed, 1 early_stopped); results in /r",
        "best: trial b, val loss 101.23 nats at epoch 2 (z_dim=12 lr=0.00164); "
        "checkpoint /r/b/model.pt",
    ]
