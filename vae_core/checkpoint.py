"""Checkpoints: a plain dict of tensors and numbers, saved atomically, loaded with weights_only."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from vae_core.errors import CheckpointError

FORMAT = "vae-sweep-checkpoint/1"
REQUIRED = ("format", "model", "optimizer", "epoch", "rng", "config")


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write `state` to `path` through a temporary file, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint safely (no arbitrary code: weights_only=True) and check its format.

    Raises:
        CheckpointError: missing, truncated, corrupt, or not a vae-sweep checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a malformed file can fail anywhere inside the unpickler
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({reason[:160]})"
        ) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vae-sweep checkpoint")
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    return state
