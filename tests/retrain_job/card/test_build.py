"""The card's facts are the manifest's, the spec's and the monitor's: checked number by number on real bundles."""
from __future__ import annotations

import copy
import json
import math
import tomllib
from datetime import UTC, datetime, timedelta

import pytest

from function.serving import logs
from retrain_job.card.build import WHY_NOT_RECORDED, build_card
from retrain_job.data.labelled import feature_names, to_records
from retrain_job.monitor.run import MonitorOptions, monitor_prefix, run_monitor
from shared.bundle import make_bundle, read_bundle
from shared.pointer import read_pointer
from shared.spec import SPEC_FILE, load_spec, parse_spec
from shared.store import LocalStore
from tests.retrain_job.card.conftest import PENGUINS_OLD
from tests.retrain_job.data.test_logs import SinkLog
from tests.retrain_job.monitor.test_run import binary_spec
from tests.support.bundles import STABLE
from tests.support.kinds import binary_bundle

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def card_of(store: LocalStore, model: str, version: str = STABLE, **kwargs) -> tuple[dict, dict]:
    """The version's card and its manifest as read back from the store."""
    manifest = read_bundle(store, model, version).manifest
    pointer, _ = read_pointer(store, model)
    return build_card(load_spec(model), manifest, generated_at=NOW, pointer=pointer, **kwargs), manifest


def test_a_classifier_card_shows_its_manifest_and_its_spec(both_models):
    card, m = card_of(both_models, "penguins")
    spec = load_spec("penguins")
    assert card["schema_version"] == 1 and card["model"]["version"] == STABLE
    assert card["model"]["serving"] == "stable" and card_of(both_models, "penguins", PENGUINS_OLD)[0][
        "model"]["serving"] == "fallback"
    assert card["purpose"]["intended_use"] == spec.card.intended_use and card["not_stated"] == []
    assert card["purpose"]["owners"] == list(spec.card.owners) and card["purpose"]["description"] == spec.description
    [source] = card["training_data"]["sources"]
    assert source == {**m["training_data"]["sources"][0], "source": spec.data.source, "licence": "CC0 1.0"}
    assert card["training_data"]["train_rows"] == m["training_data"]["rows"]
    assert card["training_data"]["holdout_rows"] == m["training_data"]["holdout_rows"]
    assert card["holdout"]["overall"] == m["metrics"]["holdout"]
    assert card["calibration"] == m["metrics"]["calibration"] and card["threshold"] is None
    importance = card["feature_importance"]["features"]
    attribution = m["reference"]["attribution"]
    assert [f["feature"] for f in importance] == sorted(attribution, key=lambda n: -attribution[n])
    assert importance[0]["mean_abs_shap"] == pytest.approx(max(attribution.values()), abs=1e-6)
    assert importance[0]["share"] == pytest.approx(max(attribution.values()) / sum(attribution.values()), abs=1e-4)
    assert card["feature_importance"]["unit"] == "probability"
    ranges = {n["feature"]: n["training_range"] for n in card["known_limits"]["numeric"]}
    assert ranges == {f["name"]: [f["train_min"], f["train_max"]] for f in m["contract"]["numeric"]}
    assert {c["feature"]: c["levels"] for c in card["known_limits"]["categorical"]} == {
        c["name"]: c["levels"] for c in m["contract"]["categorical"]}
    lacking = {"training_data.date_range": "date_range" not in m["training_data"],
               "training_data.target": "target" not in m["training_data"], "gate": "gate" not in m,
               "live_quality": True, "calibration": False}
    assert card["not_recorded"] == {k: WHY_NOT_RECORDED[k] for k, lacks in lacking.items() if lacks} | (
        {} if "segments" in m["metrics"] else {
            "holdout.segments.island": "the manifest records no holdout metrics per value of island"})


def test_a_regressor_card_shows_each_regime_its_intervals_and_its_interval_group_as_a_segment(both_models):
    card, m = card_of(both_models, "co2")
    regimes = m["metrics"]["holdout"]["regimes"]
    for name, measured in card["holdout"]["overall"]["regimes"].items():
        assert measured == {k: regimes[name][k] for k in ("rmse", "mae", "coverage", "mean_width", "median_width",
                                                          "rows")}
    rows = card["holdout"]["segments"]["fuel_type"]
    assert {(r["value"], r["regime"]): (r["rows"], r["rmse"], r["coverage"]) for r in rows} == {
        (level, name): (v["rows"], v["rmse"], v["coverage"]) for name, r in regimes.items()
        for level, v in r["by_level"].items()}
    levels = [level for level in m["contract"]["columns"] if level.startswith("fuel_type=")]
    for member, shown in zip(m["members"], card["intervals"]["regimes"], strict=True):
        q = member["interval"]["q"]
        assert shown["regime"] == member["name"] and shown["needs"] == member["needs"]
        assert shown["by_level"] == {lv.split("=")[1]: pytest.approx(math.exp(w)) for lv, w in zip(levels, q)}
        assert shown["widest"] == pytest.approx(math.exp(max([*q, member["interval"]["q_pooled"]])))
        assert shown["coverage"] == regimes[member["name"]]["coverage"]
    assert card["intervals"]["level"] == 0.9 and card["feature_importance"]["unit"] == "g/km"
    assert "calibration" not in card["not_recorded"] and "holdout.segments.fuel_type" not in card["not_recorded"]
    assert card["training_data"]["sources"][0]["licence"] == "Open Government Licence - Canada"


