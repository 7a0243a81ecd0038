"""SweepConfig: what one `vae-sweep run` asks for, validated before anything is started."""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, replace

from search_spaces import SearchSpace
from vae_core.config import DATA_SOURCES
from vae_core.errors import ConfigError

# The local Ray's address: 127.0.0.1 in Ray's single-machine mode, where every Ray server
# listens on 127.0.0.1 only (see sweeps/local_ray.py); another 127.x address is kept by Ray
# too, but its servers then listen on all interfaces.
LOCAL_NODE_IP = "127.0.0.1"
NODE_IP_ENV = "VAE_SWEEP_NODE_IP"  # overrides LOCAL_NODE_IP for `vae-sweep run` (tests use it)
SHARED_STORAGE_ENV = "VAE_SWEEP_SHARED_STORAGE"  # "1": --shared-storage (for `ray job submit`)
RAY_ADDRESS_ENV = "RAY_ADDRESS"  # Ray's own: the cluster to join; `vae-sweep run`'s --address
DEFAULT_STORAGE = "results"  # under the current directory, made absolute when the sweep starts
# 4 trials a GPU: the fastest end to end of 0.5, 0.25 and 0.125 with graph-captured steps on an
# H200 (bench/packing.py: 1.14x over 0.5); sharing hides each trial's start-up. On an H100,
# 0.125 tied it under MPS (1.00x, BENCHMARKS.md): not worth halving what each trial gets.
GPU_SHARE = 0.25
# How the trials that share a GPU share it (sweeps/sharing.py): "auto" is MPS where it runs.
SHARING = ("auto", "mps", "time-sliced")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class SweepConfig:
    name: str  # the results folder under `storage` and the Optuna study's name
    space: SearchSpace | None = None  # None: "quick" on CPUs, "default" when Ray has a GPU
    storage: str = DEFAULT_STORAGE  # a local folder or an s3:// / gs:// URI
    samples: int | None = None  # trials; None: the space's
    epochs: int | None = None  # epoch budget (ASHA's max_t); None: the space's
    cpus_per_trial: float = 1.0  # also the trial's torch threads (at least 1)
    # None (a local sweep only): GPU_SHARE when Ray has a GPU now, else 0
    gpus_per_trial: float | None = None
    # Trials at once. None: as many as the local Ray's resources hold; on a cluster, as many
    # as its nodes hold at each moment (Tune starts a trial when resources free up or a node
    # joins), so an autoscaling cluster is not held to what it had at the start.
    max_concurrent: int | None = None
    address: str | None = None  # None: a local Ray in this process; "auto" or HOST:PORT
    node_ip: str = LOCAL_NODE_IP  # the local Ray's address (a loopback one, see local_ray.py)
    data: str = "auto"  # auto, mnist or mnist-5k
    data_root: str | None = None  # MNIST IDX folder; None: vae_core's default
    seed: int = 0  # Optuna's sampler and every trial's initialisation
    shared_storage: bool = False  # a local --storage path every node sees (e.g. an NFS mount)
    resume: bool = False  # continue the sweep `name` instead of starting it
    resume_errored: bool = False  # on resume, errored trials continue from their checkpoints
    restart_errored: bool = False  # on resume, errored trials start again from scratch
    command: tuple[str, ...] = ()  # the command line, recorded in sweep.json
    tensorboard: bool = False  # also write Ray's TensorBoard event files into each trial folder
    # How the trials that share a GPU share it (sweeps/sharing.py): "mps", clients of an NVIDIA
    # MPS daemon (sweeps/mps.py); "time-sliced", processes that take turns; "auto", MPS where
    # it runs on a local sweep's shared GPU. A cluster's nodes share theirs as set up to.
    sharing: str = "auto"

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ConfigError("invalid sweep options: " + "; ".join(problems))

    def resolved(self, *, cluster_gpus: float) -> SweepConfig:
        """Fill every None from the space and from what the Ray cluster has.

        Args:
            cluster_gpus: the GPUs Ray has now; they decide `gpus_per_trial` only where it is
                None, which only a local sweep allows (an autoscaling cluster may have no GPU
                yet, its head has none, and add GPU workers once trials ask for them).

        The space follows the trials' device, not the driver's: the full `default` space for
        GPU trials, `quick` for CPU ones.
        """
        from search_spaces import load_space

        gpus = self.gpus_per_trial
        if gpus is None:
            gpus = GPU_SHARE if cluster_gpus > 0 else 0.0
        space = self.space or load_space("default" if gpus > 0 else "quick")
        return replace(
            self,
            space=space,
            gpus_per_trial=gpus,
            samples=self.samples or space.samples,
            epochs=self.epochs or space.epochs,
        )


