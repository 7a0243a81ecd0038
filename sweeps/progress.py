"""A concise live view of a sweep: one line per finished trial and a small table now and then.

Replaces Ray Tune's own progress output (the tuner runs it with verbose=0), which prints every
reported metric of every trial.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from ray import tune

from results_folder.display import format_value, param_text
from sweeps.results import trial_status

log = logging.getLogger("sweeps.progress")

MAX_ROWS = 20  # beyond this the table shows the running trials and the best finished ones


@dataclass
class TrialProgress:
    """What the view shows of one trial."""

    params: dict  # the searched parameters' values
    epoch: int = 0  # the last epoch reported
    best: float = math.inf  # the best finite val loss so far
    diverged: bool = False
    status: str = "pending"  # pending, running, then how it ended (results.trial_status)

    @property
    def ended(self) -> bool:
        return self.status not in ("running", "pending")


class Progress(tune.Callback):
    """Logs (to the `sweeps.progress` logger) how far each trial got and its best val loss."""

    def __init__(
        self, param_names: list[str], samples: int, max_epochs: int, *, interval_s: float = 30.0
    ) -> None:
        self.param_names = list(param_names)
        self.samples = samples
        self.max_epochs = max_epochs
        self.interval_s = interval_s  # seconds between tables while trials run
        self.trials: dict[str, TrialProgress] = {}  # by trial id, in start order
        self._last_table = time.monotonic()
        self._changed = False

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        for t in trials:  # creation order, which the table keeps
            self._row(t)
        self._row(trial).status = "running"
        self._changed = True

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        row = self._row(trial)
        row.epoch = int(result["epoch"])
        row.diverged = row.diverged or bool(result.get("diverged"))
        if math.isfinite(result["val_loss"]):
            row.best = min(row.best, result["val_loss"])
        self._changed = True

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, errored=True)

    def on_step_end(self, iteration, trials, **info) -> None:
        if self._changed and time.monotonic() - self._last_table >= self.interval_s:
            log.info(self.table())

    def on_experiment_end(self, trials, **info) -> None:
        log.info(self.table())

    def get_state(self) -> dict:
        return {"trials": self.trials}

    def set_state(self, state: dict) -> None:
        self.trials = state["trials"]

    def table(self) -> str:
        self._last_table, self._changed = time.monotonic(), False
        rows = list(self.trials.items())  # in start order
        if len(rows) > MAX_ROWS:
            running = [r for r in rows if r[1].status == "running"]
            done = sorted((r for r in rows if r[1].ended), key=lambda r: _sort_key(r[1].best))
            keep = {r[0] for r in running + done[: max(MAX_ROWS - len(running), 5)]}
            rows = [r for r in rows if r[0] in keep]
        head = f"{'trial':<12} {'status':<13} " + " ".join(f"{p:>9}" for p in self.param_names)
        lines = [self.summary(), head + "   epochs  best val"]
        for trial_id, row in rows:
            params = " ".join(f"{format_value(row.params.get(p)):>9}" for p in self.param_names)
            lines.append(
                f"{trial_id:<12} {row.status:<13} {params}   "
                f"{row.epoch:>2}/{self.max_epochs:<3}  {_loss_text(row.best):>8}"
            )
        return "\n".join(lines)

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for row in self.trials.values():
            counts[row.status] = counts.get(row.status, 0) + 1
        running = counts.pop("running", 0)
        counts.pop("pending", None)
        finished = sum(counts.values())
        parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        best = min(self.trials.items(), key=lambda r: _sort_key(r[1].best), default=None)
        best_text = (
            f"; best val loss {best[1].best:.2f} ({best[0]})"
            if best and math.isfinite(best[1].best)
            else ""
        )
        return (
            f"[{time.strftime('%H:%M:%S')}] {finished}/{self.samples} trials finished"
            f"{f' ({parts})' if parts else ''}, {running} running{best_text}"
        )

    def _row(self, trial) -> TrialProgress:
        if trial.trial_id not in self.trials:
            params = {p: trial.config.get(p) for p in self.param_names}
            self.trials[trial.trial_id] = TrialProgress(params)
        return self.trials[trial.trial_id]

    def _finish(self, trial, *, errored: bool) -> None:
        row = self._row(trial)
        row.status = trial_status(
            errored=errored,
            diverged=row.diverged,
            epochs_run=row.epoch,
            max_epochs=self.max_epochs,
        )
        self._changed = True
        best = f"best val loss {row.best:.2f}" if math.isfinite(row.best) else "no loss"
        done = sum(r.ended for r in self.trials.values())
        log.info(
            "[%d/%d] %s %s after %d/%d epochs, %s  (%s)",
            done,
            self.samples,
            trial.trial_id,
            row.status,
            row.epoch,
            self.max_epochs,
            best,
            param_text(row.params),
        )


def _loss_text(value: float) -> str:
    """A loss in the table: 2 decimals (nats), "-" before the first finite one."""
    if not math.isfinite(value):
        return "-"
    return f"{value:.2e}" if value < 0.01 else f"{value:.2f}"


def _sort_key(best: float) -> float:
    return best if math.isfinite(best) else math.inf
