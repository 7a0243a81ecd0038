"""SearchSpace: what a sweep searches (`params`), what every trial shares (`fixed`) and ASHA's
schedule (`asha`), as read from one YAML file (search_spaces/load.py reads and checks it).
Knows nothing of Ray."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vae_core.config import TrainConfig

SHIPPED_DIR = Path(__file__).parent
PARAM_TYPES = ("int", "float", "choice")
# What a trial's TrainConfig may take from a space, and the value type each needs.
SEARCHABLE = {"z_dim": "int", "fc_size": "int", "lr": "float", "batch_size": "int"}
FIXED = {
    **SEARCHABLE,
    "lr_schedule": "str",
    "epochs": "int",
    "train_limit": "int",
    "precision": "str",
    "compile": "bool",
}
TOP_LEVEL = ("description", "samples", "params", "fixed", "asha")
PARAM_KEYS = {
    "int": ("type", "low", "high", "log"),
    "float": ("type", "low", "high", "log"),
    "choice": ("type", "values"),
}
ASHA_KEYS = ("grace_period", "reduction_factor")
# What a space fixes when its file does not say: TrainConfig's own defaults.
DEFAULT_FIXED = {
    name: getattr(TrainConfig(), name) for name in ("batch_size", "epochs", "precision")
}


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: a range (int/float, optionally log-scaled) or choices."""

    name: str
    type: str  # "int", "float" or "choice"
    low: float | None = None
    high: float | None = None
    log: bool = False  # sample log(value) uniformly: for scales (sizes, learning rates)
    values: tuple = ()  # the choices, for type "choice"

    def contains(self, value: Any) -> bool:
        if self.type == "choice":
            return value in self.values
        return self.low <= value <= self.high

    def describe(self) -> str:
        if self.type == "choice":
            return "one of " + ", ".join(map(str, self.values))
        return f"{self.type} {self.low:g}..{self.high:g}" + (" (log)" if self.log else "")

    def to_dict(self) -> dict:
        if self.type == "choice":
            return {"type": "choice", "values": list(self.values)}
        return {"type": self.type, "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class SearchSpace:
    """What a sweep searches and what it holds fixed, as read from one YAML file."""

    name: str  # the file's stem: "quick", "default", or a user's own
    path: str  # where it was read from, for messages and sweep.json
    params: tuple[Param, ...]
    fixed: dict = field(default_factory=lambda: dict(DEFAULT_FIXED))
    samples: int = 16  # trials in a sweep unless --samples says otherwise
    grace_period: int = 1  # ASHA: epochs every trial gets before it can be stopped
    reduction_factor: int = 3  # ASHA: keep the best 1/rf at each rung (Li et al. 2020)
    description: str = ""

    @property
    def epochs(self) -> int:
        return self.fixed["epochs"]

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def contains(self, point: dict) -> bool:
        """Whether every searched parameter of `point` lies inside the space."""
        return all(p.contains(point[p.name]) for p in self.params)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "path": self.path,
            "description": self.description,
            "samples": self.samples,
            "params": {p.name: p.to_dict() for p in self.params},
            "fixed": dict(self.fixed),
            "asha": {"grace_period": self.grace_period, "reduction_factor": self.reduction_factor},
        }
