"""CUDA checks: skipped without a GPU (see conftest.py); run them on a machine that has one."""

import math

import pytest
import torch

from vae_core import ConvVAE, TrainConfig, load_mnist, train
from vae_core.evaluate import recalibrate_batchnorm


@pytest.fixture(scope="module")
def sample():
    return load_mnist("mnist-5k")


def run(sample, **overrides):
    config = TrainConfig(**{"data": "mnist-5k", "device": "cuda", "epochs": 3, **overrides})
    return train(config, data=sample)


def test_trains_on_the_gpu(sample):
    result = run(sample, precision="fp32")
    assert result.device.startswith("cuda")
    assert next(result.model.parameters()).is_cuda
    losses = [m["val_loss"] for m in result.history]
    assert losses[-1] < losses[0] and all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("batch_size", [128, 512])
def test_auto_precision_matches_fp32(sample, batch_size):
    """`auto` picks by step time (vae_core.device.CUDA_STEP_MS) on the premise that quality is
    equal; this checks that premise where the rule picks bf16 (the graph path, any batch)."""
    auto = run(sample, precision="auto", batch_size=batch_size, epochs=10)
    fp32 = run(sample, precision="fp32", batch_size=batch_size, epochs=10)
    assert auto.precision == "bf16"
    a, b = fp32.history[-1]["val_loss"], auto.history[-1]["val_loss"]
    assert abs(b - a) / a < 0.02, (a, b)


def test_compile_trains(sample):
    result = run(sample, precision="auto", compile=True, epochs=2)
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]


def test_leaves_cudnn_autotuning_off(sample):
    """PyTorch keeps cuDNN's autotuning results per thread (a thread_local cache in its cuDNN
    convolutions), and Ray Tune runs each trial in a new thread of its reused worker: with
    autotuning on, every trial timed every convolution again (~1.9 s on an H200, BENCHMARKS.md)."""
    run(sample, epochs=1)
    assert torch.backends.cudnn.benchmark is False


def test_batchnorm_recalibration_never_waits_for_the_gpu(sample):
    """Four trials share the GPU in turns: a host sync inside the evaluation's BatchNorm pass
    waits out the others' turns, and torch's update_bn makes one per layer and batch."""
    model = ConvVAE(12, 256).cuda().to(memory_format=torch.channels_last)
    images = sample.train_x[:2048].cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        recalibrate_batchnorm(model, images, batch_size=128, precision="bf16")
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert int(model.encoder[2].num_batches_tracked) == 16
