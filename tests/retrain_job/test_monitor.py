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
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from retrain_job.__main__ import main, parse_args
from retrain_job.data import load_base
from retrain_job.feedback import FeedbackCounts, JoinedRow, Window
from retrain_job.gate import GatePolicy
from retrain_job.live_quality import Metric, MonitorReport, VersionQuality
from retrain_job.monitor import canary_tolerance, expected_metrics, metric_points, monitor_prefix
from retrain_job.report import render_monitor_html
from shared.pointer import read_pointer
from shared.settings import JOB, Settings
from shared.spec import load_spec
from shared.store import LocalStore
from testbed.servers import FunctionServer
from tests.support.bundles import STABLE, publish
from tests.support.http import post
from tests.support.jobs import run_job

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
                rows += len(payload["predicted"])
            elif payload.get("event") == "feedback":
                items += [{**item, "model": payload["model"]} for item in payload["items"]]
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


def points(monitoring) -> dict[tuple[str, str, str, str], float]:
    """What the metric server received: (metric, model, version, role) -> value."""
    out = {}
    for ts in monitoring.series():
        labels = dict(ts.metric.labels)
        assert set(labels) == {"model", "model_version", "role"}, labels
        key = (ts.metric.type.removeprefix("custom.googleapis.com/tabular/"), labels["model"],
               labels["model_version"], labels["role"])
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
