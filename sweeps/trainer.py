"""--streams: one process per GPU trains the models of all the trials that share it, at once.

Trials that share a GPU are separate processes, and CUDA runs one process's kernels at a time.
With --streams each GPU gets a Trainer, a Ray actor that holds the sweep's data on that GPU and
runs every trial's `vae_core.train` in a thread of its own on a CUDA stream of its own (one
CUDA context, so the GPU need not switch between processes; vae_core.train keeps no
process-wide state, see docs/design.md). A trial still is a Ray Tune trial, with its resources,
its ASHA decisions and its checkpoints; it only relays: it starts its run on its GPU's Trainer,
then asks for one epoch at a time and reports it (sweeps.trial). A run goes on to its next
epoch only when its trial asks for it, that is once Tune has let the trial go on, as it would
in the trial's own process. A run writes each epoch's checkpoint itself, into a folder the
sweep owns, and hands its trial the folder to report: the state never travels through Ray's
object store (pickled in the Trainer, where the other runs wait for the interpreter meanwhile).
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

import ray
from ray.actor import ActorHandle

from sweeps.config import POOL_STREAMS
from sweeps.trial import save_epoch, trains_on
from sweeps.worker_data import WorkerData
from vae_core.config import TrainConfig
from vae_core.data import MnistSplits
from vae_core.device import resolve_device
from vae_core.errors import DeviceError

log = logging.getLogger(__name__)

# A run whose trial has not asked for its next epoch for this long is taken for abandoned and
# stops, freeing its GPU memory. A trial asks again as soon as Tune has taken its last report,
# which takes seconds at most. A run whose trial's process has ended stops at once (Run): Tune
# lets a stopped trial's process go without waiting for the trial's thread, whose `finally`
# would have stopped the run.
ABANDONED_AFTER_S = 600.0
MAX_RUNS = 64  # threads a Trainer serves at once: far more trials than share one GPU
# A Trainer that died (its process, say, killed) comes back; its trials fail and Tune restarts
# them from their checkpoints on it, as it restarts trials whose own process died. Calls that
# mean the same on the new process (all but next_epoch, whose run died with the old one, and
# warm, which a restarted Trainer does without: its first start fetches the data) wait for it
# instead of failing.
MAX_RESTARTS = 3
SAFE_AGAIN = ray.method(max_task_retries=-1)


class Streams:
    """CUDA streams for a Trainer's runs, none held by two live runs at once.

    torch.cuda.Stream() hands out PyTorch's pool of streams (32 per GPU) in turn, so after a
    sweep's first few dozen runs a new run's stream would be a live one's: its kernels would
    queue behind the other run's, and while either captures its CUDA graph on the stream the
    other's kernels would be captured into that graph. So a stream is handed out only when no
    run holds it, and a run waits, up to `wait_s` (by when an abandoned run has let its stream
    go), when every one is held."""

    def __init__(self, new_stream=None, wait_s: float = ABANDONED_AFTER_S) -> None:
        self._new_stream = new_stream  # torch.cuda.Stream when None
        self._wait_s = wait_s
        self._held: set[int] = set()
        self._freed = threading.Condition()

    def take(self, device):
        """A stream of `device` that no live run holds."""
        import torch

        new_stream = self._new_stream or (lambda: torch.cuda.Stream(device))
        with self._freed:
            if not self._freed.wait_for(lambda: len(self._held) < POOL_STREAMS, self._wait_s):
                raise RuntimeError(
                    f"{POOL_STREAMS} runs hold all of PyTorch's streams for this GPU; none "
                    f"came free in {self._wait_s:.0f} s"
                )
            for _ in range(POOL_STREAMS * 8):  # others than the Trainer may take some in turn
                stream = new_stream()
                if stream.cuda_stream not in self._held:
                    self._held.add(stream.cuda_stream)
                    return stream
        raise RuntimeError("no free CUDA stream in PyTorch's pool")

    def give_back(self, stream) -> None:
        with self._freed:
            self._held.discard(stream.cuda_stream)
            self._freed.notify()

    @contextmanager
    def own(self, device) -> Iterator[None]:
        """The block's CUDA work goes on a stream of `device` that it alone holds (a CPU
        device: the block runs as it is). Everything that trains in a Trainer runs so: a
        graph captured on a stream of PyTorch's pool would take in a live run's kernels."""
        if device.type != "cuda":
            yield
            return
        import torch

        stream = self.take(device)
        try:
            with torch.cuda.stream(stream):
                yield
        finally:
            self.give_back(stream)


class RunStopped(Exception):
    """Raised inside a run's thread, at a report, when the run is to end."""


# An epoch as a run hands it to its trial: the metrics, and the folder its checkpoint was written
# to with the seconds that took (sweeps.trial.save_epoch), or None (a diverged epoch).
Epoch = tuple[dict, tuple[str, float] | None]


