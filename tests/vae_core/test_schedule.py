"""The learning-rate schedule: its formula, and that `train` follows it step by step, resumes
it exactly and records it in the checkpoint."""

import math

import pytest
import torch

from results_folder import load_checkpoint, save_checkpoint
from vae_core import ConfigError, TrainConfig, train
from vae_core.schedule import LrSchedule
from vae_core.train import steps_per_epoch

TINY = dict(
    data="mnist-5k", train_limit=300, batch_size=64, z_dim=4, fc_size=32, threads=1, device="cpu"
)
STEPS = steps_per_epoch(300, 64)  # 5: four full batches and one of 44


def test_constant_is_the_base_rate_at_every_step():
    schedule = LrSchedule("constant", 3e-3, total_steps=10)
    assert schedule.constant
    assert [schedule(s) for s in (0, 5, 9, 10)] == [3e-3] * 4


def test_cosine_falls_from_the_base_rate_to_zero():
    schedule = LrSchedule("cosine", 2e-3, total_steps=100)
    rates = [schedule(s) for s in range(101)]
    assert rates[0] == 2e-3 and rates[50] == pytest.approx(1e-3) and rates[100] == 0.0
    assert rates[25] == pytest.approx(1e-3 * (1 + math.cos(math.pi / 4)))
    assert all(a > b for a, b in zip(rates[:-1], rates[1:], strict=True))  # strictly falling
    assert schedule(150) == 0.0  # past the end: stays at 0


def test_an_unknown_schedule_is_refused():
    with pytest.raises(
        ConfigError, match="lr_schedule must be one of constant, cosine, but got 'linear'"
    ):
        TrainConfig(lr_schedule="linear")


def saved_rate(state) -> float:
    return state["optimizer"]["param_groups"][0]["lr"]


def run(sample, **overrides):
    states = []
    config = TrainConfig(**{**TINY, **overrides})
    result = train(config, lambda m, s: states.append(s), data=sample)
    return result, states


def test_cosine_training_sets_each_step_s_rate(sample):
    """The rate of the last step of each epoch is what the checkpoint holds."""
    _, states = run(sample, epochs=2, lr=1e-3, lr_schedule="cosine")
    schedule = LrSchedule("cosine", 1e-3, total_steps=2 * STEPS)
    assert saved_rate(states[0]) == schedule(STEPS - 1)
    assert saved_rate(states[1]) == schedule(2 * STEPS - 1)
    assert saved_rate(states[1]) < 0.03 * 1e-3  # near 0 by the end
    assert states[1]["config"]["lr_schedule"] == "cosine"
    _, constant = run(sample, epochs=2, lr=1e-3)
    assert saved_rate(constant[1]) == 1e-3
    assert constant[1]["history"][-1]["train_loss"] != states[1]["history"][-1]["train_loss"]


def test_cosine_resume_from_epoch_one_reproduces_the_three_epoch_run(sample, tmp_path):
    full, states = run(sample, epochs=3, lr=2e-3, lr_schedule="cosine", precision="fp32")
    path = save_checkpoint(states[0], tmp_path / "epoch1.pt")
    config = TrainConfig(**TINY, epochs=3, lr=2e-3, lr_schedule="cosine", precision="fp32")
    resumed = train(config, checkpoint=load_checkpoint(path), data=sample)
    assert [m["train_loss"] for m in resumed.history] == [m["train_loss"] for m in full.history]
    assert [m["val_loss"] for m in resumed.history] == [m["val_loss"] for m in full.history]
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
