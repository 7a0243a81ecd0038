"""WorkerData: a worker fetches a sweep's splits once, however many trials it runs."""

from __future__ import annotations

import pytest
import ray
import torch

from sweeps.worker_data import WorkerData
from vae_core import load_mnist


@pytest.fixture(scope="module")
def splits():
    return load_mnist("mnist-5k").limit_train(100)


@ray.remote(num_cpus=0)
class Worker:
    """A process that runs trials one after another, as a reused Tune actor does."""

    def __init__(self) -> None:
        self.seen = []  # every trial's splits, kept so that no two can share an id()

    def trial(self, data: WorkerData) -> tuple[int, int, str]:
        splits = data.on(torch.device("cpu"))
        self.seen.append(splits)
        return id(splits), len(splits.train_x), splits.source


def test_a_worker_fetches_the_splits_once_for_all_its_trials(ray_local, splits):
    data = WorkerData(splits)
    worker = Worker.remote()
    # Each call deserialises the handle anew, as each trial's with_parameters fetch does.
    first, second = ray.get([worker.trial.remote(data), worker.trial.remote(data)])
    assert first == second
    assert first[1:] == (100, "mnist-5k")
    # Another sweep's data (another object) replaces what the worker held.
    other = ray.get(worker.trial.remote(WorkerData(splits.limit_train(40))))
    assert other[1] == 40
    ray.kill(worker)


def test_the_splits_arrive_unchanged(ray_local, splits):
    got = WorkerData(splits).on(torch.device("cpu"))
    for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert torch.equal(getattr(got, name), getattr(splits, name)), name
    assert got.source == splits.source
