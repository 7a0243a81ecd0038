"""Resources: what the options say is what Ray is asked for (fractional GPUs included)."""

from __future__ import annotations

import pytest

from sweeps.config import SweepConfig
from sweeps.driver import trial_resources
from sweeps.resources import max_concurrent, trial_slots
from sweeps.tuner import fixed_config, make_trainable
from vae_core.errors import ConfigError
from vae_sweep import cli, run


def config_from(*argv: str) -> SweepConfig:
    return run.sweep_config(cli.build_parser().parse_args(["run", *argv]))


@pytest.fixture(scope="module")
def data():
    from vae_core import load_mnist

    return load_mnist("mnist-5k").limit_train(100)


@pytest.mark.parametrize(
    ("argv", "gpus_in_cluster", "cpus", "gpus", "space", "slots"),
    [
        ((), 0, 1.0, 0.0, "quick", 16),  # no GPU: CPU trials, the laptop preset
        ((), 1, 1.0, 0.25, "default", 4),  # a GPU: 4 trials share it, the full space
        (("--gpus-per-trial", "0.5"), 1, 1.0, 0.5, "default", 2),
        (("--gpus-per-trial", "0.25", "--cpus-per-trial", "2"), 2, 2.0, 0.25, "default", 8),
        (("--gpus-per-trial", "0", "--space", "default"), 1, 1.0, 0.0, "default", 16),
    ],
)
def test_options_become_trial_resources(
    ray_local, data, argv, gpus_in_cluster, cpus, gpus, space, slots
):
    config = config_from(*argv).resolved(cluster_gpus=gpus_in_cluster)
    assert (config.cpus_per_trial, config.gpus_per_trial, config.space.name) == (cpus, gpus, space)
    trainable = make_trainable(config, data)
    # tune.with_resources stores the request here; it is what Ray schedules trials by.
    assert trainable._resources.required_resources == {
        "CPU": cpus,
        **({"GPU": gpus} if gpus else {}),
    }
    assert trial_slots(config, {"CPU": 16.0, "GPU": float(gpus_in_cluster)}) == slots
    fixed = fixed_config(config, data)
    assert fixed["device"] == ("cuda" if gpus else "cpu")
    assert fixed["threads"] == int(cpus)


def test_a_trial_larger_than_the_local_ray_is_refused():
    config = config_from("--cpus-per-trial", "4").resolved(cluster_gpus=0)
    with pytest.raises(ConfigError, match="needs 4 CPUs"):
        trial_slots(config, {"CPU": 2.0})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gpus_per_trial": 1.5}, "--gpus-per-trial"),
        ({"gpus_per_trial": -0.25}, "--gpus-per-trial"),
        ({"cpus_per_trial": 0}, "--cpus-per-trial"),
        ({"samples": 0}, "--samples"),
        ({"node_ip": "10.1.2.3"}, "loopback"),
        ({"node_ip": "::1"}, "IPv4 loopback"),
        ({"max_concurrent": 0}, "--max-concurrent"),
        ({"name": "a/b"}, "--name"),
        ({"data": "cifar"}, "--data"),
    ],
)
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SweepConfig(**{"name": "x", **kwargs})


def test_two_whole_gpus_per_trial_are_allowed():
    assert SweepConfig(name="x", gpus_per_trial=2).gpus_per_trial == 2


def test_a_cluster_sweep_must_be_told_its_gpu_share():
    with pytest.raises(ConfigError, match=r"RAY_ADDRESS\) needs --gpus-per-trial: 0 for CPU"):
        SweepConfig(name="x", address="auto")
    assert SweepConfig(name="x", address="auto", gpus_per_trial=0).gpus_per_trial == 0
    # A resumed sweep's share comes from its sweep.json (run refuses the option with --resume).
    assert SweepConfig(name="x", address="auto", resume=True).gpus_per_trial is None


def test_ray_address_in_the_environment_is_the_cluster_to_join(monkeypatch):
    # Ray's own rule for a program given no address; --address still decides where given.
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.5:6379")
    assert config_from("--gpus-per-trial", "0").address == "127.0.0.5:6379"
    assert config_from("--address", "auto", "--gpus-per-trial", "0").address == "auto"
    with pytest.raises(ConfigError, match=r"--address, or \$RAY_ADDRESS\) needs --gpus-per"):
        config_from()
    monkeypatch.setenv("RAY_ADDRESS", "")
    assert config_from().address is None  # set but empty: a local Ray, as Ray reads it


