"""The learning-rate schedule: each optimiser step's rate, as a pure function of the step.

Written as a formula of the step, like nanoGPT's `get_lr`, rather than as a torch LRScheduler:
a resumed run recomputes the rate from the step it resumes at, so checkpoints carry no
scheduler state, and the one code path drives both a CPU Adam (a float lr) and a graph-captured
Adam, whose lr must be a device tensor changed in place (vae_core.step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LrSchedule:
    """`schedule(step)` is the rate of optimiser step `step` (0-based) of `total_steps`."""

    name: str  # one of vae_core.config.LR_SCHEDULES
    base_lr: float
    total_steps: int

    @property
    def constant(self) -> bool:
        return self.name == "constant"

    def __call__(self, step: int) -> float:
        if self.constant:
            return self.base_lr
        # Cosine annealing without restarts (Loshchilov & Hutter, SGDR, 2017): base_lr at the
        # first step, falling to 0 after the last one.
        progress = min(step, self.total_steps) / max(self.total_steps, 1)
        return 0.5 * self.base_lr * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Give every parameter group the rate `lr`; a tensor rate is filled in place, because a
    captured CUDA graph reads that very tensor (a new one would go unseen)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr
