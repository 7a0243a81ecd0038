"""How the trials that share a GPU share it: the ways `auto` tries and in which order, the
fallback when one cannot run (here, with no GPU, for real), and the options that choose one.
On a GPU: tests/gpu/test_mps_daemon.py (auto runs a sweep under MPS) and
tests/gpu/test_sweep_gpu.py (each way in a Ray this process joined)."""

from __future__ import annotations

import logging
import subprocess
import sys
from contextlib import ExitStack

import pytest
import torch

from sweeps import SweepConfig
from sweeps.sharing import candidates, gpu_sharing, start_first
from vae_core.errors import ConfigError, DeviceError
from vae_sweep import cli
from vae_sweep.run import sweep_config

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


@pytest.mark.parametrize(
    ("options", "cuda", "ray_joined", "under_mps", "ways"),
    [
        ({}, True, False, False, ("mps", "streams", "time-sliced")),
        ({"gpus_per_trial": 0.5}, True, False, False, ("mps", "streams", "time-sliced")),
        # More than 32 trials at once on a GPU: more than PyTorch has streams for.
        ({"gpus_per_trial": 0.02}, True, False, False, ("mps", "time-sliced")),
        # A Ray this process joined: a daemon started now would not reach its workers...
        ({}, True, True, False, ("streams", "time-sliced")),
        # ...unless this process started that Ray under a daemon of its own (gpu_sharing).
        ({}, True, True, True, ("mps", "streams", "time-sliced")),
        # Nothing to share: no GPU, whole GPUs, CPU trials, a cluster's nodes.
        ({}, False, False, False, ("time-sliced",)),
        ({"gpus_per_trial": 1}, True, False, False, ("time-sliced",)),
        ({"gpus_per_trial": 0}, True, False, False, ("time-sliced",)),
        ({"address": "auto"}, True, False, False, ("time-sliced",)),
        # Asked for: that way only, so that it fails with its reason if it cannot run.
        ({"sharing": "streams"}, True, True, False, ("streams",)),
        ({"sharing": "mps"}, False, False, False, ("mps",)),
        ({"sharing": "time-sliced", "gpus_per_trial": 0.25}, True, False, False, ("time-sliced",)),
    ],
)
def test_the_ways_tried_best_first(monkeypatch, options, cuda, ray_joined, under_mps, ways):
    monkeypatch.setattr("sweeps.sharing._ray_under_mps", under_mps)
    config = SweepConfig(name="s", **options)
    assert candidates(config, cuda=cuda, ray_joined=ray_joined) == ways


@no_gpu
def test_auto_falls_back_way_by_way_saying_why(caplog):
    caplog.set_level(logging.INFO, logger="sweeps.sharing")
    with ExitStack() as stack:
        assert start_first(("mps", "streams", "time-sliced"), stack) == ("time-sliced", {})
    assert [r.getMessage() for r in caplog.records] == [
        "--mps needs a CUDA GPU, but none is visible; the trials that share a GPU train on "
        "CUDA streams in one process per GPU instead (as with --streams)",
        "--streams needs a CUDA GPU, but none is visible; the trials that share a GPU take "
        "turns on it instead (as with --time-sliced)",
    ]


@no_gpu
@pytest.mark.parametrize("way", ["mps", "streams"])
def test_a_way_asked_for_that_cannot_run_is_its_error(way):
    with (
        pytest.raises(DeviceError, match=f"--{way} needs a CUDA GPU"),
        gpu_sharing(SweepConfig(name="s", sharing=way)),
    ):
        pass


@no_gpu
def test_auto_without_a_gpu_starts_nothing():
    with gpu_sharing(SweepConfig(name="s")) as (way, env):
        assert (way, env) == ("time-sliced", {})


def parse(*argv: str):
    return cli.build_parser().parse_args(["run", *argv])


@pytest.mark.parametrize(
    ("argv", "sharing"),
    [
        ((), "auto"),
        (("--mps",), "mps"),
        (("--streams",), "streams"),
        (("--time-sliced",), "time-sliced"),
    ],
)
def test_the_sharing_options(argv, sharing):
    assert sweep_config(parse(*argv)).sharing == sharing


def test_two_ways_at_once_are_refused_in_one_line(cli_env):
    proc = subprocess.run(
        [sys.executable, "-m", "vae_sweep", "run", "--mps", "--streams"],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "vae-sweep run: error: argument --streams: not allowed with argument --mps"
    )


def test_an_unknown_way_is_refused():
    with pytest.raises(ConfigError, match="GPU sharing must be one of auto, mps, streams, "):
        SweepConfig(name="s", sharing="mig")