def _problems(c: SweepConfig) -> list[str]:
    out = []
    if not isinstance(c.name, str) or not NAME_PATTERN.match(c.name):
        out.append(f"--name must be letters, digits, '.', '_' or '-' (no '/'), but got {c.name!r}")
    for flag, value in (
        ("--samples", c.samples),
        ("--epochs", c.epochs),
        ("--max-concurrent", c.max_concurrent),
    ):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            out.append(f"{flag} must be a positive integer, but got {value!r}")
    if not (
        isinstance(c.cpus_per_trial, (int, float))
        and c.cpus_per_trial > 0
        and math.isfinite(c.cpus_per_trial)
    ):
        out.append(f"--cpus-per-trial must be positive, but got {c.cpus_per_trial!r}")
    gpus = c.gpus_per_trial
    if gpus is not None and not (
        isinstance(gpus, (int, float)) and gpus >= 0 and (gpus <= 1 or float(gpus).is_integer())
    ):
        out.append(
            f"--gpus-per-trial must be 0, a share of one GPU (0 < g <= 1) or a whole "
            f"number of GPUs, but got {gpus!r}"
        )
    if c.data not in DATA_SOURCES:
        out.append(f"--data must be one of {', '.join(DATA_SOURCES)}, but got {c.data!r}")
    if isinstance(c.seed, bool) or not isinstance(c.seed, int) or c.seed < 0:
        out.append(f"--seed must be a non-negative integer, but got {c.seed!r}")
    errored = [
        f
        for f, on in (
            ("--resume-errored", c.resume_errored),
            ("--restart-errored", c.restart_errored),
        )
        if on
    ]
    if errored and not c.resume:
        out.append(f"{' and '.join(errored)} go{'es' if len(errored) == 1 else ''} with --resume")
    if c.resume_errored and c.restart_errored:
        out.append("--resume-errored and --restart-errored exclude each other: choose one")
    if c.address is None:
        out.extend(_node_ip_problems(c.node_ip))
    elif gpus is None and not c.resume:
        # A cluster's GPUs come and go (the autoscaler adds GPU workers once trials wait for
        # them), so what it has at the start says nothing about what the trials should get.
        # A resumed sweep takes its share from its sweep.json.
        out.append(
            f"a sweep on a cluster (--address, or ${RAY_ADDRESS_ENV}) needs --gpus-per-trial: "
            f"0 for CPU trials, or each trial's share of a GPU (e.g. {GPU_SHARE})"
        )
    if c.sharing not in SHARING:
        out.append(f"the GPU sharing must be one of {', '.join(SHARING)}, but got {c.sharing!r}")
    elif c.sharing != "auto":
        flag = f"--{c.sharing}"
        if c.address is not None:
            out.append(
                f"{flag} is for a local sweep: a cluster's GPU nodes share their GPU as they "
                f"are set up to (cluster.yaml starts MPS on its GPU workers; docs/cluster.md)"
            )
        if c.sharing == "mps" and gpus is not None and not 0 < gpus < 1:
            out.append(
                f"{flag} is for trials that share a GPU (--gpus-per-trial below 1), not {gpus!r}"
            )
    return out


def _node_ip_problems(ip: str) -> list[str]:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return [f"the local node IP must be an IPv4 loopback address, but got {ip!r}"]
    # Only loopback keeps a local sweep off the network. (127.0.0.1 stays 127.0.0.1 only in
    # Ray's single-machine mode, which sweeps/local_ray.py turns on; see there.)
    if address.version != 4 or not address.is_loopback:
        return [
            f"the local node IP must be an IPv4 loopback address (127.x.y.z, e.g. "
            f"{LOCAL_NODE_IP}), but got {ip!r}"
        ]
    return []
