"""The tables' contract, pinned literally: names, order and Arrow types of every column."""

import pyarrow.parquet as pq

from results_folder import storage
from results_folder.schema import EPOCH_COLUMNS, STATUSES, trial_columns, typed_frame

EPOCHS = {
    "trial_id": "string",
    "epoch": "int64",
    "train_loss": "double",
    "val_loss": "double",
    "val_mean": "double",
    "val_recon": "double",
    "val_kl": "double",
    "val_median": "double",
    "val_p99": "double",
    "val_outliers": "int64",
    "active_units": "int64",
    "epoch_seconds": "double",
    "images_per_second": "double",
    "diverged": "bool",
}
TRIALS = {
    "trial_id": "string",
    "status": "string",
    "z_dim": "int64",  # the searched parameters, in the space's order
    "lr": "double",
    "best_val_loss": "double",
    "last_val_loss": "double",
    "best_epoch": "int64",
    "epochs_run": "int64",
    "best_val_mean": "double",
    "best_val_recon": "double",
    "best_val_kl": "double",
    "best_val_outliers": "int64",
    "active_units": "int64",
    "wall_seconds": "double",
    "images_per_second": "double",
    "device": "string",
    "precision": "string",
    "node_id": "string",
    "node_ip": "string",
    "hostname": "string",
    "checkpoint_path": "string",
    "error": "string",
}


def written_types(tmp_path, columns, rows=()):
    path = str(tmp_path / "table.parquet")
    storage.write_parquet(typed_frame(list(rows), columns), path)
    schema = pq.read_schema(path)
    return {name: str(schema.field(name).type) for name in schema.names}


def test_an_empty_epochs_table_keeps_every_documented_type(tmp_path):
    assert written_types(tmp_path, EPOCH_COLUMNS) == EPOCHS
    assert list(written_types(tmp_path, EPOCH_COLUMNS)) == list(EPOCHS)  # order too


def test_trials_table_puts_the_searched_parameters_between_status_and_metrics(tmp_path):
    columns = trial_columns({"z_dim": "int", "lr": "float"})
    assert list(written_types(tmp_path, columns).items()) == list(TRIALS.items())


def test_a_column_of_nulls_keeps_its_type(tmp_path):
    rows = [{"trial_id": "a", "epoch": 1, "val_outliers": None, "diverged": None}]
    types = written_types(tmp_path, EPOCH_COLUMNS, rows)
    assert types["val_outliers"] == "int64" and types["diverged"] == "bool"


def test_statuses():
    assert STATUSES == ("completed", "early_stopped", "diverged", "error")
