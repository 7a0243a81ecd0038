"""Wall and CPU seconds per step of the analysis, as best_trial.json reports them."""

from __future__ import annotations

import time


class Clock:
    """Wall and CPU seconds per step: on a shared machine CPU time says what the work cost."""

    def __init__(self) -> None:
        self.start = self.last = (time.perf_counter(), time.process_time())
        self.laps: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = (time.perf_counter(), time.process_time())
        self.laps[name] = round(now[0] - self.last[0], 2)
        self.cpu[name] = round(now[1] - self.last[1], 2)
        self.last = now

    def totals(self) -> tuple[dict[str, float], dict[str, float]]:
        wall = round(time.perf_counter() - self.start[0], 2)
        cpu = round(time.process_time() - self.start[1], 2)
        return {**self.laps, "total": wall}, {**self.cpu, "total": cpu}
