"""--streams' runs on real CUDA streams: PyTorch's pool hands its streams out in turn, and a
Trainer never gives a stream that a live run holds to another run (skipped without CUDA; the
same on the CPU with a stand-in pool: tests/sweeps/test_trainer.py)."""

from __future__ import annotations

import torch

from sweeps.config import POOL_STREAMS
from sweeps.trainer import Streams
from vae_core.step import _capture_stream


def test_the_pool_comes_back_to_a_stream_after_as_many_as_it_holds():
    # What Streams guards against, and the pool size it assumes.
    first = torch.cuda.Stream()
    later = [torch.cuda.Stream().cuda_stream for _ in range(POOL_STREAMS)]
    assert later[POOL_STREAMS - 1] == first.cuda_stream
    assert first.cuda_stream not in later[: POOL_STREAMS - 1]


def test_a_run_never_gets_a_stream_that_a_live_run_holds():
    streams = Streams()
    device = torch.device("cuda")
    live = {streams.take(device).cuda_stream for _ in range(3)}
    for _ in range(3 * POOL_STREAMS):
        stream = streams.take(device)
        assert stream.cuda_stream not in live
        streams.give_back(stream)


def test_what_trains_in_a_trainer_captures_its_graph_on_a_stream_it_alone_holds():
    streams, device = Streams(), torch.device("cuda")
    with streams.own(device):  # as a run, or the warm-up, trains
        own = torch.cuda.current_stream()
        assert own != torch.cuda.default_stream()
        assert _capture_stream().cuda_stream == own.cuda_stream
        assert streams.take(device).cuda_stream != own.cuda_stream
    # Alone in its process, on the default stream: capture takes a side stream of the pool.
    assert _capture_stream() != torch.cuda.default_stream()
