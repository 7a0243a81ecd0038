"""WorkerData: a sweep's MNIST splits, in Ray's object store once and on each worker's device once.

`tune.with_parameters` fetches its objects again for every trial: with full MNIST that is 50-65
ms of `ray.get` per trial on a 2-core CPU, and on a GPU each trial would copy the images to
the device again. A reused actor (reuse_actors=True) runs trial after trial in one process, so
what with_parameters carries is this small handle, and the process keeps the splits it fetched,
already on the trial's device.
"""

from __future__ import annotations

import ray
import torch

from vae_core.data import MnistSplits


class WorkerData:
    """A handle to splits put in the object store; `on(device)` gives them, fetched once per
    worker process (a trial must not change them: the next trial on that worker reads them)."""

    def __init__(self, splits: MnistSplits) -> None:
        self._ref = ray.put(splits)

    def on(self, device: torch.device) -> MnistSplits:
        global _held
        key = (self._ref.hex(), str(device))
        if _held is None or _held[0] != key:
            _held = None  # let the old copy go before the new one is made
            _held = (key, ray.get(self._ref).to(device))
            if device.type == "cuda":
                # Copies from pageable memory may still be landing when `to` returns, and a
                # graph captured on a side stream reads the data without waiting for them.
                torch.cuda.current_stream(device).synchronize()
        return _held[1]


# The splits this worker process holds: (object id, device) and the splits. One entry, because
# a worker runs one sweep's trials, all on one device.
_held: tuple[tuple[str, str], MnistSplits] | None = None
