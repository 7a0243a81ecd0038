"""TrainConfig: everything one training run needs, validated when it is built."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from vae_core.errors import ConfigError

DATA_SOURCES = ("auto", "mnist", "mnist-5k")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
LR_SCHEDULES = ("constant", "cosine")  # vae_core.schedule says what each does
# BatchNorm normalises each batch by its own statistics in training, and one image has no
# spread to normalise by: torch refuses a batch of one.
MIN_BATCH_SIZE = 2
BATCH_SIZE_RULE = (
    f"at least {MIN_BATCH_SIZE} (BatchNorm needs {MIN_BATCH_SIZE} images per batch in training)"
)
# The settings that take one of a few names, and those names.
CHOICES = {
    "data": DATA_SOURCES,
    "device": DEVICES,
    "precision": PRECISIONS,
    "lr_schedule": LR_SCHEDULES,
}


@dataclass(frozen=True)
class TrainConfig:
    z_dim: int = 10  # the post's latent size
    fc_size: int = 400  # the post's hidden layer size
    lr: float = 1e-3  # Adam's usual default, and the post's
    lr_schedule: str = "constant"  # the post's; "cosine" anneals lr to 0 over the run's steps
    batch_size: int = 128  # the post's batch size
    epochs: int = 10  # enough for the post's model to settle on full MNIST
    seed: int = 0  # initialisation, shuffling and sampling noise
    data: str = "auto"  # full MNIST when available, else the 5k sample
    data_root: str | None = None  # None: ~/.cache/vae-sweep/mnist
    train_limit: int | None = None  # first N training images only: quick runs and tests
    device: str = "auto"  # cuda when a GPU is visible
    precision: str = "auto"  # CUDA: the measured faster; CPU: bf16 only where native
    compile: bool = False  # torch.compile: pays off on GPUs, rarely on 2-core CPUs
    cuda_graph: bool = True  # on CUDA, replay the whole training step as one CUDA graph
    threads: int | None = None  # torch CPU threads; None keeps torch's (or Ray's) choice

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a plain dict (e.g. a checkpoint's), rejecting unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**values)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _problems(c: TrainConfig) -> list[str]:
    out = []
    for name in ("z_dim", "fc_size", "epochs"):
        value = getattr(c, name)
        if not _is_int(value) or value < 1:
            out.append(f"{name} must be a positive integer, but got {value!r}")
    if not _is_int(c.batch_size) or c.batch_size < MIN_BATCH_SIZE:
        out.append(f"batch_size must be an integer of {BATCH_SIZE_RULE}, but got {c.batch_size!r}")
    if not _is_int(c.seed) or c.seed < 0:
        out.append(f"seed must be a non-negative integer, but got {c.seed!r}")
    if (
        isinstance(c.lr, bool)
        or not isinstance(c.lr, (int, float))
        or not (math.isfinite(c.lr) and c.lr > 0)
    ):
        out.append(f"lr must be a positive finite number, but got {c.lr!r}")
    for name, allowed in CHOICES.items():
        value = getattr(c, name)
        if value not in allowed:
            out.append(f"{name} must be one of {', '.join(allowed)}, but got {value!r}")
    for name in ("train_limit", "threads"):
        value = getattr(c, name)
        if value is not None and (not _is_int(value) or value < 1):
            out.append(f"{name} must be a positive integer or None, but got {value!r}")
    for name in ("compile", "cuda_graph"):
        if not isinstance(getattr(c, name), bool):
            out.append(f"{name} must be true or false, but got {getattr(c, name)!r}")
    if c.data_root is not None and not isinstance(c.data_root, str):
        out.append(f"data_root must be a path string, but got {c.data_root!r}")
    return out
