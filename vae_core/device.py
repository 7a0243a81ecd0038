"""Device and precision choice: CUDA when asked or available, bf16 only where it is native."""

from __future__ import annotations

import logging

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


def resolve_precision(name: str, device: torch.device) -> str:
    """ "auto" -> "bf16" where the hardware runs it natively, else "fp32"."""
    if name in ("fp32", "bf16"):
        if name == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
            log.warning("bf16 on a CPU without AVX-512 BF16/AMX is emulated and slow")
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def configure_backends(device: torch.device, threads: int | None) -> None:
    """Per-process knobs: CPU threads, cuDNN autotuning and TF32 on CUDA."""
    if threads is not None:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: autotune once
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
