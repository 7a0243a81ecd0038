"""The CUDA-graph training step (skipped without CUDA, see conftest.py)."""

import math

import pytest
import torch

from results_folder import load_checkpoint, save_checkpoint
from vae_core import TrainConfig, train
from vae_core.model import ConvVAE
from vae_core.schedule import LrSchedule, set_lr
from vae_core.step import GraphStep, make_optimizer, make_step

# 1,000 images at batch 128: 7 full batches (replayed) and a short one of 104 (eager).
SMALL = dict(data="mnist-5k", device="cuda", train_limit=1000, batch_size=128, precision="fp32")


@pytest.fixture(scope="module")
def sample():
    from vae_core import load_mnist

    return load_mnist("mnist-5k")


def comparable(metrics):
    return {k: v for k, v in metrics.items() if k not in ("epoch_seconds", "images_per_second")}


def test_capture_leaves_the_state_it_was_given(sample):
    torch.manual_seed(0)
    model = ConvVAE(8, 64).cuda().to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, 1e-3, capturable=True)
    noise = torch.Generator(device="cuda").manual_seed(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = noise.get_state()
    images = sample.train_x[:512].cuda()
    step = make_step(model, model, optimizer, noise, images, 128, "fp32", graph=True)
    assert isinstance(step, GraphStep)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert torch.equal(noise.get_state(), rng)
    for slot in optimizer.state.values():  # warm-up made the state; capture left it fresh
        assert slot["step"].item() == 0 and slot["exp_avg"].abs().sum().item() == 0
    step(torch.arange(128, device="cuda"))
    assert not torch.equal(model.fc_mu.weight, before["fc_mu.weight"])  # the replay trained
    assert not torch.equal(noise.get_state(), rng)  # and drew noise from our generator


def test_graph_step_trains_every_batch_and_the_loss_falls(sample):
    result = train(TrainConfig(**SMALL, epochs=3), data=sample)
    losses = [m["train_loss"] for m in result.history]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    steps = {int(s["step"].item()) for s in result.state["optimizer"]["state"].values()}
    assert steps == {3 * 8}  # 7 replays + 1 eager short batch per epoch


def test_graph_and_eager_steps_reach_the_same_validation_loss(sample):
    config = dict(data="mnist-5k", device="cuda", epochs=5, precision="fp32")
    graph = train(TrainConfig(**config, cuda_graph=True), data=sample).history[-1]["val_loss"]
    eager = train(TrainConfig(**config, cuda_graph=False), data=sample).history[-1]["val_loss"]
    assert abs(graph - eager) / eager < 0.02, (graph, eager)


@pytest.mark.parametrize("lr_schedule", ["constant", "cosine"])
def test_resume_on_the_graph_path_is_exact(sample, tmp_path, monkeypatch, lr_schedule):
    # Deterministic cuDNN kernels (both runs share this process's autotuning cache), so any
    # difference left comes from the resume itself.
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    reports = []
    config = TrainConfig(**SMALL, epochs=2, lr_schedule=lr_schedule)
    full = train(config, lambda m, s: reports.append((m, s)), data=sample)
    path = save_checkpoint(reports[0][1], tmp_path / "epoch1.pt")
    resumed = train(config, checkpoint=load_checkpoint(path), data=sample)
    assert [comparable(m) for m in resumed.history] == [comparable(m) for m in full.history]
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_a_cpu_checkpoint_resumes_on_the_graph_path(sample):
    cpu = dict(SMALL, device="cpu")
    state = train(TrainConfig(**cpu, epochs=1), lambda m, s: None, data=sample).state
    resumed = train(TrainConfig(**SMALL, epochs=2), checkpoint=state, data=sample)
    assert [m["epoch"] for m in resumed.history] == [1, 2]
    assert math.isfinite(resumed.history[-1]["val_loss"])


def test_replays_read_the_rate_set_after_capture(sample):
    """A captured graph must see a schedule's new rate: at rate 0, Adam leaves the weights."""
    torch.manual_seed(0)
    model = ConvVAE(8, 64).cuda().to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, 1e-3, capturable=True)
    noise = torch.Generator(device="cuda").manual_seed(0)
    step = make_step(
        model, model, optimizer, noise, sample.train_x[:512].cuda(), 128, "fp32", graph=True
    )
    batch = torch.arange(128, device="cuda")
    step(batch)  # one step at 1e-3 gives Adam moments
    before = model.fc_mu.weight.clone()
    set_lr(optimizer, 0.0)
    step(batch)
    assert torch.equal(model.fc_mu.weight, before)
    set_lr(optimizer, 1e-3)
    step(batch)
    assert not torch.equal(model.fc_mu.weight, before)


def test_a_cosine_schedule_on_the_graph_path_matches_the_eager_one(sample):
    config = dict(SMALL, train_limit=None, epochs=3, lr=2e-3, lr_schedule="cosine")
    graph = train(TrainConfig(**config, cuda_graph=True), data=sample)
    eager = train(TrainConfig(**config, cuda_graph=False), data=sample)
    total = 3 * math.ceil(len(sample.train_x) / 128)
    last = LrSchedule("cosine", 2e-3, total_steps=total)(total - 1)
    for result in (graph, eager):
        assert result.state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(last, rel=1e-5)
    a, b = graph.history[-1]["val_loss"], eager.history[-1]["val_loss"]
    assert abs(a - b) / b < 0.02, (a, b)
