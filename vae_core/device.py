"""Device and precision choice: CUDA when asked or available; on CUDA the measured faster
precision, on CPUs bf16 only where it is native."""

from __future__ import annotations

import logging
import math

import torch

from vae_core.errors import DeviceError

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """ "auto" -> cuda if a GPU is visible (CUDA_VISIBLE_DEVICES respected), else cpu."""
    if name == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if name == "cuda":
        raise DeviceError("device 'cuda' was asked for, but no CUDA GPU is visible")
    if name != "auto":
        raise DeviceError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device("cpu")


def cpu_capability() -> str:
    """What torch's CPU kernels run on, e.g. 'AVX512 +BF16' or 'AVX2'."""
    cap = torch.backends.cpu.get_cpu_capability()
    if cpu_has_native_bf16():
        cap += " +BF16"
    return cap


def cpu_has_native_bf16() -> bool:
    # AVX-512 BF16 or AMX: bf16 matmuls/convs run in hardware. On AVX2-only CPUs bf16 is
    # emulated and was measured ~5x slower than fp32, so it must never be chosen there.
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


# Training step times in ms, (fp32 with TF32, bf16 autocast), by batch size: one H100 80GB,
# torch 2.11, full MNIST, channels-last, steady state over 300 steps. The
# graph-captured step is faster in bf16 at every size; the eager step only at 2048, below which
# its extra cast kernels cost more launches than bf16 saves. Quality: both precisions must reach
# the same validation loss for this table to decide, which tests/gpu/test_cuda_train.py checks
# (test_auto_precision_matches_fp32); re-measure with bench/throughput.py --device cuda.
CUDA_STEP_MS = {
    "graph": {128: (1.56, 1.39), 512: (3.65, 3.08), 2048: (11.78, 9.64)},
    "eager": {128: (7.29, 8.89), 512: (8.13, 9.27), 2048: (11.82, 10.13)},
}


def faster_precision(step_ms: dict[int, tuple[float, float]], batch_size: int) -> str:
    """ "fp32" or "bf16", whichever stepped faster at the measured batch size nearest to
    `batch_size` (on a log scale: step time grows with the batch's size, not its difference)."""
    nearest = min(step_ms, key=lambda b: (abs(math.log2(b / batch_size)), b))
    fp32, bf16 = step_ms[nearest]
    return "bf16" if bf16 < fp32 else "fp32"


def resolve_precision(
    name: str, device: torch.device, *, batch_size: int = 128, graph: bool = True
) -> str:
    """ "auto" -> on CUDA, the faster of fp32 and bf16 for this batch size and step (graph
    captured or eager, see CUDA_STEP_MS), fp32 where bf16 is not supported; on a CPU, "bf16"
    where the hardware runs it natively, else "fp32"."""
    if name in ("fp32", "bf16"):
        if name == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
            log.warning("bf16 on a CPU without AVX-512 BF16/AMX is emulated and slow")
        return name
    if device.type == "cuda":
        if not torch.cuda.is_bf16_supported():
            return "fp32"
        return faster_precision(CUDA_STEP_MS["graph" if graph else "eager"], batch_size)
    return "bf16" if cpu_has_native_bf16() else "fp32"


def configure_backends(device: torch.device, threads: int | None) -> None:
    """Per-process knobs: CPU threads, and TF32 on CUDA."""
    if threads is not None:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        # cuDNN autotuning (cudnn.benchmark) stays off: PyTorch keeps its choices per thread
        # and Ray Tune runs each trial in a new thread, so on an H200 every trial paid 1.9 s
        # (each shape it meets timed before use) for kernels that stepped no faster than the
        # heuristics' (bench/cudnn_autotune.py, BENCHMARKS.md).
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
