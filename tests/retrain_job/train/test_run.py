"""The whole job on real stores: publishing, labelled data, the gate, races, canaries, task splits, both models."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from retrain_job.publish import PointerRace, promote
from retrain_job.train.gate import Verdict
from retrain_job.train.run import Candidate, Clock, DriftOutcome, JobOptions, gather_data, publish_candidate
from shared.bundle import list_versions, read_bundle
from shared.pointer import read_pointer
from shared.spec import spec_names
from shared.store import LocalStore, PreconditionFailed
from tests.support.bundles import publish
from tests.support.csv_files import csv_bytes
from tests.support.feedback_log import FeedbackLog
from tests.support.threads import run_threads

V0 = "20250101T000000Z-oldstable"


def _labelled_rows(base_data, n: int, seed: int = 1, shuffle_labels: bool = False) -> list[dict]:
    sample = base_data.sample(n=n, replace=True, random_state=seed)
    rows = sample[["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "island", "sex",
                   "year", "species"]].to_dict("records")
    if shuffle_labels:
        labels = sample["species"].sample(frac=1.0, random_state=seed + 1).tolist()
        for row, label in zip(rows, labels):
            row["species"] = label
    return rows


def test_first_run_on_local_store_publishes_and_reports(job, local_store):
    code, summary = job(str(local_store.root))
    assert code == 0 and summary["decision"] == "promoted"
    pointer, _ = read_pointer(local_store, "penguins")
    assert pointer.stable == summary["candidate"]
    bundle = read_bundle(local_store, "penguins", pointer.stable)
    assert bundle.manifest["metrics"]["holdout"]["accuracy"] >= 0.97
    assert summary["drift"]["status"] == "not_enough_data" and summary["model_task"] == "multiclass"
    assert summary["drift"]["report"].startswith("reports/penguins/drift/")
    assert summary["data"]["holdout"]["method"] == "stratified"
    for folder in (summary["drift"]["report"], "reports/penguins/drift/latest/"):
        assert local_store.read(folder + "report.json")[0] and local_store.read(folder + "report.html")[0]
    assert summary["metrics_sink"] == "log" and summary["durations_s"]["total"] > 0


def test_whole_job_on_gcs_emulator(job, gcs_store, gcs_emulator):
    code, summary = job(gcs_store.uri, env={"STORAGE_EMULATOR_HOST": gcs_emulator.url})
    assert code == 0 and summary["decision"] == "promoted"
    assert read_pointer(gcs_store, "penguins")[0].stable == summary["candidate"]
    code, again = job(gcs_store.uri, env={"STORAGE_EMULATOR_HOST": gcs_emulator.url})
    assert code == 0 and again["decision"] == "promoted"
    assert again["metrics"]["candidate"] == summary["metrics"]["candidate"]  # same data, same metrics
    pointer = read_pointer(gcs_store, "penguins")[0]
    assert pointer.stable == again["candidate"] and pointer.previous == (summary["candidate"],)


def test_labelled_data_bad_rows_and_duplicates(job, local_store, base_data):
    good = _labelled_rows(base_data, 40)
    new_level = {**good[4], "sex": "unknown"}  # a level never seen: accepted, that is how a model learns it
    bad = [{**good[0], "body_mass_g": "-5"}, {**good[1], "species": "Emperor"}, {**good[2], "bill_depth_mm": "x"},
           {**good[3], "year": "1850"}]
    local_store.write("data/labelled/batch-1.csv", csv_bytes([*good, new_level, *bad]))
    local_store.write("data/labelled/copy-of-batch-1.csv", csv_bytes([*good, new_level, *bad]))  # counted once
    local_store.write("data/labelled/garbage.csv", b"\x00\xff not,a\ncsv\x00")
    code, summary = job(str(local_store.root))
    data = summary["data"]
    assert code == 0 and data["labelled_rows"] == 41 and data["rejected_rows"] == 5
    reasons = " | ".join(r["reason"] for r in data["rejected_sample"])
    assert "body_mass_g='-5': must be greater than 500 and at most 50000 g" in reasons
    assert "species='Emperor': must be one of Adelie, Chinstrap, Gentoo" in reasons
    assert "bill_depth_mm='x': must be a number" in reasons and "year='1850'" in reasons
    assert sum(1 for f in data["labelled_files"] if f.get("duplicate_of")) == 1
    assert data["train_rows"] == 273 + 41
    bundle = read_bundle(local_store, "penguins", summary["candidate"])
    assert bundle.contract.categorical[1].levels == ("female", "male", "unknown")


def test_gate_rejects_sabotaged_candidate(job, local_store, base_data, trained_bundle):
    publish(local_store, trained_bundle, V0)
    local_store.write("data/labelled/shuffled.csv", csv_bytes(_labelled_rows(base_data, 3000, shuffle_labels=True)))
    code, summary = job(str(local_store.root))
    assert code == 0 and summary["decision"] == "rejected" and summary["gate"]["reasons"]
    assert read_pointer(local_store, "penguins")[0].stable == V0
    assert list_versions(local_store, "penguins") == [V0]  # nothing of the candidate was written


def test_canary_then_promote_and_rollback_commands(job, local_store, trained_bundle):
    publish(local_store, trained_bundle, V0)
    code, summary = job(str(local_store.root), "--canary-percent", "20")
    assert code == 0 and summary["decision"] == "canary"
    pointer = read_pointer(local_store, "penguins")[0]
    assert (pointer.stable, pointer.canary, pointer.canary_percent) == (V0, summary["candidate"], 20.0)
    code, out = job(str(local_store.root), "rollback-canary")
    assert code == 0 and read_pointer(local_store, "penguins")[0].canary is None
    job(str(local_store.root), "--canary-percent", "20")
    code, out = job(str(local_store.root), "promote-canary")
    pointer = read_pointer(local_store, "penguins")[0]
    assert code == 0 and pointer.stable == out["before"]["canary"] and pointer.previous[0] == V0
    code, out = job(str(local_store.root), "rollback")
    assert code == 0 and read_pointer(local_store, "penguins")[0].stable == V0


class RendezvousStore(LocalStore):
    """A real local store whose pointer reads wait for each other, forcing two writers to race."""

    def __init__(self, root, parties: int) -> None:
        super().__init__(root)
        self.barrier = threading.Barrier(parties)

    def read(self, key):
        result = super().read(key)
        if key.endswith("serving.json"):
            self.barrier.wait(timeout=10)
        return result


def test_two_jobs_racing_on_the_pointer_one_loses_cleanly(local_store, trained_bundle):
    publish(local_store, trained_bundle, V0, "20250101T000000Z-a", "20250101T000000Z-b")
    racing = RendezvousStore(local_store.root, parties=2)
    outcomes = {}

    def contender(version: str) -> None:
        try:
            outcomes[version] = promote(racing, "penguins", version).after.stable
        except PointerRace:
            outcomes[version] = "lost"

    run_threads(contender, ("20250101T000000Z-a", "20250101T000000Z-b"))
    assert sorted(outcomes.values()).count("lost") == 1
    winner = next(v for v in outcomes.values() if v != "lost")
    pointer = read_pointer(local_store, "penguins")[0]
    assert pointer.stable == winner and V0 in pointer.previous


class PointerAlwaysMovedStore(LocalStore):
    """A real local store in which every compare-and-swap of the pointer finds it moved."""

    def write(self, key, data, if_generation_match=None):
        if key.endswith("serving.json"):
            raise PreconditionFailed(key)
        return super().write(key, data, if_generation_match)


def test_publish_step_outcomes_without_and_with_a_lost_race(local_store, trained_bundle):
    publish(local_store, trained_bundle, V0)
    store = PointerAlwaysMovedStore(local_store.root)
    candidate, drift = Candidate(trained_bundle, {}), DriftOutcome({"status": "no_drift"}, "reports/x/", review=False)
    clock = Clock()
    rejected = publish_candidate(store, JobOptions(), candidate, Verdict(False, ["worse"]), drift, clock=clock)
    dry = publish_candidate(store, JobOptions(dry_run=True), candidate, Verdict(True), drift, clock=clock)
    assert (rejected.to_dict(), dry.to_dict()) == ({"decision": "rejected"}, {"decision": "dry-run"})
    lost = publish_candidate(store, JobOptions(), candidate, Verdict(True), drift, clock=clock).to_dict()
    assert lost["decision"] == "lost-race" and "pointer" not in lost and list(clock.durations) == ["stage"]
    assert read_pointer(local_store, "penguins")[0].stable == V0


def test_two_job_processes_at_once_leave_a_valid_pointer(job, gcs_store, gcs_emulator, trained_bundle):
    publish(gcs_store, trained_bundle, V0)
    env = {"STORAGE_EMULATOR_HOST": gcs_emulator.url}
    results = run_threads(lambda _: job(gcs_store.uri, env=env), range(2))
    assert [code for code, _ in results] == [0, 0], results
    assert {s["decision"] for _, s in results} <= {"promoted", "lost-race"}
    pointer = read_pointer(gcs_store, "penguins")[0]
    for version in pointer.chain():
        read_bundle(gcs_store, "penguins", version)  # every version the pointer names is whole


def test_search_split_across_tasks_merges_once(job, local_store):
    code, alone = job(str(local_store.root), "--dry-run", env={"CLOUD_RUN_EXECUTION": "solo"})
    outputs = []
    for index in range(3):
        env = {"CLOUD_RUN_TASK_INDEX": str(index), "CLOUD_RUN_TASK_COUNT": "3", "CLOUD_RUN_EXECUTION": "exec-1"}
        outputs.append(job(str(local_store.root), "--dry-run", env=env)[1])
    assert [o["decision"] for o in outputs] == ["search-share-done", "search-share-done", "dry-run"]
    assert outputs[2]["params"] == alone["params"]
    assert outputs[2]["metrics"] == alone["metrics"]


@pytest.mark.parametrize("value", ["150", "-1"])
def test_bad_canary_percent_fails_the_run_before_any_work(job, local_store, value):
    code, summary = job(str(local_store.root), "--canary-percent", value)
    assert code == 1 and summary["decision"] == "failed" and "canary percent" in summary["error"]
    assert local_store.list("") == []


def _co2_labelled(co2_data, n: int, seed: int = 5) -> list[dict]:
    sample = co2_data.drop(columns=["source"]).sample(n=n, replace=True, random_state=seed)
    rows = sample.to_dict("records")
    for row, target in zip(rows, sample["co2_emissions_g_per_km"].sample(frac=1.0, random_state=seed + 1)):
        row["co2_emissions_g_per_km"] = target
    return rows


def test_co2_job_publishes_through_the_gate_then_rejects_shuffled_targets(job, local_store, co2_data):
    code, summary = job(str(local_store.root), "--model", "co2")
    assert code == 0 and summary["decision"] == "promoted" and summary["model"] == "co2", summary
    assert read_pointer(local_store, "co2")[0].stable == summary["candidate"]
    assert read_pointer(local_store, "penguins")[0] is None  # one model's run touches no other
    regimes = summary["regression"]["regimes"]
    assert list(regimes) == ["rated", "characteristics"]
    assert all(0.87 <= r["coverage"] <= 0.93 and r["mean_width"] > 0 for r in regimes.values())
    assert regimes["rated"]["rmse"] < summary["regression"]["baseline"]["rmse"]
    assert summary["data"]["holdout"]["method"] == "grouped" and summary["data"]["holdout"]["rows"] == 1476
    assert summary["gate"]["policy"] == {"tolerance": 1.0, "coverage_min": 0.87, "coverage_max": 0.93}
    assert local_store.read("reports/co2/drift/latest/report.json")[0]
    assert summary["durations_s"]["total"] < 120  # about 10 s on an idle 2-core machine

    rows = _co2_labelled(co2_data, 3000)
    bad = [{**rows[0], "engine_size_l": 12}, {**rows[1], "co2_emissions_g_per_km": -3}]
    local_store.write("data/labelled/shuffled.csv", csv_bytes(rows + bad))
    code, again = job(str(local_store.root), "--model", "co2")
    assert code == 0 and again["decision"] == "rejected" and again["gate"]["reasons"], again
    assert again["data"]["rejected_rows"] == 2 and again["data"]["holdout"]["labelled_rows_set_aside"] > 300
    reasons = " | ".join(r["reason"] for r in again["data"]["rejected_sample"])
    assert "engine_size_l=12: must be greater than 0.3 and at most 10 L" in reasons.replace("'", "")
    assert "must be greater than 0 and at most 1500 g/km" in reasons
    assert read_pointer(local_store, "co2")[0].stable == summary["candidate"]


def test_all_models_trains_each_model_without_one(job, local_store, trained_bundle):
    publish(local_store, trained_bundle, V0)
    code, summary = job(str(local_store.root), "--all-models", "--if-no-model")
    assert code == 0 and summary["decision"] == "all-models" and list(summary["models"]) == list(spec_names())
    assert summary["models"]["penguins"] == {"decision": "kept", "stable": V0}
    assert summary["models"]["co2"]["decision"] == "promoted"
    code, again = job(str(local_store.root), "--all-models", "--if-no-model")
    assert {m["decision"] for m in again["models"].values()} == {"kept"}


def test_feedback_is_read_as_labelled_rows_through_the_labelled_rules(job, local_store, penguins_spec, base_data,
                                                                     trained_bundle):
    log = FeedbackLog(local_store, penguins_spec, trained_bundle)
    now = datetime.now(UTC)
    rows = base_data.sample(n=30, random_state=2)
    ids = log.predict("req-a", rows, at=now - timedelta(hours=2),  # logged as an older contract accepted them:
                      instances={0: {"body_mass_g": 60000.0}, 1: {"sex": "unknown"}})
    truths = rows["species"].tolist()
    log.feedback([{"id": i, "truth": t} for i, t in zip(ids[:20], truths)], at=now - timedelta(hours=1))
    log.feedback([{"id": i, "truth": t.lower()} for i, t in zip(ids[20:], truths[20:])]
                 + [{"id": ids[5], "truth": truths[5]}, {"id": "never-served-0", "truth": "Adelie"}],
                 at=now - timedelta(minutes=30), source="field-survey")
    log.feedback([{"id": ids[6], "truth": "Gentoo"}], at=now - timedelta(days=8))  # outside the 7 days read
    log.flush()
    code, summary = job(str(local_store.root))
    data = summary["data"]
    assert code == 0 and summary["decision"] == "promoted", summary
    assert data["labelled_rows"] == 29 and data["rejected_rows"] == 1 and data["train_rows"] == 273 + 29
    assert data["feedback"] == {**data["feedback"], "days": 7, "items": 32, "read": 30, "accepted": 29,
                                "rejected": 1, "unknown_ids": 1, "duplicates": 1, "malformed": 0,
                                "invalid_truths": 0}
    assert data["feedback"]["sources"] == {  # ids[5]'s last truth came from the survey: read as the survey's
        "field-survey": {"items": 12, "read": 11, "accepted": 11},
        "labelling-team": {"items": 20, "read": 19, "accepted": 18}}
    [rejected] = data["rejected_sample"]
    assert (rejected["file"], rejected["id"]) == ("feedback", ids[0])
    assert rejected["reason"] == "body_mass_g=60000.0: must be greater than 500 and at most 50000 g"
    assert {"key": "feedback", "rows": 29, "rejected": 1, "read": 30}.items() <= data["labelled_files"][-1].items()
    bundle = read_bundle(local_store, "penguins", summary["candidate"])
    assert bundle.contract.categorical[1].levels == ("female", "male", "unknown")  # learnt from feedback
    assert {"name": "feedback", "rows": 29}.items() <= bundle.manifest["training_data"]["sources"][-1].items()
    cal = summary["calibration"]
    assert cal == bundle.manifest["metrics"]["calibration"] and cal["ece_after"]["holdout"] == \
        summary["metrics"]["candidate"]["ece"] == bundle.manifest["metrics"]["holdout"]["ece"]


def test_feedback_days_default_to_log_days_and_zero_reads_none(local_store, penguins_spec, base_data,
                                                               trained_bundle):
    assert JobOptions(log_days=3).feedback_days == 3 and JobOptions(log_days=3, feedback_days=1).feedback_days == 1
    with pytest.raises(ValueError, match="feedback days"):
        JobOptions(feedback_days=-1)
    log = FeedbackLog(local_store, penguins_spec, trained_bundle)
    ids = log.predict("r", base_data.head(3), at=datetime.now(UTC) - timedelta(hours=2))
    log.feedback([{"id": i, "truth": "Adelie"} for i in ids], at=datetime.now(UTC) - timedelta(hours=1))
    log.flush()
    on = gather_data(local_store, penguins_spec, JobOptions(), clock=Clock())
    off = gather_data(local_store, penguins_spec, JobOptions(feedback_days=0), clock=Clock())
    assert len(on.labelled.rows) == 3 and on.labelled.feedback["accepted"] == 3
    assert len(off.labelled.rows) == 0 and off.labelled.feedback is None and off.labelled.files == []


def test_the_drift_reports_served_rows_come_from_the_feedbacks_parse(local_store, penguins_spec, base_data,
                                                                       trained_bundle):
    """The retrain parses the logs once: the feedback's engine also gives the drift report its served rows (of the
    last log_days only), and without feedback the report reads its own."""
    log = FeedbackLog(local_store, penguins_spec, trained_bundle)
    now = datetime.now(UTC)
    log.predict("old", base_data.head(2), at=now - timedelta(days=3))  # outside log_days=2, inside the feedback's
    ids = log.predict("new", base_data.head(4), at=now - timedelta(hours=2))
    log.feedback([{"id": i, "truth": "Adelie"} for i in ids], at=now - timedelta(hours=1))
    log.flush()
    clock = Clock()
    on = gather_data(local_store, penguins_spec, JobOptions(log_days=2), clock=clock)
    assert on.served is not None and on.served.total == len(on.served.rows) == 4
    served_from = datetime.fromisoformat(on.served.window["from"])
    assert abs(served_from - (now - timedelta(days=2))) < timedelta(minutes=1)  # the report's window, not the engine's
    assert {"feedback", "served"} <= set(clock.durations)
    assert gather_data(local_store, penguins_spec, JobOptions(log_days=2, feedback_days=0), clock=Clock()).served \
        is None
