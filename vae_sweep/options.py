"""What several commands' options share: the choice check and the data options' help."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

# The data options read the same in `train` and `run` (argparse fills in %(default)s).
DATA_HELP = (
    "auto, mnist or mnist-5k (default: %(default)s = full MNIST if found or downloadable, "
    "else the 5k sample)"
)
DATA_ROOT_HELP = "folder with the MNIST IDX files (default: ~/.cache/vae-sweep/mnist)"


def one_of(name: str, allowed: Sequence[str]) -> Callable[[str], str]:
    """An argparse `type` that rejects a value outside `allowed` in the words the configs use
    ("data must be one of auto, mnist, mnist-5k, but got 'svhn'"). Pass `choices=allowed`
    too, so `--help` lists them."""

    def check(value: str) -> str:
        if value not in allowed:
            raise argparse.ArgumentTypeError(
                f"{name} must be one of {', '.join(allowed)}, but got {value!r}"
            )
        return value

    check.__name__ = name  # argparse names the type in some of its messages
    return check
