"""A real sweep (Ray, Optuna, ASHA, Parquet) on the 5k sample: the result folder's contract."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import optuna
import pandas as pd
import pyarrow.parquet as pq
import pytest
import ray

from results_folder import load_checkpoint
from search_spaces import load_space
from vae_core.train import COIN_FLIP_NATS

SAMPLES, EPOCHS = 6, 3
PARAMS = {"z_dim": "int64", "fc_size": "int64", "lr": "double"}
# The contract, written out here rather than imported from the writer: a column dropped or
# renamed in results_folder/schema.py must fail these tests.
TRIAL_COLUMNS_AFTER = [
    "best_val_loss",
    "last_val_loss",
    "best_epoch",
    "epochs_run",
    "best_val_mean",
    "best_val_recon",
    "best_val_kl",
    "best_val_outliers",
    "active_units",
    "wall_seconds",
    "images_per_second",
    "device",
    "precision",
    "node_id",
    "node_ip",
    "hostname",
    "checkpoint_path",
    "error",
]
EPOCH_COLUMNS = [
    "trial_id",
    "epoch",
    "train_loss",
    "val_loss",
    "val_mean",
    "val_recon",
    "val_kl",
    "val_median",
    "val_p99",
    "val_outliers",
    "active_units",
    "epoch_seconds",
    "images_per_second",
    "diverged",
]
STATUSES = {"completed", "early_stopped", "diverged", "error"}
POST_CONFIG = {"z_dim": 10, "fc_size": 400, "lr": 1e-3}  # the post's configuration


@pytest.fixture(scope="module")
def tables(small_sweep):
    return (
        pd.read_parquet(small_sweep / "trials.parquet"),
        pd.read_parquet(small_sweep / "epochs.parquet"),
    )


@pytest.fixture(scope="module")
def study(small_sweep):
    storage = optuna.storages.RDBStorage(f"sqlite:///{small_sweep / 'optuna.db'}")
    yield optuna.load_study(study_name="small", storage=storage)
    storage.engine.dispose()


def test_trials_table_has_the_documented_schema(small_sweep, tables):
    schema = pq.read_schema(small_sweep / "trials.parquet")
    expected = ["trial_id", "status", *PARAMS, *TRIAL_COLUMNS_AFTER]
    assert schema.names == expected
    types = {name: str(schema.field(name).type) for name in schema.names}
    assert {k: types[k] for k in PARAMS} == PARAMS
    for name in ("best_epoch", "epochs_run", "active_units"):
        assert types[name] == "int64"
    for name in ("trial_id", "status", "device", "precision", "node_id", "checkpoint_path"):
        assert types[name] == "string"
    trials, _ = tables
    assert len(trials) == SAMPLES and trials["trial_id"].is_unique


def test_epochs_table_has_one_row_per_trial_epoch(small_sweep, tables):
    schema = pq.read_schema(small_sweep / "epochs.parquet")
    assert schema.names == EPOCH_COLUMNS
    assert str(schema.field("diverged").type) == "bool"
    trials, epochs = tables
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert set(epochs["trial_id"]) == set(trials["trial_id"])
    counts = epochs.groupby("trial_id")["epoch"].agg(["count", "min", "max"])
    for row in trials.itertuples():
        assert tuple(counts.loc[row.trial_id]) == (row.epochs_run, 1, row.epochs_run)
    assert epochs[["train_loss", "val_loss", "val_recon", "val_kl"]].notna().all().all()


def test_asha_stopped_some_trials(tables):
    trials, _ = tables
    assert set(trials["status"]) <= STATUSES
    stopped = trials[trials["status"] == "early_stopped"]
    assert len(stopped) >= 1
    assert (stopped["epochs_run"] < EPOCHS).all()
    assert (trials.loc[trials["status"] == "completed", "epochs_run"] == EPOCHS).all()


def test_trial_rows_agree_with_their_epochs(tables):
    trials, epochs = tables
    for row in trials.itertuples():
        mine = epochs[epochs["trial_id"] == row.trial_id].set_index("epoch")
        assert row.best_val_loss == pytest.approx(mine["val_loss"].min())
        assert row.best_epoch == mine["val_loss"].idxmin()
        assert row.last_val_loss == pytest.approx(mine["val_loss"].iloc[-1])
        assert row.best_val_recon + row.best_val_kl == pytest.approx(row.best_val_mean)
        # val_loss caps outlier images at the fence, so it never exceeds the plain mean and
        # equals it when no image was an outlier
        assert row.best_val_loss <= row.best_val_mean + 1e-9
        if row.best_val_outliers == 0:
            assert row.best_val_loss == pytest.approx(row.best_val_mean)
        assert row.active_units == mine.loc[row.best_epoch, "active_units"]
        assert row.device == "cpu" and row.precision in ("fp32", "bf16")
        assert row.wall_seconds > 0 and row.images_per_second > 0
        assert pd.isna(row.error)


def test_sampled_values_lie_inside_the_space(small_sweep, tables):
    space = load_space(small_sweep.parent.parent / "tiny.yaml")
    trials, _ = tables
    for point in trials[list(PARAMS)].to_dict("records"):
        assert space.contains(point), point
    assert trials[list(PARAMS)].drop_duplicates().shape[0] == SAMPLES


def test_the_posts_config_is_the_first_trial(tables, study):
    trials, _ = tables
    # optuna.db holds the trials as they finished: the first asked started first.
    first = min(study.trials, key=lambda t: t.datetime_start)
    assert first.params == {k: POST_CONFIG[k] for k in PARAMS}
    assert trials.iloc[0]["trial_id"] == first.user_attrs["ray_trial_id"]
    assert {k: trials.iloc[0][k] for k in PARAMS} == first.params


def test_optuna_sees_asha_stops_as_pruned(tables, study):
    trials, _ = tables
    by_id = trials.set_index("trial_id")
    assert len(study.trials) == SAMPLES
    for t in study.trials:
        row = by_id.loc[t.user_attrs["ray_trial_id"]]
        assert t.user_attrs["status"] == row["status"]
        # Every epoch the trial ran is an intermediate value, the last one included.
        assert sorted(t.intermediate_values) == list(range(1, row["epochs_run"] + 1))
        if row["status"] == "early_stopped":
            assert t.state == optuna.trial.TrialState.PRUNED
            assert t.value == pytest.approx(row["last_val_loss"])
        else:
            assert t.state == optuna.trial.TrialState.COMPLETE
            assert t.value == pytest.approx(row["best_val_loss"])
            assert t.value < COIN_FLIP_NATS


def test_best_checkpoints_exist_and_hold_their_epoch(small_sweep, tables):
    trials, _ = tables
    for row in trials.itertuples():
        path = small_sweep / row.checkpoint_path
        state = load_checkpoint(path)
        assert state["epoch"] == row.best_epoch
        assert state["config"]["lr_schedule"] == "cosine"  # the space's fixed setting
        assert {k: state["config"][k] for k in PARAMS} == pytest.approx(
            {k: getattr(row, k) for k in PARAMS}
        )
        # Ray keeps the best and the latest checkpoint only.
        kept = list((small_sweep / Path(row.checkpoint_path).parts[0]).glob("checkpoint_*"))
        assert 1 <= len(kept) <= 2


def test_results_json_has_each_epoch_with_ray_s_own_times(small_sweep, tables):
    # Ray's result.json (not the tables): each epoch, with Ray's own timing of it, which
    # bench/sweep_overhead.py reads to split a trial's time into epochs and what is outside.
    trials, _ = tables
    for trial_id in trials["trial_id"]:
        lines = (small_sweep / trial_id / "result.json").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
        assert [r["training_iteration"] for r in rows] == [r["epoch"] for r in rows]
        for row in rows:
            assert row["time_this_iter_s"] >= row["epoch_seconds"] > 0
            assert row["gpu_sharing"] is None  # CPU trials share no GPU
        assert rows[-1]["time_total_s"] == pytest.approx(sum(r["time_this_iter_s"] for r in rows))


def test_sweep_json_records_how_the_results_were_made(small_sweep):
    record = json.loads((small_sweep / "sweep.json").read_text())
    for key in (
        "name",
        "command",
        "started_at",
        "finished_at",
        "space",
        "search",
        "scheduler",
        "resources",
        "data",
        "metric",
        "mode",
        "versions",
        "storage",
        "optuna_db",
    ):
        assert record[key] is not None, key
    assert record["name"] == "small" and record["metric"] == "val_loss"
    assert record["finished_at"] >= record["started_at"]
    # The trials' results (Ray's whole-second Unix times) fall inside the tuning's span.
    started, finished = (
        datetime.fromisoformat(record[k]).timestamp() for k in ("started_at", "finished_at")
    )
    for path in small_sweep.glob("*/result.json"):
        for line in path.read_text().splitlines():
            assert int(started) <= json.loads(line)["timestamp"] <= finished
    assert record["resources"]["sharing"] == "time-sliced"  # nothing shared a GPU
    assert record["resources"]["sharing_by_node"] == {}
    assert set(record["space"]["params"]) == set(PARAMS)
    assert record["space"]["fixed"]["lr_schedule"] == "cosine"
    assert record["search"]["points_to_evaluate"] == [{k: POST_CONFIG[k] for k in PARAMS}]
    assert record["search"]["seed"] == 0 and record["search"]["constant_liar"] is True
    assert record["scheduler"] == {
        "name": "ASHAScheduler",
        "time_attr": "training_iteration",
        "metric": "val_loss",
        "mode": "min",
        "max_t": EPOCHS,
        "grace_period": 1,
        "reduction_factor": 3,
    }
    assert record["resources"]["cpus_per_trial"] == 1 and record["resources"]["gpus_per_trial"] == 0
    assert record["resources"]["sharing"] == "time-sliced"  # "auto" with no GPU to share
    assert record["data"]["source"] == "mnist-5k" and record["data"]["sizes"]["train"] == 300
    assert {"python", "torch", "ray", "optuna", "vae-sweep"} <= set(record["versions"])
    assert (small_sweep / record["optuna_db"]).is_file()


def test_everything_stayed_on_loopback(tables):
    trials, _ = tables
    assert set(trials["node_ip"]) == {"127.0.0.2"}
    for node in ray.nodes():
        assert (
            node["NodeManagerAddress"].startswith("127.")
            and node["NodeManagerAddress"] != "127.0.0.1"
        )


def test_values_are_finite(tables):
    trials, epochs = tables
    assert all(math.isfinite(v) for v in trials["best_val_loss"])
    assert epochs["diverged"].eq(False).all()