def test_a_cluster_sweep_without_a_gpu_share_is_one_line_before_anything_starts(tmp_path, capsys):
    storage = tmp_path / "results"
    code = cli.main(["run", "--address", "auto", "--storage", str(storage), "--name", "c"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("vae-sweep: error: "), err
    assert "--gpus-per-trial" in err
    assert not storage.exists()


def test_the_local_default_is_127_0_0_1():
    # Ray's single-machine mode keeps it and listens there only (tests/sweeps/test_local_ray.py).
    assert config_from().node_ip == "127.0.0.1"


@pytest.mark.parametrize(
    ("argv", "cluster", "expected"),
    [
        ((), {"CPU": 2.0}, 2),  # local: what the fixed resources hold
        (("--max-concurrent", "1"), {"CPU": 2.0}, 1),  # local: lower on request
        (("--max-concurrent", "8"), {"CPU": 2.0}, 2),  # local: never more than fits
        # A cluster: no limit frozen at the start, even with an empty (CPU: 0) head; Tune
        # runs what the nodes there are hold, as they join.
        (("--address", "auto", "--gpus-per-trial", "0"), {"CPU": 0.0}, None),
        (("--address", "auto", "--gpus-per-trial", "0.25"), {}, None),
        (
            ("--address", "auto", "--gpus-per-trial", "0", "--max-concurrent", "16"),
            {"CPU": 0.0},
            16,
        ),
    ],
)
def test_concurrency_limit(argv, cluster, expected):
    config = config_from(*argv).resolved(cluster_gpus=cluster.get("GPU", 0.0))
    assert max_concurrent(config, cluster) == expected


def test_the_space_follows_the_trials_device_not_the_head(data):
    # cluster.yaml's head: no CPU, no GPU; the trials go to GPU workers that come later.
    config = config_from("--address", "auto", "--gpus-per-trial", "0.25").resolved(cluster_gpus=0)
    assert (config.gpus_per_trial, config.space.name) == (0.25, "default")
    assert fixed_config(config, data)["device"] == "cuda"


def test_tensorboard_is_off_unless_asked_and_a_resume_keeps_the_sweep_s_own():
    assert config_from().tensorboard is False
    assert config_from("--tensorboard").tensorboard is True
    with pytest.raises(ConfigError, match="drop --tensorboard"):
        config_from("--resume", "--name", "x", "--tensorboard")


def test_the_dashboard_command_names_the_study_database():
    from sweeps.optuna_study import watch_command

    assert watch_command("sqlite:////r/x/optuna.db") == "optuna-dashboard sqlite:////r/x/optuna.db"


@pytest.mark.parametrize(
    ("cpus", "gpus", "said"),
    [
        (1, 0.0, "1 CPU per trial"),
        (2, 0.0, "2 CPUs per trial"),
        (1, 0.25, "1 CPU and 0.25 GPU per trial (4 share a GPU)"),
        (1, 0.35, "1 CPU and 0.35 GPU per trial (2 share a GPU)"),  # 3 x 0.35 > 1
        (2, 0.5, "2 CPUs and 0.5 GPU per trial (2 share a GPU)"),
        (1, 1.0, "1 CPU and 1 GPU per trial"),
        (1, 2.0, "1 CPU and 2 GPUs per trial"),
    ],
)
def test_the_sweep_says_what_each_trial_gets(cpus, gpus, said):
    # The start of a sweep's log: the GPU share it chose (by default GPU_SHARE) is visible.
    assert trial_resources(cpus, gpus) == said


def test_errored_trials_run_again_only_on_resume_and_one_way_at_a_time():
    config = run.sweep_config(
        cli.build_parser().parse_args(["run", "--resume", "--name", "x", "--resume-errored"])
    )
    assert (config.resume_errored, config.restart_errored) == (True, False)
    with pytest.raises(ConfigError, match="--restart-errored goes with --resume"):
        run.sweep_config(cli.build_parser().parse_args(["run", "--restart-errored"]))
    with pytest.raises(ConfigError, match="exclude each other"):
        SweepConfig(name="x", resume=True, resume_errored=True, restart_errored=True)
