"""The monitor end to end: the real function serves both models (a stable and a 50% canary each) over HTTP and
logs to a local store, truths come back through `POST /feedback`, then `python -m retrain_job monitor` reads
the log, measures each version, judges the canaries on those live labels and writes its report and metrics to
a real Cloud Monitoring protocol server. Every expected number is computed here from what was sent and answered.
"""
from __future__ import annotations

import json
import math
import shutil
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from retrain_job.__main__ import main, parse_args
from retrain_job.data.feedback import FeedbackCounts, JoinedRow, Window
from retrain_job.data.labelled import load_base
from retrain_job.monitor.quality import Metric, MonitorReport, VersionQuality
from retrain_job.monitor.run import (
    _verdict_reference,
    canary_tolerance,
    expected_metrics,
    metric_points,
    monitor_prefix,
)
from retrain_job.report import render_monitor_html
from retrain_job.train.evaluate import classifier_metrics
from retrain_job.train.gate import GatePolicy
from shared.bundle import Bundle, make_bundle, read_bundle, write_bundle
from shared.model import decision_threshold, load_model
from shared.pointer import ServingPointer, read_pointer, write_pointer
from shared.settings import JOB, Settings
from shared.spec import ModelSpec, load_spec
from shared.store import LocalStore
from shared.validation import build_batch
from testbed.servers import FunctionServer
from tests.retrain_job.data.test_logs import SinkLog
from tests.support.bundles import STABLE, publish
from tests.support.http import post
from tests.support.jobs import run_job
from tests.support.kinds import LABELS as BINARY_LABELS
from tests.support.kinds import THRESHOLD, binary_bundle, rows

CANARY = "20261102T000000Z-canary00"
PENGUINS, CO2 = load_spec("penguins"), load_spec("co2")
TARGET = {"penguins": "species", "co2": "co2_emissions_g_per_km"}
SPECIES = ("Adelie", "Chinstrap", "Gentoo")
BATCH = 50
RATED_FIELDS = ("fuel_consumption_city_l_per_100km", "fuel_consumption_hwy_l_per_100km",
                "fuel_consumption_comb_l_per_100km", "fuel_consumption_comb_mpg")
UNKNOWN_IDS = ("ghost-0", "ghost-1", "never-predicted-7")


def routing_keys(percent: float = 50.0) -> tuple[list[str], list[str]]:
    """Client keys (X-Request-Key) the function routes to stable and to the canary: crc32 % 10000 < percent*100."""
    stable, canary = [], []
    for k in range(200):
        key = f"client-{k}"
        (canary if zlib.crc32(key.encode()) % 10_000 < percent * 100 else stable).append(key)
    return stable, canary


@dataclass
class Served:
    """One answered row: who answered, and what."""

    version: str
    answer: object
    probabilities: dict | None = None
    interval: tuple[float, float] | None = None


@dataclass
class World:
    """What the module sent and got back, and two snapshots of the store the function logged into."""

    few: Path  # after a few labels per version
    full: Path  # after all the feedback, the server stopped
    served: dict[str, dict[str, Served]] = field(default_factory=dict)  # model -> prediction id -> answer
    truths: dict[str, dict[str, object]] = field(default_factory=dict)  # model -> id -> the last truth sent
    sent: dict[str, list[tuple[str, object, str]]] = field(default_factory=dict)  # model -> (id, truth, source)
    refused: list[tuple[int, dict, str]] = field(default_factory=list)  # (status, body, id) of refused feedback


def request_rows(spec, frame) -> list[dict]:
    """Request objects from data rows: the spec's features and passthrough fields, missing values left out."""
    names = [f.name for f in spec.features] + [p.name for p in spec.passthrough]
    rows = []
    for record in frame.to_dict("records"):
        row = {}
        for name in names:
            value = record.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            row[name] = value.item() if isinstance(value, np.generic) else value
        rows.append(row)
    return rows


def predict(url: str, model: str, rows: list[dict], request_id: str, key: str) -> list[dict]:
    status, body, headers = post(f"{url}/v1/models/{model}:predict", {"instances": rows},
                                 {"X-Request-Id": request_id, "X-Request-Key": key})
    assert status == 200, body
    assert headers["X-Request-Id"] == request_id
    return body["predictions"]


def send_feedback(world: World, url: str, model: str, items: list[tuple[str, object]], source: str) -> None:
    """POST truths in batches; each accepted one is remembered (the last one per id is the truth that counts)."""
    for start in range(0, len(items), BATCH):
        chunk = items[start:start + BATCH]
        status, body, _ = post(f"{url}/feedback", {"model": model, "source": source,
                                                   "instances": [{"id": i, "truth": t} for i, t in chunk]})
        assert status == 202 and body["accepted"] == len(chunk), body
        for i, t in chunk:
            world.sent[model].append((i, t, source))
            world.truths[model][i] = t


def logged(root: Path) -> tuple[int, list[dict]]:
    """Prediction rows and feedback items in the store's sink files."""
    rows, items = 0, []
    for f in sorted((root / "logs").rglob("*.json")):
        for line in f.read_text().splitlines():
            payload = json.loads(line)["jsonPayload"]
            if payload.get("event") in ("prediction", "prediction_rows"):
                rows += len(json.loads(payload["data"]))
            elif payload.get("event") == "feedback":
                items += [{**item, "model": payload["model"]} for item in json.loads(payload["data"])]
    return rows, items


