"""train() in several threads of one process: each run gives what it gives alone.

Several trials' models trained in one process (each thread on its own CUDA stream on a GPU,
bench/mps.py's "streams" mode) need train() to keep no process-wide state: no seeding of the
global random generator another thread is drawing from. On the CPU the numbers must be equal
bit for bit; tests/gpu/test_cuda_graph.py checks the CUDA path, graph capture included.
"""

import sys
import threading

import pytest
import torch

from vae_core import TrainConfig, train

TINY = dict(data="mnist-5k", train_limit=512, batch_size=64, epochs=1, threads=1, device="cpu")
# Different seeds and sizes, so that one run drawing from another's seeding would show.
CONFIGS = [
    TrainConfig(**TINY, z_dim=z_dim, fc_size=fc_size, seed=seed)
    for seed, (z_dim, fc_size) in enumerate([(8, 128), (16, 1024), (4, 512), (32, 256)])
]


def without_timings(history):
    return [
        {k: v for k, v in m.items() if k not in ("epoch_seconds", "images_per_second")}
        for m in history
    ]


def in_threads(configs, data):
    """Train each config in a thread of its own, all released at once."""
    results, errors = [None] * len(configs), []
    start = threading.Barrier(len(configs))

    def run(i):
        try:
            start.wait()
            results[i] = train(configs[i], data=data)
        except Exception as err:  # re-raised in the test's thread below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(configs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.fixture
def switch_often():
    """Make the interpreter switch threads every microsecond, so that any window in which one
    run's process-wide state is visible to the other is hit, not hit by luck."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_runs_in_threads_at_once_equal_each_run_alone(sample, switch_often):
    alone = [train(c, data=sample) for c in CONFIGS]
    together = in_threads(CONFIGS, sample)
    for a, b in zip(alone, together, strict=True):
        assert without_timings(b.history) == without_timings(a.history)
        for name, tensor in a.model.state_dict().items():
            assert torch.equal(tensor, b.model.state_dict()[name]), name
