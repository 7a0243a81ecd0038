"""--streams' Trainer: one process trains several trials' runs at once, each exactly as alone,
one epoch at a time as its trial asks, its checkpoints handed over as folders; stopped, failed
and restarted runs; a Trainer whose process died; trials relaying to it through a real Ray Tune
run with ASHA stopping some; with several GPUs, each trial to its own GPU's Trainer; streams no
two live runs share. All on the CPU (threads, no streams); on a GPU, a sweep with --streams:
tests/gpu/test_sweep_gpu.py, and real streams: tests/gpu/test_trainer_streams.py; without one,
--streams' error: tests/sweeps/test_mps.py."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from results_folder import load_checkpoint
from results_folder.layout import CHECKPOINT_FILE
from sweeps import SweepConfig
from sweeps.config import POOL_STREAMS
from sweeps.trainer import Run, Streams, trainers
from sweeps.trial import run_trial
from tests.conftest import run_probe
from vae_core import CheckpointError, ConfigError, TrainConfig, load_mnist, train

TINY = dict(data="mnist-5k", train_limit=256, batch_size=64, threads=1, device="cpu")
FIXED = dict(TINY, epochs=2)  # what all of a sweep's trials share, for the Trainer's warm-up


def without_timings(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in ("epoch_seconds", "images_per_second")}


@pytest.fixture(scope="module")
def splits():
    return load_mnist("mnist-5k").limit_train(256)


@pytest.fixture
def streams(ray_local, splits):
    """A sweep's Trainers as `vae-sweep run --streams` starts them, for one (CPU) "GPU"."""
    with trainers(True, splits, 1, FIXED) as started:
        yield started


@pytest.fixture
def trainer(streams):
    return streams.of_this_trial()


def start(
    streams, trial_id: str, config: dict, checkpoint: dict | None = None, process=None
) -> dict:
    trainer = streams.of_this_trial()
    return ray.get(trainer.start.remote(trial_id, config, checkpoint, streams.data, process))


def state_of(epoch) -> dict:
    """The checkpoint state a run wrote for an epoch it handed over."""
    _, (folder, _) = epoch
    return load_checkpoint(Path(folder) / CHECKPOINT_FILE)


def epochs_of(trainer, trial_id: str) -> list:
    out = []
    while (epoch := ray.get(trainer.next_epoch.remote(trial_id))) is not None:
        out.append(epoch)
    return out


def test_runs_on_one_trainer_at_once_give_what_each_gives_alone(streams, trainer, splits):
    configs = [
        TrainConfig(**TINY, epochs=2, z_dim=4, fc_size=64, seed=1),
        TrainConfig(**TINY, epochs=2, z_dim=8, fc_size=128, seed=2),
    ]
    where = [start(streams, f"t{i}", config.to_dict()) for i, config in enumerate(configs)]
    # Interleaved, as trials relaying at once ask.
    got = {f"t{i}": [] for i in range(2)}
    for _ in range(2):
        for trial_id in got:
            got[trial_id].append(ray.get(trainer.next_epoch.remote(trial_id)))
    for trial_id in got:
        assert ray.get(trainer.next_epoch.remote(trial_id)) is None  # the end
    assert ray.get(trainer.runs.remote()) == 0
    for config, trial_id, said in zip(configs, got, where, strict=True):
        alone = []
        result = train(config, lambda m, s, out=alone: out.append((m, s)), data=splits)
        assert said == {"device": "cpu", "precision": result.precision}
        assert [without_timings(m) for m, _ in got[trial_id]] == [
            without_timings(m) for m, _ in alone
        ]
        last, expected = state_of(got[trial_id][-1]), alone[-1][1]
        for name, tensor in expected["model"].items():
            assert torch.equal(last["model"][name], tensor), name
        # Written into the sweep's folder by the Trainer, for the trial to report.
        assert Path(got[trial_id][-1][1][0]).parent == Path(streams.folder)


def test_a_trainer_warms_up_on_a_small_model_and_keeps_no_run(streams, trainer):
    # trainers() asked for it without waiting; asked again, it must still work and say so.
    seconds = ray.get(trainer.warm.remote(streams.data, FIXED))
    assert 0 < seconds < 120
    assert ray.get(trainer.runs.remote()) == 0


def test_a_run_goes_on_only_when_asked_and_a_stopped_one_ends(streams, trainer):
    config = TrainConfig(**TINY, epochs=3)
    start(streams, "t", config.to_dict())
    epoch = ray.get(trainer.next_epoch.remote("t"))
    assert epoch[0]["epoch"] == 1 and state_of(epoch)["epoch"] == 1
    ray.get(trainer.stop.remote("t"))
    assert ray.get(trainer.runs.remote()) == 0
    with pytest.raises(ray.exceptions.RayTaskError, match="trial t has no run on this Trainer"):
        ray.get(trainer.next_epoch.remote("t"))


