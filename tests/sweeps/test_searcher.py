"""StudySearch, Ray Tune's searcher over an in-memory Optuna study: what Optuna is told, what
its checkpoint brings back, and optuna.db, rebuilt when it was lost (no Ray needed: Tune calls
these same methods)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from search_spaces import load_space
from sweeps.optuna_study import optuna_space, sampler
from sweeps.results import ResultsWriter, TrialLog, trials_table, write_tables
from sweeps.searcher import StudySearch
from vae_core.train import COIN_FLIP_NATS, EPOCH_METRICS

MAX_EPOCHS = 3


@pytest.fixture
def make_searcher(tmp_path):
    space = load_space("quick")

    def make() -> StudySearch:
        return StudySearch(
            optuna_space(space),
            metric="val_loss",
            mode="min",
            sampler=sampler(0, 8),
            first=[{"z_dim": 10, "fc_size": 400, "lr": 1e-3}],
            max_epochs=MAX_EPOCHS,
            study_name="s",
            results_dir=str(tmp_path),
        )

    return make


def epochs(searcher: StudySearch, trial_id: str, losses: list[float]) -> dict:
    """Report `losses` as epochs 1.. of `trial_id`; the last one as Tune hands it over: to
    on_trial_complete only."""
    results = [
        {"val_loss": loss, "training_iteration": i, "epoch": i, "best_val_loss": min(losses)}
        for i, loss in enumerate(losses, start=1)
    ]
    for result in results[:-1]:
        searcher.on_trial_result(trial_id, result)
    return results[-1]


def exported(tmp_path) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    try:
        return optuna.load_study(study_name="s", storage=storage).get_trials()
    finally:
        storage.engine.dispose()


def test_each_ending_is_told_as_its_state_and_copied_to_optuna_db(make_searcher, tmp_path):
    searcher = make_searcher()
    assert searcher.suggest("a") == {"z_dim": 10, "fc_size": 400, "lr": 1e-3}  # the post's first
    for trial_id in "bcd":
        params = searcher.suggest(trial_id)
        assert 2 <= params["z_dim"] <= 32 and 1e-4 <= params["lr"] <= 1e-2
    searcher.on_trial_complete("a", epochs(searcher, "a", [130.0, 120.0, 125.0]))
    searcher.on_trial_complete("b", epochs(searcher, "b", [150.0]))  # ASHA stopped it
    last = epochs(searcher, "c", [140.0, float("nan")])
    searcher.on_trial_complete("c", {**last, "diverged": True})
    searcher.on_trial_complete("d", None, error=True)
    searcher.on_trial_complete("a", {"val_loss": 1.0})  # repeated on resume: ignored

    told = {t.user_attrs["ray_trial_id"]: t for t in searcher.told()}
    assert (told["a"].state, told["a"].value) == (TrialState.COMPLETE, 120.0)
    assert told["a"].intermediate_values == {1: 130.0, 2: 120.0, 3: 125.0}
    assert (told["b"].state, told["b"].value) == (TrialState.PRUNED, 150.0)
    assert (told["c"].state, told["c"].value) == (TrialState.COMPLETE, COIN_FLIP_NATS)
    assert told["c"].intermediate_values == {1: 140.0}  # NaN is no intermediate value
    assert told["d"].state == TrialState.FAIL
    assert {t.user_attrs["status"] for t in told.values()} == {
        "completed",
        "early_stopped",
        "diverged",
        "error",
    }
    copied = {t.user_attrs["ray_trial_id"]: t for t in exported(tmp_path)}
    assert set(copied) == set("abcd")
    for trial_id, trial in told.items():
        assert (copied[trial_id].state, copied[trial_id].value) == (trial.state, trial.value)
        assert copied[trial_id].params == trial.params


def test_the_checkpoint_brings_the_study_back_and_a_lost_optuna_db_is_rebuilt(
    make_searcher, tmp_path
):
    searcher = make_searcher()
    for trial_id in "abc":
        searcher.suggest(trial_id)
    searcher.on_trial_complete("a", epochs(searcher, "a", [130.0, 120.0, 110.0]))
    searcher.on_trial_result("b", {"val_loss": 140.0, "training_iteration": 1})
    searcher.save(str(tmp_path / "searcher.pkl"))  # Ray's snapshot
    searcher.suggest("late")  # asked after the snapshot: lost with the driver
    (tmp_path / "optuna.db").unlink()  # lost with its machine

    restored = make_searcher()  # a new driver: the searcher as the Tuner was built
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert [t.user_attrs["ray_trial_id"] for t in restored.told()] == ["a"]
    assert [t.user_attrs["ray_trial_id"] for t in exported(tmp_path)] == ["a"]
    # b goes on where it was; c had not reported; TPE then asks new trials as before.
    restored.on_trial_complete("b", epochs(restored, "b", [140.0, 135.0, 125.0]))
    b = next(t for t in restored.told() if t.user_attrs["ray_trial_id"] == "b")
    assert b.intermediate_values == {1: 140.0, 2: 135.0, 3: 125.0} and b.value == 125.0
    assert restored.suggest("d")["z_dim"] >= 2
    assert [t.user_attrs["ray_trial_id"] for t in exported(tmp_path)] == ["a", "b"]


def test_an_errored_trial_run_again_is_asked_anew_with_its_parameters(make_searcher, tmp_path):
    searcher = make_searcher()
    searcher.suggest("a")
    params = searcher.suggest("b")
    searcher.on_trial_complete("b", None, error=True)
    # --resume-errored: Tune runs b again, from its checkpoint, under the same id.
    searcher.on_trial_result("b", {"val_loss": 150.0, "training_iteration": 2})
    searcher.on_trial_complete("b", {"val_loss": 140.0, "training_iteration": 3, "epoch": 3})
    b = [t for t in searcher.told() if t.user_attrs["ray_trial_id"] == "b"]
    assert [t.state for t in b] == [TrialState.FAIL, TrialState.COMPLETE]
    assert b[1].params == params and b[1].value == 140.0
    assert [t.state for t in exported(tmp_path)] == [TrialState.FAIL, TrialState.COMPLETE]
    searcher.on_trial_complete("b", {"val_loss": 1.0, "training_iteration": 3, "epoch": 3})
    assert len(searcher.told()) == 2  # told once more: ignored


def test_a_trial_the_tables_finished_after_the_snapshot_is_told_as_they_say(
    make_searcher, tmp_path
):
    """Ray uploads its snapshot in the background, after which the tables are written: a
    driver killed between the two resumes from a snapshot where a trial the tables call
    finished still runs. The study and the tables' writer keep it as the tables say."""
    searcher = make_searcher()
    searcher.suggest("a")
    searcher.suggest("b")
    searcher.save(str(tmp_path / "searcher.pkl"))  # both running in the snapshot
    log = TrialLog("a", "a", {"z_dim": 10, "fc_size": 400, "lr": 1e-3})
    for number, loss in enumerate([130.0, 120.0, 125.0], start=1):
        log.epochs[number] = {**dict.fromkeys(EPOCH_METRICS), "epoch": number, "val_loss": loss}
        log.epochs[number].update(diverged=False, images_per_second=1.0)
    log.checkpoints[2], log.finished = "checkpoint_000001", "terminated"
    types = {"z_dim": "int", "fc_size": "int", "lr": "float"}
    write_tables(str(tmp_path), {"a": log}, types, MAX_EPOCHS)

    restored = make_searcher()
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert list(restored.asked) == ["b"]  # a is told; Ray's re-run of it changes nothing
    (a,) = restored.told()
    assert (a.state, a.value, a.user_attrs["status"]) == (TrialState.COMPLETE, 120.0, "completed")
    assert a.intermediate_values == {1: 130.0, 2: 120.0, 3: 125.0}
    restored.on_trial_complete("a", None, error=True)
    assert [t.state for t in restored.told()] == [TrialState.COMPLETE]

    writer = ResultsWriter(str(tmp_path), types, MAX_EPOCHS)
    writer.set_state({"logs": {"a": TrialLog("a", "a", log.params)}})  # running, 0 epochs
    writer.write()
    (row,) = trials_table(writer.logs, types, MAX_EPOCHS).to_dict("records")
    assert (row["status"], row["epochs_run"], row["best_val_loss"]) == ("completed", 3, 120.0)
    assert row["checkpoint_path"] == "a/checkpoint_000001/checkpoint.pt"