class Run:
    """One trial's `train` in a thread: hands each epoch's report over and waits to be let on.
    Each epoch's checkpoint goes into a new folder under `folder`; the trial removes it."""

    def __init__(
        self,
        config: TrainConfig,
        checkpoint: dict | None,
        data: MnistSplits,
        folder: str,
        streams: Streams,
        trial_pid: int | None = None,
    ) -> None:
        self._folder, self._streams = folder, streams
        self._trial_pid = trial_pid  # the trial's process, when it runs on this machine
        self._reports: queue.Queue = queue.Queue(maxsize=1)
        self._orders: queue.Queue = queue.Queue()
        self._asked = False
        self.stopped = False  # ended at a report, with nothing left for its trial to read
        self._thread = threading.Thread(
            target=self._train, args=(config, checkpoint, data), daemon=True
        )

    def next_epoch(self) -> Epoch | None:
        """The next epoch (see Epoch), or None when the run has ended.

        Raises whatever `train` raised (a bad checkpoint, say)."""
        if not self._asked:
            self._asked = True
            self._thread.start()
        else:
            self._orders.put("go on")
        while True:
            try:
                kind, value = self._reports.get(timeout=1.0)
                break
            except queue.Empty:  # a thread that ended put what it had to before it did
                if not self._thread.is_alive():
                    raise RuntimeError("the run has ended: stopped, or abandoned") from None
        if kind == "error":
            raise value
        return value

    def stop(self) -> None:
        """End the run at its next report (at once, when it waits at one)."""
        self._orders.put("stop")

    def _train(self, config: TrainConfig, checkpoint: dict | None, data: MnistSplits) -> None:
        from vae_core.train import train

        try:
            with self._streams.own(resolve_device(config.device)):
                train(config, self._report, checkpoint, data=data)
        except RunStopped:
            self.stopped = True
            return
        except BaseException as err:  # handed to the trial, which fails with it
            self._reports.put(("error", err))
            return
        self._reports.put(("epoch", None))  # the end

    def _report(self, metrics: dict, state: dict | None) -> None:
        saved = None if state is None else save_epoch(state, self._folder)
        self._reports.put(("epoch", (metrics, saved)))
        abandoned_at = time.monotonic() + ABANDONED_AFTER_S
        order = None
        while order is None:
            left = abandoned_at - time.monotonic()
            if left <= 0:
                log.warning("a run's trial did not ask for its next epoch: stopping the run")
                raise RunStopped
            if self._trial_pid is not None and not process_alive(self._trial_pid):
                raise RunStopped
            with suppress(queue.Empty):
                order = self._orders.get(timeout=min(left, 1.0))
        if order == "stop":
            raise RunStopped


def process_alive(pid: int) -> bool:
    """Whether process `pid` of this machine still runs (one that ended, but that its parent has
    not reaped yet, does not)."""
    try:
        os.kill(pid, 0)  # signal 0: only whether there is such a process
    except ProcessLookupError:
        return False
    except PermissionError:  # there is, another user's
        return True
    try:  # Linux: its state, after the command name (which may hold spaces and parentheses)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class Trainer:
    """The runs of the trials that share one GPU, each in a thread on a stream of its own.

    Its methods are called by the trials (sweeps.trial), concurrently: a threaded Ray actor.
    Its one argument is the folder its runs write their checkpoints to: a Trainer that Ray
    restarts gets it again, while the data, which every start brings, needs nothing kept.
    """

    def __init__(self, folder: str) -> None:
        self._folder = folder
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        self._streams = Streams()

    def warm(self, data: WorkerData, fixed: dict) -> float:
        """While the trials' processes start: put the data on this Trainer's GPU (creating its
        CUDA context), then train a small model for a few batches as the trials will (their
        shared TrainConfig fields, `fixed`). A process's first run pays, once, for importing
        torch._dynamo (Adam's first step does), setting cuDNN up and loading CUDA's kernels
        at their first use: seconds that the first trials would otherwise wait for. Returns
        the seconds it took."""
        from vae_core.train import train

        started = time.perf_counter()
        config = TrainConfig(**fixed)
        device = resolve_device(config.device)
        with self._lock:
            splits = data.on(device)
        small = {"z_dim": 2, "fc_size": 16, "epochs": 1, "train_limit": 2 * config.batch_size}
        with self._streams.own(device):
            train(replace(config, **small), data=splits)
        return time.perf_counter() - started

    @SAFE_AGAIN
    def start(
        self,
        trial_id: str,
        config: dict,
        checkpoint: dict | None,
        data: WorkerData,
        process: tuple[str, int] | None = None,
    ) -> dict:
        """Set up a trial's run (from `checkpoint` when given) on `data`; a trial restarted
        after a failure replaces its earlier run. `process` is the trial's (Ray node id, PID):
        the run ends when that process does. Returns where it trains
        (sweeps.trial.trains_on)."""
        train_config = TrainConfig(**config)
        here = ray.get_runtime_context().get_node_id()
        pid = process[1] if process is not None and process[0] == here else None
        with self._lock:  # the first start fetches the data; the others wait for it
            splits = data.on(resolve_device(train_config.device))
            self._forget_stopped()
            earlier = self._runs.pop(trial_id, None)
            self._runs[trial_id] = Run(
                train_config, checkpoint, splits, self._folder, self._streams, pid
            )
        if earlier is not None:
            earlier.stop()
        return trains_on(train_config)

    def next_epoch(self, trial_id: str) -> Epoch | None:
        """The trial's next epoch (see Run.next_epoch); the run is forgotten once it ended."""
        run = self._runs.get(trial_id)
        if run is None:
            raise RuntimeError(
                f"trial {trial_id} has no run on this Trainer: the run ended, or the Trainer "
                f"restarted after the run started"
            )
        try:
            epoch = run.next_epoch()
        except Exception:
            self._forget(trial_id, run)
            raise
        if epoch is None:
            self._forget(trial_id, run)
        return epoch

    @SAFE_AGAIN
    def stop(self, trial_id: str) -> None:
        """End the trial's run, if it still has one."""
        with self._lock:
            run = self._runs.pop(trial_id, None)
        if run is not None:
            run.stop()

    @SAFE_AGAIN
    def runs(self) -> int:
        """Runs under way; those that stopped on their own (their trial gone) are forgotten."""
        with self._lock:
            self._forget_stopped()
            return len(self._runs)

    def _forget_stopped(self) -> None:
        """Drop the runs that stopped on their own (their trial's process gone): nothing will
        ask for them again. Called with the lock held."""
        for trial_id in [t for t, run in self._runs.items() if run.stopped]:
            del self._runs[trial_id]

    @SAFE_AGAIN
    def pid(self) -> int:
        """This Trainer's process (one that Ray restarted has another)."""
        return os.getpid()

    def _forget(self, trial_id: str, run: Run) -> None:
        with self._lock:
            if self._runs.get(trial_id) is run:
                del self._runs[trial_id]