def test_a_restarted_trial_resumes_from_its_checkpoint_in_place_of_its_earlier_run(
    streams, trainer
):
    config = TrainConfig(**TINY, epochs=2).to_dict()
    start(streams, "t", config)
    state = state_of(ray.get(trainer.next_epoch.remote("t")))
    start(streams, "t", config, state)  # as after a failure: from epoch 1
    assert ray.get(trainer.runs.remote()) == 1
    assert [m["epoch"] for m, _ in epochs_of(trainer, "t")] == [2]


def test_a_trainer_whose_process_died_comes_back_and_trains_what_is_started_on_it(streams, trainer):
    # Its trials fail and Tune restarts them on it; each start brings the data again.
    config = TrainConfig(**TINY, epochs=1).to_dict()
    pid = ray.get(trainer.pid.remote())
    ray.kill(trainer, no_restart=False)
    # The kill lands when it lands: a call may still reach the old process. Calls meanwhile
    # wait for the new one (retried), and it is up once it answers with another pid.
    came_back = wait_until(lambda: ray.get(trainer.pid.remote()) != pid, 60)
    assert came_back, "the Trainer did not come back"
    start(streams, "t", config)
    assert [m["epoch"] for m, _ in epochs_of(trainer, "t")] == [1]


def test_what_runs_left_unreported_goes_with_the_sweep(ray_local, splits):
    with trainers(True, splits, 1, FIXED) as streams:
        start(streams, "t", TrainConfig(**TINY, epochs=2).to_dict())
        left = ray.get(streams.of_this_trial().next_epoch.remote("t"))[1][0]  # never reported
        assert Path(left).is_dir()
    assert not Path(streams.folder).exists()


def test_a_run_its_trial_abandoned_stops_and_a_late_ask_is_an_error(splits, monkeypatch, tmp_path):
    monkeypatch.setattr("sweeps.trainer.ABANDONED_AFTER_S", 0.5)
    run = Run(TrainConfig(**TINY, epochs=3), None, splits, str(tmp_path), Streams())
    metrics, _ = run.next_epoch()
    assert metrics["epoch"] == 1
    time.sleep(1.5)  # nobody asks for epoch 2: the run stops, freeing what it holds
    with pytest.raises(RuntimeError, match="has ended"):
        run.next_epoch()


@pytest.mark.parametrize("reaped", [True, False])
def test_a_run_whose_trial_s_process_ended_stops_at_once(splits, tmp_path, reaped):
    trial = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        run = Run(TrainConfig(**TINY, epochs=3), None, splits, str(tmp_path), Streams(), trial.pid)
        assert run.next_epoch()[0]["epoch"] == 1
        time.sleep(1.5)
        assert not run.stopped  # its trial's process lives: the run waits to be asked
        trial.kill()
        if reaped:
            trial.wait()
        # Not reaped: a zombie, as a process is until its parent (Ray's raylet) waits for it.
        assert wait_until(lambda: run.stopped, 10), "the run did not stop"
    finally:
        trial.kill()
        trial.wait()


def test_a_trainer_ends_the_run_of_a_trial_whose_process_on_its_machine_ended(streams, trainer):
    config = TrainConfig(**TINY, epochs=3).to_dict()
    here = ray.get_runtime_context().get_node_id()  # the local Ray's one node
    trial = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        start(streams, "t", config, process=(here, trial.pid))
        start(streams, "u", config, process=("another node", trial.pid))  # PIDs of elsewhere
        for trial_id in ("t", "u"):
            ray.get(trainer.next_epoch.remote(trial_id))
        trial.kill()
        trial.wait()
        assert wait_until(lambda: ray.get(trainer.runs.remote()) == 1, 10)
        time.sleep(2)  # "u" stays: only its time limit, or its trial, can end it
        assert ray.get(trainer.runs.remote()) == 1
        with pytest.raises(ray.exceptions.RayTaskError, match="trial t has no run"):
            ray.get(trainer.next_epoch.remote("t"))
    finally:
        trial.kill()
        trial.wait()


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_run_that_fails_fails_its_trial_with_its_own_error(streams, trainer):
    config = TrainConfig(**TINY, epochs=2)
    start(streams, "t", config.to_dict())
    state = state_of(ray.get(trainer.next_epoch.remote("t")))
    other = TrainConfig(**{**TINY, "fc_size": 99}, epochs=2).to_dict()  # not that checkpoint's
    start(streams, "u", other, state)
    with pytest.raises(CheckpointError):
        ray.get(trainer.next_epoch.remote("u"))
    assert ray.get(trainer.runs.remote()) == 1  # "t", still waiting to be asked


