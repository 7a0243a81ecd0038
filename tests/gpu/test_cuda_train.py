"""CUDA checks: skipped without a GPU (see conftest.py); run them on a machine that has one."""

import math

import pytest

from vae_core import TrainConfig, load_mnist, train


@pytest.fixture(scope="module")
def sample():
    return load_mnist("mnist-5k")


def run(sample, **overrides):
    config = TrainConfig(data="mnist-5k", device="cuda", epochs=3, **overrides)
    return train(config, data=sample)


def test_trains_on_the_gpu(sample):
    result = run(sample, precision="fp32")
    assert result.device.startswith("cuda")
    assert next(result.model.parameters()).is_cuda
    losses = [m["val_loss"] for m in result.history]
    assert losses[-1] < losses[0] and all(math.isfinite(v) for v in losses)


def test_bf16_matches_fp32(sample):
    fp32 = run(sample, precision="fp32").history[-1]["val_loss"]
    bf16 = run(sample, precision="bf16").history[-1]["val_loss"]
    assert abs(bf16 - fp32) / fp32 < 0.02, (bf16, fp32)


def test_compile_trains(sample):
    result = run(sample, precision="auto", compile=True, epochs=2)
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]
