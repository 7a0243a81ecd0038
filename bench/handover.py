"""--streams: what a relaying trial waits for to get an epoch's checkpoint from its Trainer.

Each epoch of a `vae-sweep run --streams` trial crosses from the Trainer's process to the
trial's. Two ways, timed here with a real checkpoint state (model, Adam moments, generators)
of the given size, through a real local Ray, with nothing training:
- object store (the first --streams): the Trainer returns the state, which Ray pickles in
  the Trainer's process (holding the interpreter, that is, the other runs' kernel launches),
  stores and unpickles in the trial's, which then writes it;
- folder (now, sweeps.trainer): the run writes it where the Trainer runs, and returns the
  folder's name.
Both end with the checkpoint written in a folder, as Ray Tune's report needs it.

    python bench/handover.py                       # z_dim 28, fc 900: the default space's largest
    python bench/handover.py --fc-size 400 --rounds 21
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time

import ray

from sweeps.local_ray import ray_session
from sweeps.trial import save_epoch
from vae_core import TrainConfig, load_mnist, train


class Source:
    """Holds one epoch's checkpoint state and hands it over, one way or the other."""

    def __init__(self, state: dict, folder: str) -> None:
        self.state, self.folder = state, folder

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


def timed(fetch, rounds: int) -> float:
    """Median seconds of `fetch()`, each leaving a folder that is then removed."""
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        folder = fetch()
        seconds.append(time.perf_counter() - start)
        shutil.rmtree(folder)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--z-dim", type=int, default=28)
    parser.add_argument("--fc-size", type=int, default=900)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--node-ip", default="127.0.0.9")
    args = parser.parse_args()

    state = one_state(args.z_dim, args.fc_size)
    with tempfile.TemporaryDirectory() as root, ray_session(None, args.node_ip):
        source = ray.remote(num_cpus=0)(Source).remote(state, root)

        def through_the_store() -> str:
            return save_epoch(ray.get(source.state_itself.remote()))[0]

        def as_a_folder() -> str:
            return ray.get(source.written.remote())[0]

        as_a_folder(), through_the_store()  # the first calls start the actor and warm up
        store = timed(through_the_store, args.rounds)
        folder = timed(as_a_folder, args.rounds)
    size = sum(t.numel() * t.element_size() for t in _tensors(state)) / 1e6
    print(f"checkpoint state z_dim {args.z_dim}, fc {args.fc_size}: {size:.1f} MB")
    print(f"object store, then written by the trial: {store * 1e3:7.1f} ms (median)")
    print(f"written by the Trainer, folder handed:   {folder * 1e3:7.1f} ms (median)")
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