def test_trials_relay_through_tune_and_asha_stopping_one_ends_its_run(streams, trainer, tmp_path):
    # One at a time, the good rate first: ASHA (reduction 2) then stops the hopeless one at
    # its first epoch, inside its report, which must end its run on the Trainer too.
    space = {
        **TrainConfig(**TINY, epochs=3).to_dict(),
        "lr": tune.grid_search([3e-3, 1e-6]),
    }
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(run_trial, trainers=streams), {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            scheduler=ASHAScheduler(
                time_attr="training_iteration",
                metric="val_loss",
                mode="min",
                max_t=3,
                grace_period=1,
                reduction_factor=2,
            ),
            max_concurrent_trials=1,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    assert not results.errors
    epochs = {r.config["lr"]: r.metrics["epoch"] for r in results}  # its last report
    assert epochs == {3e-3: 3, 1e-6: 1}
    assert {r.metrics["device"] for r in results} == {"cpu"}  # as the Trainer said
    assert all(r.checkpoint is not None for r in results)
    # The stopped trial's `finally` stops its run, unless Tune ends its process first (it does
    # not wait for the trial's thread): then the run stops on seeing that process gone.
    assert wait_until(lambda: ray.get(trainer.runs.remote()) == 0, 10)
    # Each epoch's folder went once Ray had its copy, the stopped trial's too.
    assert list(Path(streams.folder).iterdir()) == []


class RoundRobinPool:
    """PyTorch's pool of CUDA streams as c10 hands it out (no GPU here): 32 per GPU, in turn;
    `cuda_stream` is the stream's handle. tests/gpu/test_trainer_streams.py uses the real one."""

    def __init__(self) -> None:
        self.handed = 0

    def __call__(self) -> SimpleNamespace:
        self.handed += 1
        return SimpleNamespace(cuda_stream=1000 + (self.handed - 1) % POOL_STREAMS)


def test_a_run_never_gets_a_stream_that_a_live_run_holds():
    # Three long runs stay while a sweep's worth of short ones come and go: the pool alone
    # would hand the 33rd its first stream again, which a live run still holds.
    streams = Streams(RoundRobinPool())
    live = {streams.take("cuda").cuda_stream for _ in range(3)}
    for _ in range(100):
        stream = streams.take("cuda")
        assert stream.cuda_stream not in live
        streams.give_back(stream)


def test_when_every_stream_is_held_a_run_waits_for_one_to_come_free():
    streams = Streams(RoundRobinPool(), wait_s=0.2)
    held = [streams.take("cuda") for _ in range(POOL_STREAMS)]
    with pytest.raises(RuntimeError, match="hold all of PyTorch's streams"):
        streams.take("cuda")
    streams = Streams(RoundRobinPool(), wait_s=30)
    held = [streams.take("cuda") for _ in range(POOL_STREAMS)]
    threading.Timer(0.3, streams.give_back, args=(held[5],)).start()
    assert streams.take("cuda").cuda_stream == held[5].cuda_stream


# A local Ray of its own with two GPUs declared (Ray takes the count on trust; nothing here
# touches CUDA), the driver seeing GPUs 2 and 3 of a larger machine: two tasks that hold a GPU
# each, as trials do, pick a Trainer each; prints each task's GPU, its Trainer's and the
# CUDA_VISIBLE_DEVICES of that Trainer's process.
MULTI_GPU_PROBE = """
import sys, time
import ray
from sweeps.trainer import trainers
from vae_core import load_mnist

ray.init(_node_ip_address=sys.argv[1], num_cpus=2, num_gpus=2, include_dashboard=False)

@ray.remote(num_gpus=1, num_cpus=0)
def choose(streams):
    chosen = streams.of_this_trial()
    time.sleep(2)  # both hold a GPU at once: one each
    (gpu,) = [g for g, handle in streams.handles.items() if handle._actor_id == chosen._actor_id]
    return str(ray.get_gpu_ids()[0]), gpu, ray.get(chosen.pid.remote())

with trainers(True, load_mnist("mnist-5k").limit_train(64), 2, {"device": "cpu"}) as streams:
    for held, gpu, pid in ray.get([choose.remote(streams) for _ in range(2)]):
        env = open(f"/proc/{pid}/environ").read().split("\\0")
        visible = [e.split("=", 1)[1] for e in env if e.startswith("CUDA_VISIBLE_DEVICES=")]
        print("relayed", held, gpu, *visible)
"""


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_with_several_gpus_a_trial_relays_to_the_trainer_of_its_own_gpu(cli_env):
    proc = run_probe(MULTI_GPU_PROBE, {**cli_env, "CUDA_VISIBLE_DEVICES": "2,3"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Ray's own lines may come between (its workers' logs go to this process's output).
    rows = sorted(
        line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("relayed")
    )
    assert rows == [["2", "2", "2"], ["3", "3", "3"]]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"address": "auto"}, "--streams is for a local sweep"),
        ({"gpus_per_trial": 0}, "share a GPU"),
        ({"gpus_per_trial": 1}, "share a GPU"),
        ({"gpus_per_trial": 0.03}, "at most 32 trials at once"),
    ],
)
def test_streams_options_that_cannot_work_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        SweepConfig(name="s", sharing="streams", **options)