def test_a_spec_without_a_card_section_yields_a_card_that_says_not_stated(both_models):
    spec = load_spec("penguins")
    raw = tomllib.loads((spec.folder / SPEC_FILE).read_text())
    raw.pop("card")
    raw.pop("description")
    for key in ("source", "licence"):
        raw["data"].pop(key)
    bare = parse_spec(raw, spec.folder)
    card = build_card(bare, read_bundle(both_models, "penguins", STABLE).manifest, generated_at=NOW)
    assert card["not_stated"] == ["description", "intended_use", "out_of_scope", "owners", "limitations"]
    assert card["purpose"]["intended_use"] is None and card["purpose"]["owners"] == []
    assert card["training_data"]["sources"][0]["licence"] is None
    assert card["model"]["serving"] == "not serving"  # no pointer given


def test_the_licence_is_the_spec_s_only_for_the_data_file_it_describes(both_models):
    manifest = copy.deepcopy(read_bundle(both_models, "penguins", STABLE).manifest)
    manifest["training_data"]["sources"].append({"name": "labelled/penguins/new.csv", "sha256": "ab", "rows": 5})
    manifest["training_data"]["sources"][0]["sha256"] = "0" * 64  # trained on another copy than the spec's
    card = build_card(load_spec("penguins"), manifest, generated_at=NOW)
    assert [s["licence"] for s in card["training_data"]["sources"]] == [None, None]


def test_a_binary_card_shows_its_threshold(tmp_path):
    bundle = binary_bundle()
    card = build_card(binary_spec(tmp_path), bundle.manifest, generated_at=NOW)
    assert card["threshold"] == bundle.manifest["threshold"] and card["threshold"]["value"] == 0.37
    assert card["intervals"] is None and card["model"]["target"]["labels"] == ["no", "yes"]


def test_recorded_gate_segments_target_and_dates_are_shown_not_reported_missing(trained_bundle):
    """The shapes the manifest is to record them in (the card's report gives the diffs)."""
    sections = {k: v for k, v in trained_bundle.manifest.items() if k not in {"format", "version", "created_at",
                                                                                "files"}}
    gate = {"passed": True, "reasons": [], "policy": {"tolerance": 0.05}, "compared_with": PENGUINS_OLD,
            "stable_metrics": {"accuracy": 0.97}, "close": False}
    per_island = {"Biscoe": {"accuracy": 1.0, "macro_f1": 1.0, "log_loss": 0.01, "ece": 0.01, "rows": 33}}
    sections["metrics"] = {**sections["metrics"], "segments": {"island": per_island}}
    sections["training_data"] = {**sections["training_data"], "target": {"labels": {"Adelie": 121}},
                                 "date_range": {"field": "year", "min": 2007, "max": 2009}}
    card = build_card(load_spec("penguins"), make_bundle(STABLE, trained_bundle.files, gate=gate,
                                                         **sections).manifest, generated_at=NOW)
    assert card["gate"] == gate and card["holdout"]["segments"]["island"] == [{"value": "Biscoe", "rows": 33,
                                                                              "accuracy": 1.0, "macro_f1": 1.0,
                                                                              "log_loss": 0.01}]
    assert card["training_data"]["target"] == {"labels": {"Adelie": 121}}
    assert list(card["not_recorded"]) == ["live_quality"]  # no monitor report given


def test_live_quality_is_the_monitor_s_latest_figures_for_this_version(both_models, base_data):
    """A real monitor run over prediction and feedback lines logged as the function logs them."""
    log = SinkLog(both_models)
    rows = base_data.head(40)
    instances = to_records(rows, feature_names(load_spec("penguins")))
    at = NOW - timedelta(hours=2)
    log.prediction("r", ["Adelie"] * 40, at=at, model="penguins", version=STABLE, instances=instances,
                   probabilities=[[0.8, 0.1, 0.1]] * 40, labels=["Adelie", "Chinstrap", "Gentoo"])
    truths = ["Adelie"] * 30 + ["Gentoo"] * 10
    log.feedback([{"id": f"r-{i}", "truth": t} for i, t in enumerate(truths)], at=at + timedelta(minutes=5),
                 model="penguins")
    logs.flush()
    run_monitor(both_models, MonitorOptions(model_name="penguins", min_labels=5, resamples=50), now=NOW)
    document = json.loads(both_models.read(monitor_prefix("penguins") + "latest.json")[0])
    card, _ = card_of(both_models, "penguins", monitor=document, monitor_key="k")
    [stable] = card["live_quality"]["versions"]
    assert stable["role"] == "stable" and stable["labels"] == 40 and stable["predictions"] == 40
    assert stable["metrics"]["accuracy"]["value"] == pytest.approx(0.75)
    assert stable["metrics"]["accuracy"]["n"] == 40
    assert {s["segment"] for s in card["live_quality"]["segments"]} == {f"island={v}" for v in
                                                                       set(rows["island"])}
    assert card["live_quality"]["drift"]["status"] is not None and "live_quality" not in card["not_recorded"]
    old, _ = card_of(both_models, "penguins", PENGUINS_OLD, monitor=document, monitor_key="k")
    assert old["live_quality"]["versions"] == [] and old["live_quality"]["drift"] is None
