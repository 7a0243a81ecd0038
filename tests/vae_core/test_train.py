import math

import pytest
import torch

from results_folder import load_checkpoint, save_checkpoint
from vae_core import CheckpointError, TrainConfig, train
from vae_core.train import training_diverged

TINY = dict(
    data="mnist-5k", train_limit=1000, batch_size=64, z_dim=8, fc_size=128, threads=1, device="cpu"
)


def run(sample, **overrides):
    reports = []
    config = TrainConfig(**{**TINY, **overrides})
    result = train(config, lambda m, s: reports.append((m, s)), data=sample)
    return result, reports


def comparable(metrics):
    """Metrics without the timings, which vary run to run."""
    return {k: v for k, v in metrics.items() if k not in ("epoch_seconds", "images_per_second")}


def test_two_epochs_lower_the_validation_loss_and_report_every_epoch(sample):
    result, reports = run(sample, epochs=2)
    assert [m["epoch"] for m, _ in reports] == [1, 2]
    first, second = reports[0][0], reports[1][0]
    assert second["val_loss"] < first["val_loss"]
    assert math.isclose(first["val_mean"], first["val_recon"] + first["val_kl"], rel_tol=1e-6)
    assert first["val_loss"] <= first["val_mean"] + 1e-9  # outliers capped, never raised
    assert 0 <= second["active_units"] <= 8 and first["images_per_second"] > 0
    assert not result.diverged and all(s is not None for _, s in reports)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_same_seed_same_numbers(sample, precision):
    a, _ = run(sample, epochs=1, precision=precision)
    b, _ = run(sample, epochs=1, precision=precision)
    assert comparable(a.history[0]) == comparable(b.history[0])
    c, _ = run(sample, epochs=1, precision=precision, seed=1)
    assert c.history[0]["val_loss"] != a.history[0]["val_loss"]


def test_resume_from_epoch_one_reproduces_the_two_epoch_run(sample, tmp_path):
    full, reports = run(sample, epochs=2, precision="fp32")
    path = save_checkpoint(reports[0][1], tmp_path / "epoch1.pt")
    resumed_reports = []
    resumed = train(
        TrainConfig(**TINY, epochs=2, precision="fp32"),
        lambda m, s: resumed_reports.append(m),
        load_checkpoint(path),
        data=sample,
    )
    assert [m["epoch"] for m in resumed_reports] == [2]
    assert comparable(resumed_reports[0]) == comparable(reports[1][0])
    assert [comparable(m) for m in resumed.history] == [comparable(m) for m in full.history]
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_a_gpu_checkpoint_resumes_on_the_cpu_reproducibly(sample):
    # A CUDA generator's state is 16 bytes (Philox seed and offset); a CPU one cannot take it.
    # The resumed run draws from a stream seeded by the run's seed and epoch instead.
    _, reports = run(sample, epochs=1, precision="fp32")
    state = dict(
        reports[0][1], rng=dict(reports[0][1]["rng"], noise=torch.zeros(16, dtype=torch.uint8))
    )
    config = TrainConfig(**TINY, epochs=2, precision="fp32")
    a = train(config, checkpoint=state, data=sample)
    b = train(config, checkpoint=state, data=sample)
    assert [m["epoch"] for m in a.history] == [1, 2]
    assert comparable(a.history[-1]) == comparable(b.history[-1])
    assert math.isfinite(a.history[-1]["val_loss"])
    damaged = dict(state, rng=dict(state["rng"], noise=torch.zeros(7, dtype=torch.uint8)))
    with pytest.raises(CheckpointError, match="checkpoint does not match the model"):
        train(config, checkpoint=damaged, data=sample)


@pytest.mark.parametrize(
    ("loss", "history", "diverged"),
    [
        (math.nan, [], True),
        (math.inf, [100.0], True),
        (400.0, [], False),  # a first epoch: compared with the coin-flip model's 543 nats
        (6000.0, [], True),
        (200.0, [300.0, 100.0], False),  # worse than the best, but within 10x
        (1001.0, [300.0, 100.0], True),
        (1e31, [100.0, math.nan], True),
    ],
)
def test_training_diverges_on_its_own_loss_only(loss, history, diverged):
    assert training_diverged(loss, [{"train_loss": v} for v in history]) is diverged


def test_checkpoint_of_another_architecture_is_refused(sample, tmp_path):
    _, reports = run(sample, epochs=1)
    with pytest.raises(CheckpointError, match="z_dim=8"):
        train(TrainConfig(**{**TINY, "z_dim": 4}, epochs=2), checkpoint=reports[0][1], data=sample)


def test_a_huge_learning_rate_is_reported_as_diverged_without_a_checkpoint(sample):
    # lr 10 blows the loss up to ~1e7 nats per image within an epoch, yet finite (the
    # log-variance is bounded): the training-loss rule, not a NaN, marks it diverged.
    result, reports = run(sample, epochs=3, lr=10.0, precision="fp32")
    assert result.diverged
    metrics, state = reports[-1]
    assert metrics["diverged"] and state is None
    assert math.isfinite(metrics["train_loss"]) and metrics["train_loss"] > 1e4
    assert math.isnan(metrics["val_loss"])  # a diverged epoch is not evaluated
    # It blows up in its first epoch: nothing at all was handed out to be saved.
    assert len(reports) == 1 and result.state is None


def test_a_run_that_diverges_later_hands_out_only_finite_states(sample):
    # One sound epoch, then the saved optimizer's learning rate raised to 10: the resumed run
    # diverges in its first epoch, after one state was handed out.
    _, reports = run(sample, epochs=1, precision="fp32")
    sound = reports[-1][1]
    sound["optimizer"]["param_groups"][0]["lr"] = 10.0
    config = TrainConfig(**{**TINY, "epochs": 3, "precision": "fp32"})
    result = train(config, lambda m, s: reports.append((m, s)), sound, data=sample)
    assert result.diverged and [m["epoch"] for m, _ in reports] == [1, 2]
    assert reports[-1][0]["diverged"] and reports[-1][1] is None
    assert all(math.isfinite(m["val_loss"]) for m, _ in reports[:-1])
    # Whatever was handed out to be saved before the divergence is finite.
    for _, saved in reports[:-1]:
        assert all(
            torch.isfinite(t).all() for t in saved["model"].values() if t.is_floating_point()
        )
    assert result.state is sound  # the last finite state is the one it resumed from


def test_bf16_stays_within_one_percent_of_fp32_after_five_epochs(sample):
    fp32, _ = run(sample, epochs=5, precision="fp32")
    bf16, _ = run(sample, epochs=5, precision="bf16")
    a, b = fp32.history[-1]["val_loss"], bf16.history[-1]["val_loss"]
    assert abs(b - a) / a < 0.01, (a, b)
