"""Prediction and attribution drift: small calculations checked on numbers worked by hand and on a real model."""
from __future__ import annotations

import pytest

from retrain_job.data.labelled import to_records
from retrain_job.drift.attribution import attribution_drift, mean_abs_attribution, prediction_drift, predictions_of
from retrain_job.drift.reference import reference_profile, reference_rows
from retrain_job.drift.stats import DriftThresholds
from retrain_job.train.evaluate import serving_model


def test_attribution_drift_compares_shares_so_a_change_of_scale_is_not_drift():
    reference = {"a": 0.6, "b": 0.3, "c": 0.1}
    same = attribution_drift(reference, {"a": 1.2, "b": 0.6, "c": 0.2})
    assert same["score"] == pytest.approx(0.0) and not same["drifted"]
    moved = attribution_drift(reference, {"a": 0.3, "b": 0.6, "c": 0.1})  # shares 0.3, 0.6, 0.1
    assert moved["score"] == pytest.approx(0.3) and moved["drifted"]
    assert [f["feature"] for f in moved["features"]][:2] in (["a", "b"], ["b", "a"])  # largest changes first
    assert {f["feature"]: f["change"] for f in moved["features"]} == pytest.approx({"a": -0.3, "b": 0.3, "c": 0.0})


def test_prediction_drift_sees_a_changed_class_mix_and_not_the_same_one():
    t = DriftThresholds()
    reference = ["Adelie"] * 50 + ["Gentoo"] * 50
    assert not prediction_drift("p", reference, ["Adelie"] * 48 + ["Gentoo"] * 52, True, t).drifted
    assert prediction_drift("p", reference, ["Adelie"] * 90 + ["Gentoo"] * 10, True, t).drifted
    assert prediction_drift("v", [float(x) for x in range(100)], [float(x) + 60 for x in range(100)], False,
                            t).drifted


def test_a_versions_reference_holds_its_training_rows_holdout_answers_and_attributions(penguins_spec,
                                                                                       trained_bundle, base_data):
    model = serving_model(penguins_spec, trained_bundle)
    train, holdout = base_data.iloc[:200], base_data.iloc[200:260]
    profile = reference_profile(model, train, holdout)
    names = model.contract.field_names
    assert profile["rows"] == 200 and list(profile["features"]) == names
    assert reference_rows(profile) == to_records(train, names)
    assert profile["predictions"] == predictions_of(model, to_records(holdout, names))
    assert set(profile["predictions"]) <= set(model.labels) and len(profile["predictions"]) == 60
    importance = profile["attribution"]
    assert importance == pytest.approx(mean_abs_attribution(model, to_records(train, names)))
    assert max(importance, key=importance.get) in ("bill_length_mm", "flipper_length_mm", "bill_depth_mm", "island")
    # the same rows explained again are no drift; rows of one species only move the importances
    assert not attribution_drift(importance, mean_abs_attribution(model, to_records(train, names)))["drifted"]
    gentoo = train[train["species"] == "Gentoo"]
    assert attribution_drift(importance, mean_abs_attribution(model, to_records(gentoo, names)))["score"] > 0.02
