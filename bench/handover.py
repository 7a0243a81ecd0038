"""--streams: what a relaying trial waits for to get an epoch's checkpoint from its Trainer.

Each epoch of a `vae-sweep run --streams` trial crosses from the Trainer's process to the
trial's. Two ways, timed here with a real checkpoint state (model, Adam moments, generators)
of the given size, through a real local Ray, with nothing training:
- object store (the first --streams): the Trainer returns the state, which Ray pickles in
  the Trainer's process (holding the interpreter, that is, the other runs' kernel launches),
  stores and unpickles in the trial's, which then writes it;
- folder (now, sweeps.trainer): the run writes it where the Trainer runs, and returns the
  folder's name.
Both end with the checkpoint written in a folder, as Ray Tune's report needs it. Also timed:
how long a thread of the Trainer's process (a stand-in for the other runs, each of which needs
the interpreter to launch its next step) waited beyond its 1 ms sleeps during each hand-over.

    python bench/handover.py                       # z_dim 28, fc 900: the default space's largest
    python bench/handover.py --fc-size 400 --rounds 21
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time

import ray

from sweeps.local_ray import ray_session
from sweeps.trial import save_epoch
from vae_core import TrainConfig, load_mnist, train

TICK_S = 0.001


class Source:
    """Holds one epoch's checkpoint state and hands it over, one way or the other; a thread
    beside it sleeps 1 ms at a time and adds up how much longer each sleep took."""

    def __init__(self, state: dict, folder: str) -> None:
        self.state, self.folder = state, folder
        self.late = 0.0
        threading.Thread(target=self._tick, daemon=True).start()

    def _tick(self) -> None:
        while True:
            start = time.perf_counter()
            time.sleep(TICK_S)
            self.late += max(0.0, time.perf_counter() - start - TICK_S)

    def lateness(self) -> float:
        return self.late

    def state_itself(self) -> dict:
        return self.state

    def written(self) -> tuple[str, float]:
        return save_epoch(self.state, self.folder)


def one_state(z_dim: int, fc_size: int) -> dict:
    """A real checkpoint state: one tiny epoch of a model of that size."""
    states = []
    config = TrainConfig(
        data="mnist-5k", train_limit=256, epochs=1, z_dim=z_dim, fc_size=fc_size, device="cpu"
    )
    train(config, lambda metrics, state: states.append(state), data=load_mnist("mnist-5k"))
    return states[-1]


def timed(fetch, source, rounds: int) -> tuple[float, float]:
    """Median seconds of `fetch()` (each leaves a folder, then removed), and median seconds
    the ticking thread of `source` was late meanwhile."""
    seconds, late = [], []
    for _ in range(rounds):
        before = ray.get(source.lateness.remote())
        start = time.perf_counter()
        folder = fetch()
        seconds.append(time.perf_counter() - start)
        late.append(ray.get(source.lateness.remote()) - before)
        shutil.rmtree(folder)
    return statistics.median(seconds), statistics.median(late)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--z-dim", type=int, default=28)
    parser.add_argument("--fc-size", type=int, default=900)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--node-ip", default="127.0.0.9")
    args = parser.parse_args()

    state = one_state(args.z_dim, args.fc_size)
    with tempfile.TemporaryDirectory() as root, ray_session(None, args.node_ip):
        source = ray.remote(num_cpus=0, max_concurrency=2)(Source).remote(state, root)

        def through_the_store() -> str:
            return save_epoch(ray.get(source.state_itself.remote()))[0]

        def as_a_folder() -> str:
            return ray.get(source.written.remote())[0]

        as_a_folder(), through_the_store()  # the first calls start the actor and warm up
        store, store_late = timed(through_the_store, source, args.rounds)
        folder, folder_late = timed(as_a_folder, source, args.rounds)
    size = sum(t.numel() * t.element_size() for t in _tensors(state)) / 1e6
    print(f"checkpoint state z_dim {args.z_dim}, fc {args.fc_size}: {size:.1f} MB")
    print("medians, ms:                             hand-over  a Trainer thread kept waiting")
    print(f"object store, then written by the trial: {store * 1e3:9.1f}  {store_late * 1e3:9.1f}")
    print(f"written by the Trainer, folder handed:   {folder * 1e3:9.1f}  {folder_late * 1e3:9.1f}")
    print(f"the folder is {store / folder:.2f}x faster")


def _tensors(value):
    if hasattr(value, "element_size"):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item)


if __name__ == "__main__":
    main()
