"""The checkpoint format: a plain dict of tensors and numbers that `train` writes and resumes from.

Files are the caller's business (results_folder.checkpoints saves and loads them); this module
says what a checkpoint holds and rebuilds the model it describes.
"""

from __future__ import annotations

from vae_core.errors import CheckpointError, one_line
from vae_core.model import ConvVAE

FORMAT = "vae-sweep-checkpoint/1"
REQUIRED = ("format", "model", "optimizer", "epoch", "rng", "config")
ARCHITECTURE = ("z_dim", "fc_size")  # the config keys that decide the weights' shapes


def check_state(state: object, where: str) -> dict:
    """`state` if it is a complete vae-sweep checkpoint; `where` names it in the error.

    Raises:
        CheckpointError: not a vae-sweep checkpoint, or one that lacks a required entry.
    """
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{where} is not a vae-sweep checkpoint")
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {where} lacks {', '.join(missing)}")
    return state


def check_architecture(
    state: dict, expected: dict, *, source: str, where: str | None = None
) -> None:
    """Refuse a checkpoint whose z_dim or fc_size differ from `expected`'s (what `source`,
    e.g. "the config", asks for): its weights would not fit, or fit a different model.
    `where` names the checkpoint's file in the message, when it has one."""
    saved = state.get("config") if isinstance(state.get("config"), dict) else {}
    for key in ARCHITECTURE:
        if key in expected and saved.get(key) != expected[key]:
            raise CheckpointError(
                f"checkpoint{f' {where}' if where else ''} has {key}={saved.get(key)!r} but "
                f"{source} says {expected[key]!r}"
            )


def model_from_checkpoint(state: dict, *, where: str) -> ConvVAE:
    """The ConvVAE a checkpoint's config describes, with its weights (CPU, train mode).

    Raises:
        CheckpointError: the weights do not fit that model.
    """
    config = state["config"] if isinstance(state.get("config"), dict) else {}
    try:
        model = ConvVAE(int(config["z_dim"]), int(config["fc_size"]))
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"checkpoint {where} does not match ConvVAE(z_dim={config.get('z_dim')}, "
            f"fc_size={config.get('fc_size')}): {one_line(err, 200)}"
        ) from err
    return model
