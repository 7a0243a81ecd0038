"""Checkpoint files: saved atomically on any filesystem, loaded safely (weights_only=True)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from results_folder import storage
from vae_core.checkpoint import check_state
from vae_core.errors import CheckpointError, one_line


def save_checkpoint(state: dict, path: str | os.PathLike) -> str | Path:
    """Write `state` to `path` (a local path or a URI) so that a crash never leaves half a
    file. Returns the path (a Path when local)."""
    storage.write_bytes(path, lambda out: torch.save(state, out))
    return path if storage.is_uri(path) else Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load and check a checkpoint; no arbitrary code runs (weights_only=True).

    Raises:
        CheckpointError: missing, truncated, corrupt, or not a vae-sweep checkpoint.
    """
    path = str(path)
    if not (storage.exists(path) if storage.is_uri(path) else Path(path).is_file()):
        raise CheckpointError(f"checkpoint {path} does not exist")
    if storage.is_uri(path):
        with storage.local_copy(path) as local:
            return check_state(_torch_load(local, map_location, name=path), path)
    return check_state(_torch_load(path, map_location, name=path), path)


def _torch_load(local: str, map_location, *, name: str) -> object:
    try:
        return torch.load(local, map_location=map_location, weights_only=True)
    except Exception as err:  # a malformed file can fail anywhere inside the unpickler
        raise CheckpointError(
            f"checkpoint {name} is corrupt or truncated ({one_line(err, 160)})"
        ) from err
