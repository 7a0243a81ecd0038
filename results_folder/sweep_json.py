"""sweep.json: the resolved settings of a sweep, written by the sweep and read by everyone."""

from __future__ import annotations

import json

from results_folder import storage
from results_folder.layout import SWEEP_JSON
from search_spaces.space import SEARCHABLE
from vae_core.errors import ResultsError


def write_sweep_json(results_dir: str, record: dict) -> None:
    storage.write_text(json.dumps(record, indent=2) + "\n", storage.join(results_dir, SWEEP_JSON))


def read_sweep_json(results_dir: str) -> dict:
    """The folder's sweep.json as a dict.

    Raises:
        ResultsError: it is missing, unreadable, not JSON, or not a JSON object.
    """
    path = storage.join(results_dir, SWEEP_JSON)
    try:
        record = json.loads(storage.read_text(path))
    except json.JSONDecodeError as err:
        raise ResultsError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(record, dict):
        raise ResultsError(f"{path} must hold a JSON object")
    return record


def searched_params(record: dict, *, path: str = SWEEP_JSON) -> dict[str, str]:
    """The searched hyperparameters, in the space's order, each with its kind ("int"/"float"):
    trials.parquet has one column per parameter, of that kind.

    Raises:
        ResultsError: the record has no search space with parameters.
    """
    params = (record.get("space") or {}).get("params")
    if not isinstance(params, dict):
        raise ResultsError(f"{path} has no search space (space.params)")
    unknown = [name for name in params if name not in SEARCHABLE]
    if unknown:
        raise ResultsError(f"{path} searches unknown parameters: {', '.join(unknown)}")
    return param_kinds(params)


def param_kinds(names) -> dict[str, str]:
    """Each searched parameter's kind ("int"/"float"), which is its trials.parquet column's."""
    return {name: SEARCHABLE[name] for name in names}