@dataclass(frozen=True)
class Trainers:
    """What a relaying trial needs: the Trainers by GPU id, and the data they train on."""

    handles: dict[str, ActorHandle]
    data: WorkerData
    folder: str  # where the runs write their checkpoints, until their trials report them

    def of_this_trial(self) -> ActorHandle:
        """The Trainer of the GPU that Ray gave this trial its share of (the only one, if one)."""
        if len(self.handles) == 1:
            return next(iter(self.handles.values()))
        return self.handles[str(ray.get_gpu_ids()[0])]


def check_streams() -> None:
    """--streams trains on this machine's GPUs (the local Ray's): refuse it without one, before
    anything is started or written.

    Raises:
        DeviceError: no CUDA GPU is visible.
    """
    import torch

    if not torch.cuda.is_available():
        raise DeviceError("--streams needs a CUDA GPU, but none is visible")


@contextmanager
def trainers(on: bool, data: MnistSplits, gpus: int, fixed: dict) -> Iterator[Trainers | None]:
    """A Trainer per GPU of the local Ray, for the block; None when `on` is false. Each takes
    no Ray resources: the trials that relay to it hold the GPU shares and CPUs it uses, so Ray
    packs them as it packs trials that train themselves.

    The Trainers start, and warm up (Trainer.warm, with `fixed`: the TrainConfig fields all
    trials share), while the block goes on and the trials' own processes start: a Trainer that
    cannot start fails its trials with its reason."""
    if not on:
        yield None
        return
    data = WorkerData(data)  # in the object store once; each Trainer fetches it
    actor = ray.remote(num_cpus=0, num_gpus=0, max_concurrency=MAX_RUNS, max_restarts=MAX_RESTARTS)(
        Trainer
    )
    # Ray's GPU ids are the entries of CUDA_VISIBLE_DEVICES when it is set, else 0..gpus-1;
    # a Trainer sees its GPU alone (Ray leaves the variable alone for an actor without GPUs).
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",")[:gpus] if visible else [str(i) for i in range(gpus)]
    # The runs' checkpoints, each removed by its trial once Ray has copied it to the results
    # folder; what a stopped or failed trial left goes with the folder at the end.
    with tempfile.TemporaryDirectory(
        prefix="vae-sweep-streams-", ignore_cleanup_errors=True
    ) as folder:
        handles = {
            gpu: actor.options(runtime_env={"env_vars": {"CUDA_VISIBLE_DEVICES": gpu}}).remote(
                folder
            )
            for gpu in ids
        }
        for handle in handles.values():
            handle.warm.remote(data, fixed)
        log.info(
            "streams: the trials that share a GPU train in one process per GPU, each on a "
            "CUDA stream of its own"
        )
        try:
            yield Trainers(handles, data, folder)
        finally:
            for handle in handles.values():
                ray.kill(handle)
