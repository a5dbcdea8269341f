"""The bundles published before binary classifiers, identity-scale regressors and extrapolation flags (the shipped
ones, function/shipped_model) load and answer exactly as they did.

`shipped_answers.json` holds the V1 answers the serving code gave before those changes, recorded over its own
HTTP app: the spec examples and seeded random rows (some beyond the training ranges) of each shipped model, in
batches that take each evaluator (generated Python, the NumPy walk, XGBoost), and one single-row request. Served
again now, every answer is identical, except that a regressor's answer also says whether its row is an
extrapolation, and such a row's interval is widened (never narrowed) to the model's widest.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.http import post

RECORDED = json.loads((Path(__file__).with_name("shipped_answers.json")).read_text())["cases"]
OUT_OF_RANGE = "outside the training range"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The function with an empty store: each model is its shipped bundle, as when the answers were recorded."""
    from testbed.servers import FunctionServer  # noqa: PLC0415

    function = FunctionServer({"MODEL_STORE": str(tmp_path_factory.mktemp("empty") / "bucket"),
                               "MODELS": "penguins,co2", "DEFAULT_MODEL": "penguins"}).start()
    yield function
    function.stop()


@pytest.mark.parametrize("case", RECORDED, ids=[c["request_id"] for c in RECORDED])
def test_the_shipped_bundles_answer_as_before(shipped, case):
    model, rows, before = case["model"], case["instances"], case["answer"]
    if case.get("single"):
        status, now, _ = post(f"{shipped.url}/predict", rows[0], headers={"X-Request-Id": case["request_id"]})
        assert status == 200 and now == before, (now, before)
        return
    status, now, _ = post(f"{shipped.url}/v1/models/{model}:predict", {"instances": rows},
                          headers={"X-Request-Id": case["request_id"]})
    assert status == 200, now
    assert {k: v for k, v in now.items() if k != "predictions"} == {k: v for k, v in before.items()
                                                                     if k != "predictions"}
    assert len(now["predictions"]) == len(before["predictions"]) == len(rows)
    if model == "penguins":
        assert now["predictions"] == before["predictions"]
        return
    widened = 0
    for answer, old in zip(now["predictions"], before["predictions"]):
        flagged = answer.pop("extrapolation")
        assert flagged == any(OUT_OF_RANGE in w for w in answer["warnings"]), answer
        if not flagged:
            assert answer == old
            continue
        new_interval, old_interval = answer.pop("interval"), old.pop("interval")
        assert answer == old  # id, value, version, fallback, warnings
        assert new_interval["level"] == old_interval["level"]
        assert new_interval["lower"] <= old_interval["lower"] and new_interval["upper"] >= old_interval["upper"]
        widened += (new_interval["upper"] - new_interval["lower"]) > (old_interval["upper"] - old_interval["lower"])
    if case["request_id"] in ("golden-co2-1", "golden-co2-2"):  # random rows, some beyond the ranges
        assert widened > 0
