"""Feedback is training data: the gate on the frozen holdout stops a candidate trained on feedback that lies.

Real prediction log lines (rows of the spec's own training data, answered by the published stable bundle) and
feedback lines naming their prediction ids are written in the sink layout into a LocalStore, then the real job
runs: honest feedback passes the gate; feedback whose truth is wrong for most rows does not.
"""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from retrain_job.train import fit as train
from retrain_job.train.run import JobOptions, run
from retrain_job.train.tasks import Task
from shared.bundle import list_versions
from shared.pointer import read_pointer
from shared.spec import ModelSpec
from shared.store import LocalStore
from tests.support.bundles import publish
from tests.support.feedback_log import FeedbackLog

V0 = "20250101T000000Z-oldstable"
WRONG_SHARE = 0.6
ROWS = 400
PER_REQUEST = 25
NEVER_PREDICTED = 7  # feedback items naming ids never served: dropped at the join, counted


def lie(truth, rng: np.random.Generator, spec: ModelSpec):
    """A wrong truth: another label chosen at random, or a value 40% off either way."""
    if spec.is_classifier:
        return str(rng.choice([label for label in spec.target.labels if label != truth]))
    return round(float(truth) * float(rng.choice([0.6, 1.4])), 1)


def feed_back(store: LocalStore, spec: ModelSpec, stable, rows: pd.DataFrame, wrong_share: float,
              seed: int = 7) -> int:
    """Serve the rows (requests of PER_REQUEST rows, 3 hours ago), then send back their truths an hour ago, exactly
    `wrong_share` of them wrong, plus feedback for ids never predicted. How many truths were wrong."""
    log = FeedbackLog(store, spec, stable)
    now = datetime.now(UTC)
    rng = np.random.default_rng(seed)
    wrong = rng.permutation(len(rows)) < round(wrong_share * len(rows))
    items = []
    for k, start in enumerate(range(0, len(rows), PER_REQUEST)):
        chunk = rows.iloc[start:start + PER_REQUEST]
        ids = log.predict(f"req{k:04d}{seed}", chunk, at=now - timedelta(hours=3))
        for pid, truth, is_wrong in zip(ids, chunk[spec.target.name], wrong[start:start + PER_REQUEST]):
            items.append({"id": pid, "truth": lie(truth, rng, spec) if is_wrong else truth})
    items += [{"id": f"never-served-{i}", "truth": items[i]["truth"]} for i in range(NEVER_PREDICTED)]
    for n, start in enumerate(range(0, len(items), 60)):
        log.feedback(items[start:start + 60], at=now - timedelta(hours=1), source=f"team-{n % 2}")
    log.flush()
    return int(wrong.sum())


def training_rows(spec: ModelSpec, base: pd.DataFrame, n: int, seed: int = 3) -> pd.DataFrame:
    """Rows of the training side of the frozen holdout: production traffic the holdout has never seen."""
    return train.prepare(spec, base).split.train.sample(n=n, replace=True, random_state=seed)


def run_job(store: LocalStore, spec: ModelSpec) -> dict:
    return run(store, JobOptions(model_name=spec.name, task=Task(run_id=uuid.uuid4().hex[:12])))


def assert_feedback_counted(summary: dict, rows: int) -> None:
    fb = summary["data"]["feedback"]
    assert (fb["items"], fb["read"], fb["accepted"], fb["rejected"]) == (rows + NEVER_PREDICTED, rows, rows, 0)
    assert fb["unknown_ids"] == NEVER_PREDICTED and fb["duplicates"] == fb["malformed"] == 0
    assert sum(s["items"] for s in fb["sources"].values()) == fb["items"]
    assert sum(s["accepted"] for s in fb["sources"].values()) == rows
    assert summary["data"]["labelled_rows"] == rows  # read as labelled rows
    [entry] = [f for f in summary["data"]["labelled_files"] if f["key"] == "feedback"]
    assert (entry["rows"], entry["rejected"], entry["read"]) == (rows, 0, rows)


@pytest.mark.parametrize("wrong_share", [0.0, WRONG_SHARE], ids=["honest", "poisoned"])
def test_penguin_feedback_with_wrong_labels_is_stopped_by_the_gate(tmp_path, penguins_spec, base_data,
                                                                    trained_bundle, wrong_share):
    store = LocalStore(tmp_path / "bucket")
    publish(store, trained_bundle, V0)
    wrong = feed_back(store, penguins_spec, trained_bundle, training_rows(penguins_spec, base_data, ROWS),
                      wrong_share)
    assert wrong == round(wrong_share * ROWS)
    summary = run_job(store, penguins_spec)
    assert_feedback_counted(summary, ROWS)
    pointer, _ = read_pointer(store, "penguins")
    if wrong_share == 0.0:
        assert summary["decision"] == "promoted" and summary["gate"]["passed"], summary["gate"]
        assert pointer.stable == summary["candidate"]
        return
    assert summary["decision"] == "rejected" and not summary["gate"]["passed"]
    candidate, stable = summary["metrics"]["candidate"], summary["metrics"]["stable"]
    assert candidate["log_loss"] > stable["log_loss"] + summary["gate"]["policy"]["tolerance"]
    assert any(reason.startswith("log loss") for reason in summary["gate"]["reasons"])
    assert pointer.stable == V0 and list_versions(store, "penguins") == [V0]  # nothing of the candidate written


def test_co2_feedback_with_wrong_values_is_stopped_by_the_gate(tmp_path, co2_spec, co2_data, co2_bundle):
    store = LocalStore(tmp_path / "bucket")
    publish(store, co2_bundle, V0, model="co2")
    feed_back(store, co2_spec, co2_bundle, training_rows(co2_spec, co2_data, ROWS), WRONG_SHARE)
    summary = run_job(store, co2_spec)
    assert_feedback_counted(summary, ROWS)
    assert summary["data"]["holdout"]["labelled_rows_set_aside"] == 0  # training-side rows only
    assert summary["decision"] == "rejected" and summary["gate"]["reasons"], summary["gate"]
    assert read_pointer(store, "co2")[0].stable == V0