def wait_logged(root: Path, rows: int, items: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while logged(root)[0] < rows or len(logged(root)[1]) < items:
        assert time.monotonic() < deadline, (logged(root)[0], len(logged(root)[1]), rows, items)
        time.sleep(0.1)


def wrong_species(answer: str) -> str:
    return next(s for s in SPECIES if s != answer)


@pytest.fixture(scope="module")
def world(tmp_path_factory, trained_bundle, co2_bundle) -> World:
    root = tmp_path_factory.mktemp("monitor") / "store"
    store = LocalStore(root)
    publish(store, trained_bundle, STABLE, canary=CANARY, percent=50.0)
    publish(store, co2_bundle, STABLE, canary=CANARY, percent=50.0, model="co2")
    rng = np.random.default_rng(7)
    penguin_rows = request_rows(PENGUINS, load_base(PENGUINS).sample(300, random_state=3))
    cars = load_base(CO2).sample(150, random_state=5)
    car_rows = request_rows(CO2, cars)
    for k in range(0, len(car_rows), 3):  # a third without their rated consumption: the other regime answers
        car_rows[k] = {n: v for n, v in car_rows[k].items() if n not in RATED_FIELDS}
    car_truths = [float(t) for t in cars["co2_emissions_g_per_km"]]
    stable_keys, canary_keys = routing_keys()
    world = World(few=root.parent / "few", full=root, served={"penguins": {}, "co2": {}},
                  truths={"penguins": {}, "co2": {}}, sent={"penguins": [], "co2": []})
    server = FunctionServer({"MODEL_STORE": str(root), "LOG_TO_STORE": "1", "POINTER_TTL_S": "60",
                             "LOG_FLUSH_INTERVAL_S": "0.05"}, workers=1, threads=4).start()
    try:
        url = server.url
        ids = {("penguins", "stable"): [], ("penguins", "canary"): [], ("co2", "stable"): [], ("co2", "canary"): []}
        # penguins: six batches, alternately to stable and to the canary
        for b in range(6):
            role = "stable" if b % 2 == 0 else "canary"
            key = (stable_keys if role == "stable" else canary_keys)[b]
            answers = predict(url, "penguins", penguin_rows[b * BATCH:(b + 1) * BATCH], f"pg-{b}", key)
            for j, a in enumerate(answers):
                assert a["id"] == f"pg-{b}-{j}"
                world.served["penguins"][a["id"]] = Served(a["model_version"], a["species"], a["probabilities"])
                ids[("penguins", "stable" if a["model_version"] == STABLE else "canary")].append(a["id"])
        # co2: every car asked twice, once of each version
        for role, keys in (("stable", stable_keys), ("canary", canary_keys)):
            for b in range(3):
                answers = predict(url, "co2", car_rows[b * BATCH:(b + 1) * BATCH], f"car-{role}-{b}", keys[10 + b])
                for a in answers:
                    world.served["co2"][a["id"]] = Served(
                        a["model_version"], a["co2_emissions_g_per_km"],
                        interval=(a["interval"]["lower"], a["interval"]["upper"]))
                    ids[("co2", "stable" if a["model_version"] == STABLE else "canary")].append(a["id"])
        assert all(len(v) == 150 for v in ids.values()), {k: len(v) for k, v in ids.items()}  # routing as computed
        answer = lambda model, i: world.served[model][i].answer  # noqa: E731

        # a few labels per version: not enough for a verdict
        s_ids, c_ids = ids[("penguins", "stable")], ids[("penguins", "canary")]
        send_feedback(world, url, "penguins", [(i, answer("penguins", i)) for i in s_ids[:10]], "labelling-team")
        send_feedback(world, url, "penguins", [(i, answer("penguins", i)) for i in c_ids[:10]], "field-app")
        cs_ids, cc_ids = ids[("co2", "stable")], ids[("co2", "canary")]
        send_feedback(world, url, "co2", [(i, car_truths[k]) for ids_ in (cs_ids, cc_ids)
                                          for k, i in enumerate(ids_[:10])], "workshop")
        wait_logged(root, 600, 40)
        shutil.copytree(root, world.few)

        # the rest: stable right but for every tenth row, the canary wrong on four rows in ten
        stable_items = [(i, wrong_species(answer("penguins", i)) if k % 10 == 0 else answer("penguins", i))
                        for k, i in enumerate(s_ids[10:100], start=10)]
        stable_items += [(i, wrong_species(answer("penguins", i))) for i in s_ids[:5]]  # duplicates: now wrong
        stable_items += [(s_ids[60], answer("penguins", s_ids[60]))]  # a tenth-row wrong truth corrected
        send_feedback(world, url, "penguins", stable_items, "labelling-team")
        canary_items = [(i, wrong_species(answer("penguins", i)) if rng.random() < 0.4 else answer("penguins", i))
                        for i in c_ids[10:100]]
        send_feedback(world, url, "penguins", canary_items, "field-app")
        send_feedback(world, url, "penguins", [(i, "Adelie") for i in UNKNOWN_IDS], "field-app")
        # co2: the same truths for both versions' answers, every eighth one off by +40 g/km
        car_items = [(i, car_truths[k] + (40.0 if k % 8 == 0 else 0.0)) for ids_ in (cs_ids, cc_ids)
                     for k, i in enumerate(ids_) if 10 <= k < 100]
        car_items += [(ids_[5], car_truths[5] + 40.0) for ids_ in (cs_ids, cc_ids)]  # duplicates: last wins
        send_feedback(world, url, "co2", car_items, "workshop")
        # truths of the wrong type are refused and never logged
        for model, pid, truth in (("penguins", s_ids[120], 3), ("penguins", s_ids[121], "Emperor"),
                                  ("co2", cs_ids[120], "lots"), ("co2", cs_ids[121], True)):
            status, body, _ = post(f"{url}/feedback", {"model": model, "instances": [{"id": pid, "truth": truth}]})
            world.refused.append((status, body, pid))
        wait_logged(root, 600, sum(len(v) for v in world.sent.values()))
    finally:
        server.stop()  # its log lines are flushed at exit
    return world


@pytest.fixture
def store_copy(tmp_path):
    """A private copy of a snapshot (the monitor writes reports and may move the pointer)."""
    def copy(snapshot: Path) -> LocalStore:
        target = tmp_path / "store"
        shutil.copytree(snapshot, target)
        return LocalStore(target)
    return copy


@pytest.fixture
def metrics_env(monitoring, monkeypatch):
    monkeypatch.setenv("METRICS_PROJECT", "demo-project")
    monkeypatch.setenv("METRICS_ENDPOINT", monitoring.endpoint)
    monkeypatch.setenv("CLOUD_RUN_JOB", "retrain-monitor")
    return monitoring


def run_main(capsys, *args: str) -> tuple[int, list[dict]]:
    """`python -m retrain_job` in this process; its exit status and its output lines, parsed."""
    capsys.readouterr()
    code = main(list(args))
    return code, [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]


def points(monitoring) -> dict[tuple[str, ...], float]:
    """What the metric server received: (metric, model, version, role[, segment]) -> value."""
    out = {}
    for ts in monitoring.series():
        labels = dict(ts.metric.labels)
        assert set(labels) - {"segment"} == {"model", "model_version", "role"}, labels
        key = (ts.metric.type.removeprefix("custom.googleapis.com/tabular/"), labels["model"],
               labels["model_version"], labels["role"], *([labels["segment"]] if "segment" in labels else []))
        assert key not in out
        out[key] = ts.points[0].value.double_value
    return out


# ---- by hand ---------------------------------------------------------------------------------------------

def by_hand(world: World, model: str, version: str) -> dict:
    """Realised quality of one version from the answers it gave and the last truths sent for them."""
    served = {i: s for i, s in world.served[model].items() if s.version == version}
    labelled = [(served[i], t) for i, t in world.truths[model].items() if i in served]
    out = {"labels": len(labelled), "predictions": len(served)}
    if model == "penguins":
        answers, truths = [s.answer for s, _ in labelled], [t for _, t in labelled]
        out["accuracy"] = sum(a == t for a, t in zip(answers, truths)) / len(labelled)
        out["macro_f1"] = f1_score(truths, answers, average="macro")
        out["log_loss"] = -np.mean([math.log(max(s.probabilities[t], 1e-7)) for s, t in labelled])
        out["cbpe"] = np.mean([s.probabilities[s.answer] for s in served.values()])
    else:
        errors = np.array([s.answer - t for s, t in labelled])
        out["rmse"] = float(np.sqrt(np.mean(errors ** 2)))
        out["mae"] = float(np.mean(np.abs(errors)))
        out["coverage"] = np.mean([s.interval[0] <= t <= s.interval[1] for s, t in labelled])
    return out


def version_of(summary: dict, version: str, role: str) -> dict:
    [found] = [v for v in summary["versions"] if (v["model_version"], v["role"]) == (version, role)]
    return found


# ---- end to end ------------------------------------------------------------------------------------------

def test_live_quality_per_version_is_what_was_sent_and_its_metrics_arrive(world, store_copy, metrics_env, capsys):
    store = store_copy(world.full)
    code, lines = run_main(capsys, "monitor", "--all-models", "--store", str(store.root), "--no-canary-decision")
    assert code == 0
    co2, penguins, last = lines
    assert last["decision"] == "all-models" and set(last["models"]) == {"co2", "penguins"}
    got = points(metrics_env)

    for version, role in ((STABLE, "stable"), (CANARY, "canary")):
        hand, v = by_hand(world, "penguins", version), version_of(penguins, version, role)
        assert (v["labels"], v["predictions"]) == (hand["labels"], hand["predictions"]) == (v["labels"], 150)
        realised = v["realised"]
        assert realised["accuracy"]["value"] == pytest.approx(hand["accuracy"], abs=1e-6)
        assert realised["accuracy"]["low"] < realised["accuracy"]["value"] < realised["accuracy"]["high"]
        assert realised["macro_f1"]["value"] == pytest.approx(hand["macro_f1"], abs=1e-6)
        assert realised["log_loss"]["value"] == pytest.approx(hand["log_loss"], rel=1e-5)
        assert v["estimated_accuracy"]["value"] == pytest.approx(hand["cbpe"], abs=1e-6)  # CBPE beside it
        assert v["estimated_accuracy"]["n"] == 150
        assert v["expected"]["accuracy"] == pytest.approx(0.985507, abs=0.02)  # the manifest's holdout promise
        labels = ("penguins", version, role)
        assert got[("live_accuracy", *labels)] == pytest.approx(hand["accuracy"])
        assert got[("live_accuracy_estimated", *labels)] == pytest.approx(hand["cbpe"], abs=1e-6)
        assert got[("live_macro_f1", *labels)] == pytest.approx(hand["macro_f1"])
        assert got[("live_log_loss", *labels)] == pytest.approx(hand["log_loss"], rel=1e-5)
        assert (got[("live_labelled", *labels)], got[("live_predictions", *labels)]) == (hand["labels"], 150)
    stable, canary = version_of(penguins, STABLE, "stable"), version_of(penguins, CANARY, "canary")
    assert stable["labels"] == 100 and stable["realised"]["accuracy"]["value"] == pytest.approx(0.87)  # 13 wrong
    # per island: the labels add up to the version's, each with its own series
    islands = {key[4]: value for key, value in got.items()
               if key[:4] == ("live_segment_labelled", "penguins", STABLE, "stable")}
    assert set(islands) <= {"island=Biscoe", "island=Dream", "island=Torgersen"} and sum(islands.values()) == 100
    assert canary["verdict"] == "degraded" and any("holdout" in r for r in canary["reasons"])

    for version, role in ((STABLE, "stable"), (CANARY, "canary")):
        hand, v = by_hand(world, "co2", version), version_of(co2, version, role)
        assert (v["labels"], v["predictions"]) == (hand["labels"], hand["predictions"]) == (100, 150)
        for name in ("rmse", "mae", "coverage"):
            assert v["realised"][name]["value"] == pytest.approx(hand[name], rel=1e-5), name
            assert got[(f"live_{name}", "co2", version, role)] == pytest.approx(hand[name], rel=1e-9), name
        assert v["estimated_accuracy"] is None and ("live_accuracy", "co2", version, role) not in got
        mix = v["expected"]["regime_mix"]
        assert mix == {"rated": pytest.approx(0.66, abs=0.02), "characteristics": pytest.approx(0.34, abs=0.02)}

    # every feedback item in one count: duplicates once with the last truth winning, unknown ids dropped
    fb = penguins["feedback"]
    assert fb["items"] == len(world.sent["penguins"]) == 10 + 10 + 90 + 5 + 1 + 90 + 3
    counts = (fb["unknown_ids"], fb["duplicates"], fb["joined"], fb["invalid_truths"], fb["malformed"])
    assert counts == (3, 6, 200, 0, 0)
    assert fb["items"] == fb["unknown_ids"] + fb["duplicates"] + fb["joined"]
    assert fb["by_source"] == {"field-app": 103, "labelling-team": 106}
    assert got[("feedback_unknown_ids", "penguins", "none", "none")] == 3
    assert got[("feedback_unknown_ids", "co2", "none", "none")] == 0
    assert co2["feedback"]["duplicates"] == 2 and co2["feedback"]["joined"] == 200
    assert all(s == "monitoring" for s in (co2["metrics_sink"], penguins["metrics_sink"]))

    # judged but not applied: the pointers are as published
    assert penguins["canary"]["decision"] == "rollback" and co2["canary"]["decision"] == "promote"
    assert penguins["canary"]["action"] == "not applied: --no-canary-decision"
    for model in ("penguins", "co2"):
        assert read_pointer(store, model)[0].canary == CANARY

    # the report: JSON and HTML beside the drift reports, stamped and latest, a section per version
    report = json.loads((store.root / monitor_prefix("penguins") / "latest.json").read_text())
    assert penguins["report"].startswith("reports/penguins/monitor/") and (store.root / penguins["report"]).exists()
    assert {"schema_version", "generated_at", "model", "task", "window", "min_labels", "pointer", "feedback",
            "versions", "guards", "canary"} <= set(report)
    assert [(v["model_version"], v["role"]) for v in report["versions"]] == [(STABLE, "stable"), (CANARY, "canary")]
    guards = {g["source"]: g for g in report["guards"]}
    wrong_confident = sum(1 for i, t in world.truths["penguins"].items() if i in world.served["penguins"]
                          and world.served["penguins"][i].version == CANARY and t != world.served["penguins"][i].answer
                          and world.served["penguins"][i].probabilities[world.served["penguins"][i].answer] >= 0.9)
    assert guards["field-app"]["confident_disagreements"] == wrong_confident > 0
    page = (store.root / monitor_prefix("penguins") / "latest.html").read_text()
    assert STABLE in page and CANARY in page and "<script" not in page
    assert "rollback" in page and "not applied: --no-canary-decision" in page and "CBPE" in page


def test_truths_of_the_wrong_type_are_refused_and_never_reach_the_log(world):
    assert [status for status, _, _ in world.refused] == [400, 400, 400, 400]
    for _, body, _ in world.refused:
        assert "instances[0].truth" in json.dumps(body)
    _, items = logged(world.full)
    refused = {pid for _, _, pid in world.refused}
    assert not refused & {item["id"] for item in items}


def test_a_worse_canary_is_rolled_back_and_an_equal_one_promoted_on_live_labels(world, store_copy, capsys):
    store = store_copy(world.full)
    code, [dry] = run_main(capsys, "monitor", "--model", "penguins", "--store", str(store.root), "--dry-run")
    assert code == 0 and dry["canary"]["decision"] == "rollback" and dry["canary"]["action"] == "not applied: --dry-run"
    assert read_pointer(store, "penguins")[0].canary == CANARY

    code, lines = run_main(capsys, "monitor", "--all-models", "--store", str(store.root))
    co2, penguins, last = lines
    assert code == 0
    rolled = penguins["canary"]
    assert (rolled["decision"], rolled["action"], rolled["judged_on"]) == ("rollback", "rolled back", "live labels")
    assert rolled["labels"] == {"canary": 100, "stable": 100, "min_labels": 30}
    hand_c, hand_s = by_hand(world, "penguins", CANARY), by_hand(world, "penguins", STABLE)
    assert f"accuracy: canary {hand_c['accuracy']:.4g} (95% " in rolled["evidence"]
    assert f"vs stable {hand_s['accuracy']:.4g} (95% " in rolled["evidence"] and "-> fails" in rolled["evidence"]
    assert rolled["tolerance"] == {"accuracy": 0.01, "macro_f1": 0.01}  # the spec's [gate]
    pointer = read_pointer(store, "penguins")[0]
    assert (pointer.stable, pointer.canary, pointer.canary_percent) == (STABLE, None, 0.0)
    assert rolled["pointer"]["canary"] is None

    promoted = co2["canary"]
    assert (promoted["decision"], promoted["action"]) == ("promote", "promoted")
    assert "rmse: canary" in promoted["evidence"] and "better by 0," in promoted["evidence"]  # the same answers
    assert promoted["tolerance"]["rmse"] > 1.0  # the gate's 1 g/km, scaled to the labelled rows' regimes
    pointer = read_pointer(store, "co2")[0]
    assert (pointer.stable, pointer.canary, pointer.previous[0]) == (CANARY, None, STABLE)
    assert last["models"]["penguins"]["canary"] == {"canary": CANARY, "decision": "rollback", "action": "rolled back"}


def test_too_few_labels_leave_the_canary_serving_and_write_no_realised_metric(world, store_copy, monitoring):
    store = store_copy(world.few)
    code, summary = run_job(str(store.root), "monitor", "--model", "penguins",
                            env={"METRICS_PROJECT": "demo-project", "METRICS_ENDPOINT": monitoring.endpoint},
                            timeout=60)
    assert code == 0 and summary["decision"] == "monitored"
    canary = summary["canary"]
    assert (canary["decision"], canary["action"]) == ("undecided", "left serving")
    assert canary["evidence"] == "not enough labels: canary 10, stable 10, at least 30 each needed"
    assert canary["labels"] == {"canary": 10, "stable": 10, "min_labels": 30}
    assert read_pointer(store, "penguins")[0].canary == CANARY
    for v in summary["versions"]:
        assert v["verdict"] is None and v["reasons"] == ["not enough labels: 10 of 30"]
        assert v["realised"]["accuracy"]["n"] == 10  # the numbers are there, without a verdict
    got = points(monitoring)
    for version, role in ((STABLE, "stable"), (CANARY, "canary")):
        assert got[("live_labelled", "penguins", version, role)] == 10
        assert ("live_accuracy_estimated", "penguins", version, role) in got  # CBPE needs no labels
        assert ("live_accuracy", "penguins", version, role) not in got  # an alert on it needs no second condition
        assert ("live_macro_f1", "penguins", version, role) not in got


# ---- the pieces ------------------------------------------------------------------------------------------

def _row(instance: dict, predicted: float, truth: float) -> JoinedRow:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return JoinedRow("r-0", "v", "stable", instance, predicted, truth, "s", now, now)


def test_a_regressor_is_held_to_its_regimes_promise_on_the_rows_it_served(co2_bundle):
    manifest = co2_bundle.manifest
    regimes = manifest["metrics"]["holdout"]["regimes"]
    rows = [_row({"fuel_consumption_comb_l_per_100km": 9.0}, 200, 200)] * 3 + [_row({"engine_size_l": 2.0}, 200, 200)]
    expected = expected_metrics(manifest, rows)
    assert expected["regime_mix"] == {"rated": 0.75, "characteristics": 0.25}
    assert expected["rmse"] == pytest.approx(math.sqrt(0.75 * regimes["rated"]["rmse"] ** 2
                                                       + 0.25 * regimes["characteristics"]["rmse"] ** 2))
    assert expected["mae"] == pytest.approx(0.75 * regimes["rated"]["mae"] + 0.25 * regimes["characteristics"]["mae"])
    assert "rmse" not in expected_metrics(manifest, [])  # no rows: only the per-regime figures
    tolerance = canary_tolerance(CO2, GatePolicy.of(CO2), expected)
    assert tolerance["rmse"] == pytest.approx(1.0 * expected["rmse"] / regimes["rated"]["rmse"])
    assert tolerance["coverage"] == pytest.approx(0.9 - 0.87)
    assert canary_tolerance(PENGUINS, GatePolicy.of(PENGUINS), None) == {"accuracy": 0.01, "macro_f1": 0.01}


def test_realised_metrics_are_written_only_from_the_minimum_count():
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def quality(version: str, labels: int) -> VersionQuality:
        return VersionQuality(version, "stable", "classifier", labels, 200,
                              {"accuracy": Metric(0.9, labels, 0.8, 0.95, "wilson")},
                              estimated_accuracy=Metric(0.92, 200, 0.9, 0.94, "cbpe"))

    report = MonitorReport("penguins", Window(now, now, now), FeedbackCounts(unknown_ids=4),
                           (quality("few", 29), quality("enough", 30)), (), 30, 0.9)
    names = {(p.name, p.labels["model_version"]) for p in metric_points(report, 30)}
    assert ("live_accuracy", "enough") in names and ("live_accuracy", "few") not in names
    assert {("live_labelled", "few"), ("live_accuracy_estimated", "few"), ("feedback_unknown_ids", "none")} <= names


def test_monitor_flags_default_to_their_settings_and_only_task_0_acts(tmp_path, capsys, monkeypatch):
    settings = Settings.from_env({"MONITOR_FEEDBACK_HOURS": "6", "MONITOR_PREDICTION_DAYS": "2.5",
                                  "MONITOR_MIN_LABELS": "50"}, reader=JOB)
    args = parse_args(["monitor"], settings)
    assert (args.command, args.feedback_hours, args.prediction_days, args.min_labels, args.canary_decision) == (
        "monitor", 6.0, 2.5, 50, True)
    args = parse_args(["monitor", "--min-labels", "5", "--no-canary-decision", "--feedback-hours", "1"], settings)
    assert (args.min_labels, args.canary_decision, args.feedback_hours) == (5, False, 1.0)
    defaults = Settings()
    assert (defaults.monitor_feedback_hours, defaults.monitor_prediction_days, defaults.monitor_min_labels) == (
        24.0, 7.0, 30)
    monkeypatch.setenv("CLOUD_RUN_TASK_COUNT", "2")
    monkeypatch.setenv("CLOUD_RUN_TASK_INDEX", "1")
    code, [line] = run_main(capsys, "monitor", "--store", str(tmp_path / "store"))
    assert code == 0 and line["decision"] == "skipped" and not (tmp_path / "store").exists()  # nothing read


def test_the_page_escapes_what_it_shows():
    report = {"title": "<b>T</b>", "model": "m", "task": "classifier", "generated_at": "now", "min_labels": 30,
              "confidence": 0.9, "window": {"feedback_from": "a", "to": "b", "predictions_from": "c"},
              "feedback": {k: 0 for k in ("items", "joined", "unknown_ids", "duplicates", "late", "invalid_truths",
                                          "malformed")},
              "canary": {"decision": "undecided", "canary": "<v2>", "percent": 10.0, "action": "left serving",
                         "evidence": "not enough labels: canary 1, stable 2", "labels": {"canary": 1, "stable": 2}},
              "versions": [], "guards": [{"source": "<s>", "items": 1, "joined": 1, "confident": 0,
                                          "confident_disagreements": 0, "confident_disagreement_share": None,
                                          "outside_interval": 0}]}
    page = render_monitor_html(report)
    assert "<b>T</b>" not in page and "&lt;v2&gt;" in page and "&lt;s&gt;" in page
    assert "No predictions of this model in the window" in page


# ---- a binary classifier -----------------------------------------------------------------------------------

APPROVALS = "approvals"
BINARY_STABLE, BINARY_CANARY = "20261101T000000Z-apprstab", "20261102T000000Z-apprcana"
CANARY_THRESHOLD = 0.6
BINARY_LIVE = ("accuracy", "macro_f1", "log_loss", "roc_auc", "pr_auc", "brier", "precision", "recall", "f1")
APPROVALS_SPEC = """
name = "approvals"
title = "Approval classifier"
task = "binary"

[target]
name = "approved"
labels = ["no", "yes"]
positive = "yes"

[threshold]
rule = "best_f1"

[[features]]
name = "x1"
kind = "numeric"
bounds = [-100.0, 100.0]

[[features]]
name = "x2"
kind = "numeric"
bounds = [-100.0, 100.0]
required = false

[[features]]
name = "colour"
kind = "categorical"

[data]
file = "approvals.csv"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[gate]
tolerance = 0.05
# wide on the thresholded figures: the canary is judged here on how it ranks
accuracy_tolerance = 0.5
macro_f1_tolerance = 0.5
roc_auc_tolerance = 0.05
"""


def binary_spec(folder: Path, gate_extra: str = "") -> ModelSpec:
    """The binary model's spec written into a scratch specs folder (SPECS_DIR of a job process) and loaded."""
    (folder / APPROVALS).mkdir(parents=True, exist_ok=True)
    text = APPROVALS_SPEC if not gate_extra else APPROVALS_SPEC.replace("roc_auc_tolerance = 0.05", gate_extra)
    (folder / APPROVALS / "spec.toml").write_text(text)
    return load_spec(APPROVALS, specs_dir=folder)


def p_yes(bundle: Bundle, instances: list[dict]) -> np.ndarray:
    """P(yes) of request rows, as the function computes it from the bundle."""
    model = load_model(APPROVALS, bundle, "store", fast_max_rows=0)
    return model.predictor.outputs(build_batch(model.contract, instances).matrix)[:, 1]


def binary_version(version: str, threshold: float, holdout_seed: int) -> Bundle:
    """tests.support.kinds' binary model under `version` with `threshold` in its manifest and the holdout metrics
    retrain_job.train.evaluate gives at that threshold (truths drawn from its own probabilities)."""
    base = binary_bundle()
    instances = rows(300, seed=holdout_seed)
    p = p_yes(base, instances)
    y = (np.random.default_rng(holdout_seed).random(len(p)) < p).astype(int)
    sections = {k: v for k, v in base.manifest.items() if k not in {"format", "version", "created_at", "files"}}
    sections["threshold"] = {**sections["threshold"], "value": threshold}
    sections["metrics"] = {"holdout": classifier_metrics(np.column_stack([1 - p, p]), y, threshold)}
    return make_bundle(version, base.files, **sections)


@dataclass
class BinaryWorld:
    """A store with a binary model's stable and canary, the log of what each answered and the truths sent."""

    store: LocalStore
    specs: Path
    bundles: dict[str, Bundle]
    answered: dict[str, tuple[np.ndarray, list[str], dict[str, int]]]  # version -> logged proba, answers, truths


@pytest.fixture
def binary_world(tmp_path) -> BinaryWorld:
    """Each version answers 200 rows as the function does (yes iff P(yes) >= its manifest's threshold; the
    probabilities logged to 6 decimals); 150 of each come back labelled: stable's truths drawn from its own
    probabilities, the canary's unrelated to its inputs (a model that no longer ranks)."""
    specs = tmp_path / "specs"
    binary_spec(specs)
    store = LocalStore(tmp_path / "store")
    bundles = {BINARY_STABLE: binary_version(BINARY_STABLE, THRESHOLD, 71),
               BINARY_CANARY: binary_version(BINARY_CANARY, CANARY_THRESHOLD, 72)}
    for bundle in bundles.values():
        write_bundle(store, APPROVALS, bundle)
    write_pointer(store, APPROVALS, ServingPointer(BINARY_STABLE, (), BINARY_CANARY, 50.0),
                  read_pointer(store, APPROVALS)[1])
    log = SinkLog(store)
    at = datetime.now(UTC) - timedelta(hours=2)
    rng = np.random.default_rng(9)
    answered = {}
    for k, (version, role, threshold) in enumerate(((BINARY_STABLE, "stable", THRESHOLD),
                                                    (BINARY_CANARY, "canary", CANARY_THRESHOLD))):
        instances = rows(200, seed=80 + k)
        p = p_yes(bundles[version], instances)
        predicted = [BINARY_LABELS[int(v >= threshold)] for v in p]
        proba = np.round(np.column_stack([1 - p, p]), 6)
        log.prediction(f"ap-{role}", predicted, at=at, model=APPROVALS, version=version, role=role,
                       instances=instances, probabilities=proba.tolist(), labels=list(BINARY_LABELS))
        truths = rng.random(200) < (p if role == "stable" else np.full(200, p.mean()))
        sent = {f"ap-{role}-{j}": int(truths[j]) for j in range(150)}
        log.feedback([{"id": i, "truth": BINARY_LABELS[t]} for i, t in sent.items()], at=at + timedelta(minutes=30),
                     model=APPROVALS)
        answered[version] = (proba, predicted, sent)
    log.join(APPROVALS)  # flushes the sink
    return BinaryWorld(store, specs, bundles, answered)


def test_binary_live_quality_is_evaluate_s_at_each_versions_threshold_and_its_metrics_arrive(binary_world,
                                                                                           monitoring):
    w = binary_world
    code, summary = run_job(str(w.store.root), "monitor", "--model", APPROVALS, "--no-canary-decision",
                            env={"SPECS_DIR": str(w.specs), "METRICS_PROJECT": "demo-project",
                                 "METRICS_ENDPOINT": monitoring.endpoint}, timeout=120)
    assert (code, summary["decision"]) == (0, "monitored"), summary
    got = points(monitoring)
    for version, role, threshold in ((BINARY_STABLE, "stable", THRESHOLD), (BINARY_CANARY, "canary",
                                                                           CANARY_THRESHOLD)):
        proba, predicted, sent = w.answered[version]
        rows_ = [int(i.rsplit("-", 1)[1]) for i in sent]
        offline = classifier_metrics(proba[rows_], np.array(list(sent.values())), threshold)
        assert [predicted[j] for j in rows_] == [BINARY_LABELS[int(p >= threshold)] for p in proba[rows_, 1]]
        v = version_of(summary, version, role)
        assert (v["labels"], v["predictions"], v["threshold"]) == (150, 200, threshold)
        assert tuple(v["realised"]) == BINARY_LIVE
        labels = (APPROVALS, version, role)
        for name in BINARY_LIVE:
            realised = v["realised"][name]
            assert realised["value"] == pytest.approx(offline[name], rel=1e-5, abs=2e-6), (version, name)
            assert realised["low"] <= realised["value"] <= realised["high"], (version, name)
            assert got[(f"live_{name}", *labels)] == pytest.approx(offline[name], abs=1e-6), (version, name)
        promised = w.bundles[version].manifest["metrics"]["holdout"]
        assert {k: v["expected"][k] for k in ("roc_auc", "pr_auc", "brier", "threshold", "precision", "recall")} == {
            k: pytest.approx(promised[k], rel=1e-5) for k in ("roc_auc", "pr_auc", "brier", "threshold", "precision",
                                                               "recall")}
        assert v["expected"]["threshold"] == threshold
    stable, canary = version_of(summary, BINARY_STABLE, "stable"), version_of(summary, BINARY_CANARY, "canary")
    assert stable["verdict"] == "ok" and canary["verdict"] == "degraded"
    assert any(r.startswith("roc_auc ") and "below the holdout's" in r for r in canary["reasons"])
    outcome = summary["canary"]
    assert (outcome["decision"], outcome["action"]) == ("rollback", "not applied: --no-canary-decision")
    assert outcome["tolerance"] == {"accuracy": 0.5, "macro_f1": 0.5, "roc_auc": 0.05}  # the spec's [gate]
    [auc_line] = [line for line in outcome["evidence"].split("; ") if line.startswith("roc_auc:")]
    assert auc_line.endswith("tolerance 0.05 -> fails") and "-> fails" not in outcome["evidence"].split("; ")[0]

    report = json.loads((w.store.root / monitor_prefix(APPROVALS) / "latest.json").read_text())
    assert (report["task"], report["positive"]) == ("classifier", "yes")
    entry = next(v for v in report["versions"] if v["model_version"] == BINARY_CANARY)
    assert (entry["positive"], entry["threshold"]) == ("yes", CANARY_THRESHOLD)
    assert entry["threshold_note"] == "yes when P(yes) >= 0.6 (the version's manifest)"
    page = (w.store.root / monitor_prefix(APPROVALS) / "latest.html").read_text()
    promised = w.bundles[BINARY_CANARY].manifest["metrics"]["holdout"]
    for name in ("roc_auc", "pr_auc", "brier", "precision", "recall"):  # the holdout's promise beside each
        assert f"<td>{promised[name]:.4g}</td>" in page, name
    for shown in ("ROC AUC", "PR AUC (average precision)", "Brier score", "precision at the threshold",
                  "recall at the threshold", "binary: positive class yes", "decisions: yes when P(yes) &gt;= 0.37",
                  "decisions: yes when P(yes) &gt;= 0.6", f"{entry['metrics']['roc_auc']['value']:.4g}"):
        assert shown in page, shown


def test_a_binary_version_is_held_to_its_roc_auc_at_its_manifest_threshold(tmp_path):
    spec = binary_spec(tmp_path / "specs")
    manifest = binary_version(BINARY_STABLE, THRESHOLD, 71).manifest
    holdout = manifest["metrics"]["holdout"]
    expected = expected_metrics(manifest, [])
    assert expected == {k: holdout[k] for k in (*BINARY_LIVE, "threshold", "rows")}
    assert _verdict_reference(expected, True, True) == {k: holdout[k] for k in ("accuracy", "macro_f1", "log_loss",
                                                                                 "roc_auc")}
    assert _verdict_reference(expected, True) == {k: holdout[k] for k in ("accuracy", "macro_f1", "log_loss")}
    assert decision_threshold(manifest) == THRESHOLD
    assert decision_threshold({k: v for k, v in manifest.items() if k != "threshold"}) == 0.5  # as the function
    assert decision_threshold({**manifest, "threshold": {"value": 1.5}}) is None  # not a probability: logged answers
    assert canary_tolerance(spec, GatePolicy.of(spec), expected) == {"accuracy": 0.5, "macro_f1": 0.5,
                                                                     "roc_auc": 0.05}
    default = binary_spec(tmp_path / "default", gate_extra="# no roc_auc_tolerance")
    assert canary_tolerance(default, GatePolicy.of(default), None)["roc_auc"] == 1.0  # the gate's: never fails
    # a multiclass manifest's promise is as before
    assert set(expected_metrics({"metrics": {"holdout": {"accuracy": 0.9, "macro_f1": 0.8, "log_loss": 0.3,
                                                          "ece": 0.02, "rows": 60}}}, [])) == {
        "accuracy", "macro_f1", "log_loss", "rows"}


def test_binary_realised_metrics_are_written_only_from_the_minimum_count():
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def quality(version: str, labels: int) -> VersionQuality:
        metrics = {name: Metric(0.8, labels, 0.7, 0.9, "bootstrap") for name in BINARY_LIVE}
        return VersionQuality(version, "stable", "classifier", labels, 200, metrics,
                              estimated_accuracy=Metric(0.92, 200, 0.9, 0.94, "cbpe"), positive="yes",
                              threshold=THRESHOLD)

    report = MonitorReport(APPROVALS, Window(now, now, now), FeedbackCounts(), (quality("few", 29),
                                                                                quality("enough", 30)), (), 30, 0.9)
    names = {(p.name, p.labels["model_version"]) for p in metric_points(report, 30)}
    binary = {"live_roc_auc", "live_pr_auc", "live_brier", "live_precision", "live_recall", "live_f1"}
    assert {name for name, version in names if version == "enough"} >= binary | {"live_accuracy", "live_log_loss"}
    assert not {name for name, version in names if version == "few"} & (binary | {"live_accuracy"})


def test_the_report_shows_segments_and_prediction_and_attribution_drift_for_both_models(world, store_copy, capsys):
    store = store_copy(world.full)
    code, _ = run_main(capsys, "monitor", "--all-models", "--store", str(store.root), "--no-canary-decision")
    assert code == 0
    for model, name in (("penguins", "island"), ("co2", "fuel_type")):
        report = json.loads(store.read(f"reports/{model}/monitor/latest.json")[0])
        segments = report["segments"]
        assert segments and {s["field"] for s in segments} == {name}
        stable = [v for s in segments for v in s["versions"] if v["role"] == "stable"]
        assert sum(v["labels"] for v in stable) == 100  # every labelled row of stable in exactly one segment
        assert all(s["segment"] == f"{name}={s['value']}" for s in segments)
        drift = report["drift"]
        assert drift["version"] == STABLE and drift["status"] in ("drift", "no_drift")
        assert drift["current"]["window"]["served_rows"] == 150
        assert drift["current"]["window"]["sampled_rows"] == 150  # fewer than the sample: every served row
        assert drift["prediction_drift"]["reference"] == "the serving version's answers on its holdout"
        attribution = drift["attribution_drift"]
        reference = read_bundle(store, model, STABLE).manifest["reference"]
        assert {f["feature"] for f in attribution["features"]} == set(reference["attribution"])
        assert sum(f["current_share"] for f in attribution["features"]) == pytest.approx(1.0, abs=1e-4)
        page = store.read(f"reports/{model}/monitor/latest.html")[0].decode()
        assert "Attribution drift" in page and "<h2>Segments</h2>" in page
