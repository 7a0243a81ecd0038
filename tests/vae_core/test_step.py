"""The training step on the CPU: the eager step, batch handling, the warm-up rewind that the
CUDA-graph step relies on, optimizer-state loading across devices, and the precision rule.
The graph-captured step itself needs a GPU: tests/gpu/test_cuda_graph.py."""

import math

import pytest
import torch

from vae_core import ConfigError, TrainConfig, train
from vae_core.device import CUDA_STEP_MS, faster_precision, resolve_precision
from vae_core.evaluate import autocast, to_float
from vae_core.loss import negative_elbo
from vae_core.model import ConvVAE
from vae_core.schedule import set_lr
from vae_core.step import (
    EagerStep,
    load_optimizer_state,
    make_optimizer,
    make_step,
    optimizer_state,
    rewound,
    uses_cuda_graph,
)
from vae_core.train import _train_epoch, steps_per_epoch

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    # Bitwise comparisons need the same reduction order in both runs being compared.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def parts(seed=0):
    torch.manual_seed(seed)
    model = ConvVAE(4, 32).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, 1e-3, capturable=False)
    noise = torch.Generator().manual_seed(seed)
    return model, optimizer, noise


def eager(model, optimizer, noise, images, precision="fp32"):
    return EagerStep(model, model, optimizer, noise, images, precision)


def reference_epoch(model, optimizer, images, batch_size, shuffle, noise, precision):
    """The training loop as it was before steps existed (vae_core.train at 9016ab7)."""
    model.train()
    n = len(images)
    perm = torch.randperm(n, generator=shuffle)
    loss_sum = torch.zeros(())
    for begin in range(0, n, batch_size):
        idx = perm[begin : begin + batch_size]
        if len(idx) < 2:
            continue
        x = to_float(images[idx])
        with autocast(CPU, precision):
            logits, mu, logvar = model(x, generator=noise)
        loss = negative_elbo(logits, x, mu, logvar).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(idx)
    return loss_sum.item() / n


def same_state(a, b):
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return all(torch.equal(x, y) for x, y in pairs)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_eager_step_gives_the_old_loops_numbers_exactly(sample, precision):
    images = sample.train_x[:300]  # 2 batches of 128 and a short one of 44
    model_a, opt_a, noise_a = parts()
    model_b, opt_b, noise_b = parts()
    for epoch in range(2):
        old = reference_epoch(
            model_a, opt_a, images, 128, torch.Generator().manual_seed(epoch), noise_a, precision
        )
        step = eager(model_b, opt_b, noise_b, images, precision)
        new = _train_epoch(step, len(images), 128, torch.Generator().manual_seed(epoch))
        assert new == old
    assert same_state(model_a, model_b)


@pytest.mark.parametrize(("n", "steps"), [(100, 2), (128, 2), (129, 2), (130, 3), (65, 1)])
def test_every_batch_of_two_or_more_trains_and_a_batch_of_one_is_skipped(sample, n, steps):
    model, optimizer, noise = parts()
    step = eager(model, optimizer, noise, sample.train_x[:n])
    loss = _train_epoch(step, n, 64, torch.Generator().manual_seed(0))
    assert math.isfinite(loss) and loss > 0
    assert optimizer.state[next(model.parameters())]["step"].item() == steps
    assert steps_per_epoch(n, 64) == steps  # what the learning-rate schedule counts


