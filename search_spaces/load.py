"""Read a search space: a YAML file (or sweep.json's copy) -> a validated, frozen SearchSpace.

Validation collects every problem and raises one ConfigError naming the file and each key, so
a user fixes a file in one pass.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import yaml

from search_spaces.space import (
    ASHA_KEYS,
    DEFAULT_FIXED,
    FIXED,
    PARAM_KEYS,
    PARAM_TYPES,
    SEARCHABLE,
    SHIPPED_DIR,
    TOP_LEVEL,
    Param,
    SearchSpace,
)
from vae_core.config import BATCH_SIZE_RULE, CHOICES, MIN_BATCH_SIZE
from vae_core.errors import ConfigError, one_line

# Settings whose floor lies above 1, with TrainConfig's rule: a space reaching below it would
# load and then fail every trial that drew such a value.
FLOORS = {"batch_size": (MIN_BATCH_SIZE, BATCH_SIZE_RULE)}


def shipped_spaces() -> list[str]:
    """Names of the spaces shipped with the package, e.g. ["default", "quick"]."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def load_space(path_or_name: str | os.PathLike) -> SearchSpace:
    """Load and validate a search space: a shipped name ("quick") or a YAML file's path.

    Raises:
        ConfigError: the file is missing, not YAML, or has unknown keys, bad types, empty,
            inverted or non-positive log ranges, or values below a setting's floor (a batch of
            one); the message names the file and every key.
    """
    path = _find(str(path_or_name))
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read search space {path}: {err}") from err
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        reason = getattr(err, "problem", None) or one_line(err)
        raise ConfigError(f"search space {path} is not valid YAML{at}: {reason}") from err
    return parse_space(raw, name=path.stem, path=str(path))