def test_a_non_finite_epoch_is_nan(sample):
    model, optimizer, noise = parts()
    step = eager(model, optimizer, noise, sample.train_x[:64])
    with torch.no_grad():
        model.fc_mu.weight.fill_(math.inf)
    assert math.isnan(_train_epoch(step, 64, 64, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("resumed", [False, True])
def test_rewound_steps_leave_no_trace(sample, resumed):
    """GraphStep warms up with real steps before capture; rewound must undo them exactly,
    from a fresh optimizer and from one that already holds state (a resumed run)."""
    images = sample.train_x[:256]
    runs = []
    for warm_up in (False, True):
        model, optimizer, noise = parts()
        step = eager(model, optimizer, noise, images)
        if resumed:
            _train_epoch(step, 256, 64, torch.Generator().manual_seed(1))
        if warm_up:
            with rewound(model, optimizer, noise):
                for _ in range(3):
                    step(torch.arange(64))
            assert step.loss_sum.item() != 0  # the warm-up did train
        loss = _train_epoch(step, 256, 64, torch.Generator().manual_seed(2))
        runs.append((loss, model, optimizer))
    (loss_a, model_a, opt_a), (loss_b, model_b, opt_b) = runs
    assert loss_a == loss_b and same_state(model_a, model_b)
    for p_a, p_b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        for key, value in opt_a.state[p_a].items():
            assert torch.equal(value, opt_b.state[p_b][key]), key


def test_optimizer_state_keeps_the_loading_optimizers_flags(sample):
    """A checkpoint written by the graph path's capturable Adam resumes on a CPU (and the
    other way round): load_state_dict alone would carry the saved flags over."""
    model, optimizer, noise = parts()
    eager(model, optimizer, noise, sample.train_x[:64])(torch.arange(64))
    saved = optimizer.state_dict()
    saved["param_groups"][0]["capturable"] = True  # as the CUDA-graph path writes it

    plain = make_optimizer(model, 1e-3, capturable=False)
    plain.load_state_dict(saved)
    assert plain.param_groups[0]["capturable"]  # what load_optimizer_state must undo

    ours = make_optimizer(model, 1e-3, capturable=False)
    load_optimizer_state(ours, saved)
    assert ours.param_groups[0]["capturable"] is False
    first = next(model.parameters())
    assert ours.state[first]["step"].device == CPU
    assert ours.state[first]["step"].item() == 1
    eager(model, ours, noise, sample.train_x[:64])(torch.arange(64))  # steps on the CPU
    assert ours.state[first]["step"].item() == 2


def test_graph_capture_s_rate_is_a_tensor_kept_through_checkpoints(sample):
    """Capturable Adam (the graph path) holds its rate as a tensor, because a graph bakes a
    float in at capture. Checkpoints store a float either way, and loading one fills the
    loading optimizer's own tensor in place: the tensor a captured graph reads."""
    model, optimizer, noise = parts()
    eager(model, optimizer, noise, sample.train_x[:64])(torch.arange(64))
    graph_adam = make_optimizer(model, 1e-3, capturable=True)
    rate = graph_adam.param_groups[0]["lr"]
    assert isinstance(rate, torch.Tensor) and rate.item() == pytest.approx(1e-3)

    set_lr(graph_adam, 2e-4)
    assert graph_adam.param_groups[0]["lr"] is rate and rate.item() == pytest.approx(2e-4)
    saved = optimizer_state(graph_adam)
    assert saved["param_groups"][0]["lr"] == pytest.approx(2e-4)
    assert isinstance(saved["param_groups"][0]["lr"], float)
    assert graph_adam.param_groups[0]["lr"] is rate  # saving left the optimizer alone

    saved = optimizer_state(optimizer)
    saved["param_groups"][0]["lr"] = 5e-4
    load_optimizer_state(graph_adam, saved)
    assert graph_adam.param_groups[0]["lr"] is rate and rate.item() == pytest.approx(5e-4)
    saved["param_groups"][0]["lr"] = torch.tensor(7e-4)  # a tensor rate from elsewhere
    load_optimizer_state(optimizer, saved)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(7e-4)
    assert isinstance(optimizer.param_groups[0]["lr"], float)
    eager(model, optimizer, noise, sample.train_x[:64])(torch.arange(64))  # CPU Adam steps


def test_cuda_graph_is_ignored_on_the_cpu(sample):
    base = dict(data="mnist-5k", train_limit=300, batch_size=64, z_dim=4, fc_size=32, epochs=1)
    a = train(TrainConfig(**base, device="cpu", threads=1, cuda_graph=True), data=sample)
    b = train(TrainConfig(**base, device="cpu", threads=1, cuda_graph=False), data=sample)
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"]
    assert same_state(a.model, b.model)


def test_cuda_graph_must_be_a_bool():
    with pytest.raises(ConfigError, match="cuda_graph must be true or false, but got 'yes'"):
        TrainConfig(cuda_graph="yes")


def test_which_step_runs_where(sample):
    cuda = torch.device("cuda")  # a device object only: nothing runs on it
    assert uses_cuda_graph(cuda, True, False)
    assert not uses_cuda_graph(cuda, False, False)
    assert not uses_cuda_graph(cuda, True, True)  # torch.compile takes the eager step
    assert not uses_cuda_graph(CPU, True, False)
    model, optimizer, noise = parts()
    # Fewer images than one batch: no full batch to capture, so eager even when asked.
    step = make_step(model, model, optimizer, noise, sample.train_x[:50], 64, "fp32", graph=True)
    assert isinstance(step, EagerStep)


@pytest.mark.parametrize(
    ("batch_size", "graph", "expected"),
    [
        (128, True, "bf16"),  # 1.39 ms vs 1.56
        (512, True, "bf16"),
        (2048, True, "bf16"),
        (32, True, "bf16"),  # below the table: its nearest entry, 128
        (128, False, "fp32"),  # eager: 7.29 ms vs 8.89
        (256, False, "fp32"),  # nearest 128 and 512 both say fp32
        (512, False, "fp32"),
        (1024, False, "fp32"),  # log-equidistant from 512 and 2048: the smaller wins
        (1500, False, "bf16"),  # nearer 2048 on a log scale
        (2048, False, "bf16"),  # 10.13 vs 11.82
        (8192, False, "bf16"),
    ],
)
def test_faster_precision_follows_the_measured_table(batch_size, graph, expected):
    assert faster_precision(CUDA_STEP_MS["graph" if graph else "eager"], batch_size) == expected


def test_auto_precision_on_cuda_uses_the_table_where_bf16_is_supported(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", cuda, batch_size=128, graph=True) == "bf16"
    assert resolve_precision("auto", cuda, batch_size=128, graph=False) == "fp32"
    assert resolve_precision("fp32", cuda, batch_size=128, graph=True) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto", cuda, batch_size=2048, graph=True) == "fp32"