def parse_space(raw: Any, *, name: str, path: str) -> SearchSpace:
    """Validate an already-parsed mapping (e.g. from sweep.json) into a SearchSpace."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else f"a {type(raw).__name__}"
        raise ConfigError(
            f"search space {path}: must be a mapping with a 'params' key, but the file is {kind}"
        )
    for key in sorted(set(raw) - set(TOP_LEVEL), key=str):
        problems.append(f"{key}: unknown key (known: {', '.join(TOP_LEVEL)})")
    params = _params(raw.get("params"), problems)
    fixed = _fixed(raw.get("fixed", {}), params, problems)
    asha = _section(raw.get("asha", {}), "asha", ASHA_KEYS, problems)
    samples = _positive_int(raw.get("samples", SearchSpace.samples), "samples", problems)
    grace = _positive_int(
        asha.get("grace_period", SearchSpace.grace_period), "asha.grace_period", problems
    )
    rf = _positive_int(
        asha.get("reduction_factor", SearchSpace.reduction_factor),
        "asha.reduction_factor",
        problems,
    )
    if isinstance(rf, int) and rf < 2:
        problems.append(f"asha.reduction_factor: must be at least 2, but got {rf}")
    epochs = fixed.get("epochs")
    if _is_int(grace) and _is_int(epochs) and 1 <= epochs < grace:
        problems.append(
            f"asha.grace_period: must not exceed fixed.epochs ({epochs}), but got {grace}"
        )
    description = raw.get("description", "")
    if not isinstance(description, str):
        problems.append(f"description: must be text, but got {description!r}")
    if problems:
        raise ConfigError(f"search space {path} is invalid: " + "; ".join(problems))
    return SearchSpace(
        name=name,
        path=path,
        params=params,
        fixed=fixed,
        samples=samples,
        grace_period=grace,
        reduction_factor=rf,
        description=description,
    )


def _find(spec: str) -> Path:
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if os.sep not in spec and not spec.endswith((".yaml", ".yml")):
        shipped = SHIPPED_DIR / f"{spec}.yaml"
        if shipped.is_file():
            return shipped
    raise ConfigError(
        f"search space {spec!r} is neither a file nor a shipped space "
        f"({', '.join(shipped_spaces())})"
    )


def _section(value: Any, name: str, known: tuple[str, ...], problems: list[str]) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{name}: must be a mapping, but got {value!r}")
        return {}
    for key in sorted(set(value) - set(known), key=str):
        problems.append(f"{name}.{key}: unknown key (known: {', '.join(known)})")
    return {k: v for k, v in value.items() if k in known}


def _params(raw: Any, problems: list[str]) -> tuple[Param, ...]:
    if not isinstance(raw, dict) or not raw:
        problems.append(
            "params: must be a non-empty mapping of hyperparameters to search "
            f"({', '.join(SEARCHABLE)})"
        )
        return ()
    out = []
    for name, spec in raw.items():
        if name not in SEARCHABLE:
            problems.append(
                f"params.{name}: unknown parameter (searchable: {', '.join(SEARCHABLE)})"
            )
            continue
        param = _param(name, spec, problems)
        if param is not None:
            out.append(param)
    return tuple(out)


def _param(name: str, spec: Any, problems: list[str]) -> Param | None:
    key = f"params.{name}"
    if not isinstance(spec, dict):
        problems.append(
            f"{key}: must be a mapping like {{type: int, low: 2, high: 64}}, but got {spec!r}"
        )
        return None
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        problems.append(f"{key}.type: must be one of {', '.join(PARAM_TYPES)}, but got {kind!r}")
        return None
    n = len(problems)
    spec = _section(spec, key, PARAM_KEYS[kind], problems)
    value_type = SEARCHABLE[name]
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            problems.append(f"{key}.values: must be a non-empty list, but got {values!r}")
            return None
        for i, v in enumerate(values):
            _check_value(name, v, value_type, f"{key}.values[{i}]", problems)
        if len(problems) == n and len(set(values)) < len(values):
            problems.append(f"{key}.values: lists a value twice: {values}")
        if len(problems) > n:
            return None
        return Param(name, "choice", values=tuple(values))
    if kind != value_type:
        problems.append(
            f"{key}.type: {name} is {'an' if value_type == 'int' else 'a'} "
            f"{value_type}, so its type must be {value_type} or choice, "
            f"but got {kind}"
        )
        return None
    if "low" not in spec or "high" not in spec:
        problems.append(f"{key}: needs both low and high")
        return None
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    low_ok = _is_type(low, kind, f"{key}.low", problems)
    high_ok = _is_type(high, kind, f"{key}.high", problems)  # checked too: report both
    if not isinstance(log, bool):
        problems.append(f"{key}.log: must be true or false, but got {log!r}")
    if not (low_ok and high_ok):
        return None
    if low >= high:
        what = "empty" if low == high else "inverted"
        problems.append(f"{key}: the range is {what}: low ({low}) must be below high ({high})")
    if log is True and low <= 0:
        problems.append(f"{key}: a log range needs low > 0, but got low {low}")
    elif low <= 0 or not (math.isfinite(low) and math.isfinite(high)):
        problems.append(f"{key}: {name} must be positive and finite, but got {low}..{high}")
    else:
        _check_floor(name, low, f"{key}.low", problems)
    if len(problems) > n:
        return None
    if kind == "float":
        low, high = float(low), float(high)
    return Param(name, kind, low=low, high=high, log=log)


def _fixed(raw: Any, params: tuple[Param, ...], problems: list[str]) -> dict:
    values = dict(DEFAULT_FIXED)
    raw = _section(raw, "fixed", tuple(FIXED), problems)
    searched = {p.name for p in params}
    for name, value in raw.items():
        if name in searched:
            problems.append(
                f"fixed.{name}: is also in params; a setting is either searched or fixed"
            )
            continue
        key = f"fixed.{name}"
        kind = FIXED[name]
        if name in CHOICES:
            if value not in CHOICES[name]:
                allowed = ", ".join(CHOICES[name])
                problems.append(f"{key}: must be one of {allowed}, but got {value!r}")
        elif kind == "bool":
            if not isinstance(value, bool):
                problems.append(f"{key}: must be true or false, but got {value!r}")
        elif not (name == "train_limit" and value is None):
            _check_value(name, value, kind, key, problems)
        values[name] = value
    for name in searched:
        values.pop(name, None)
    return values


def _is_type(value: Any, kind: str, key: str, problems: list[str]) -> bool:
    """Whether `value` is an int (kind "int") or a number (kind "float"); records it if not."""
    ok = (
        _is_int(value)
        if kind == "int"
        else (isinstance(value, (int, float)) and not isinstance(value, bool))
    )
    if not ok:
        noun = "an integer" if kind == "int" else "a number"
        problems.append(f"{key}: must be {noun}, but got {_show(value)}")
    return ok


def _check_value(name: str, value: Any, kind: str, key: str, problems: list[str]) -> None:
    """Check a setting's type, that it is positive and finite, and that it reaches its floor."""
    if not _is_type(value, kind, key, problems):
        return
    if not (math.isfinite(value) and value > 0):
        noun = "integer" if kind == "int" else "finite number"
        problems.append(f"{key}: must be a positive {noun}, but got {value}")
        return
    _check_floor(name, value, key, problems)


def _check_floor(name: str, value: Any, key: str, problems: list[str]) -> None:
    """Check a positive value against its setting's floor in FLOORS, if it has one."""
    if name in FLOORS and value < FLOORS[name][0]:
        problems.append(f"{key}: {name} must be {FLOORS[name][1]}, but got {value}")


def _positive_int(value: Any, key: str, problems: list[str]) -> Any:
    if not _is_int(value) or value < 1:
        problems.append(f"{key}: must be a positive integer, but got {_show(value)}")
    return value


def _show(value: Any) -> str:
    # PyYAML (YAML 1.1) reads 1e-4 as a string: say so, since the file looks right.
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return repr(value)
        return f"the string {value!r} (YAML reads 1e-4 as text: write 1.0e-4)"
    return repr(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
