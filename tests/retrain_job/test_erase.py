"""Erasure of one person's rows by the id the client sent, on the embedded engine.

The function serves `tests/function/people.py`'s model (its `customer_id` hashed in the logs) and logs three
people: a batch of all three, then each alone, with feedback for Alice's and Bob's predictions. The erase command,
given Alice's id as the client sent it, hashes it with the store's key and rewrites the sink's files: afterwards the
DuckDB engine finds none of Alice's rows nor her feedback, and every row and item of Bob and Carol as before. A file
without her rows is left untouched; a dropped or bucketed field names no one and is refused.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from retrain_job.data.engine import DuckDBEngine
from retrain_job.erase import bigquery_statements, without
from shared.logline import sink_key
from testbed.servers import REPO, FunctionServer
from tests.function.people import NAME, PEOPLE, scratch, server_env
from tests.support.http import post

ALICE, BOB, CAROL = (p["customer_id"] for p in PEOPLE)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """The specs folder and store once the function logged every request (stopped: every line flushed), and the
    prediction id of each person's answers."""
    specs, store = scratch(tmp_path_factory.mktemp("erase"))
    server = FunctionServer(server_env(specs, store)).start()
    ids: dict[str, list[str]] = {p["customer_id"]: [] for p in PEOPLE}
    try:
        status, body, _ = post(f"{server.url}/v1/models/{NAME}:predict", {"instances": PEOPLE})
        assert status == 200, body
        for person, answer in zip(PEOPLE, body["predictions"]):
            ids[person["customer_id"]].append(answer["id"])
        for person in PEOPLE:
            status, answer, _ = post(f"{server.url}/predict", person)
            assert status == 200, answer
            ids[person["customer_id"]].append(answer["id"])
        for customer in (ALICE, BOB):
            items = [{"id": i, "truth": "yes"} for i in ids[customer]]
            status, fed, _ = post(f"{server.url}/feedback", {"instances": items})
            assert status == 202 and fed["accepted"] == len(items), fed
    finally:
        server.stop()
    return specs, store, ids


def _engine_rows(store) -> list[tuple[str, str, str]]:
    """(event, id, instance or truth) of every logged row, as the job's engine reads them."""
    now = datetime.now(UTC)
    engine = DuckDBEngine.for_store(store, "logs", now - timedelta(hours=2), now + timedelta(hours=1))
    try:
        return engine.rows("SELECT event, id, COALESCE(instance, truth) FROM logged ORDER BY event, id")
    finally:
        engine.close()


def _erase(specs, store, *args: str) -> tuple[int, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOG_HASH_KEY")}
    proc = subprocess.run([sys.executable, "-m", "retrain_job.erase", "--model", NAME, "--store", str(store.root),
                           *args], cwd=REPO, env={**env, "SPECS_DIR": str(specs), "LOG_LEVEL": "WARNING"},
                          capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


def test_erasing_a_person_leaves_none_of_their_rows_and_everyone_elses(logged):
    specs, store, ids = logged
    before = _engine_rows(store)
    alice = set(ids[ALICE])
    assert {row[1] for row in before} >= alice | set(ids[BOB]) | set(ids[CAROL])
    # an older hour's file holding only Bob's single request: never rewritten
    untouched = store.root / "logs" / sink_key(datetime(2026, 1, 1, tzinfo=UTC))
    untouched.parent.mkdir(parents=True)
    bob_request = ids[BOB][1].rsplit("-", 1)[0]
    untouched.write_text(next(line for line in _sink_lines(store) if f'"request_id":"{bob_request}"' in line))
    inode, text = untouched.stat().st_ino, untouched.read_text()

    code, summary = _erase(specs, store, "--field", "customer_id", "--value", ALICE)

    assert code == 0, summary
    after = _engine_rows(store)
    assert [row for row in after if row[1] in alice] == []
    assert after == [row for row in before if row[1] not in alice]
    assert summary["rows_removed"] == 2 and summary["feedback_items_removed"] == 2
    assert summary["files_rewritten"] == 1 and ALICE not in json.dumps(summary)
    assert untouched.stat().st_ino == inode and untouched.read_text() == text


def test_a_dropped_or_bucketed_field_names_no_one(logged):
    specs, store, _ = logged
    for field, value in (("email", "alice.7731@example.org"), ("x1", "5")):
        code, summary = _erase(specs, store, "--field", field, "--value", value)
        assert code == 1 and summary["decision"] == "failed" and field in summary["error"], summary


def test_a_batch_line_keeps_its_other_rows_and_a_line_of_hers_alone_goes():
    rows = [{"id": "r-0", "instance": {"customer_id": "h:a"}}, {"id": "r-1", "instance": {"customer_id": "h:b"}}]
    batch = {"jsonPayload": {"event": "prediction", "model": NAME, "data": json.dumps(rows)}}
    alone = {"jsonPayload": {"event": "prediction", "model": NAME, "data": json.dumps(rows[:1])}}
    feedback = {"jsonPayload": {"event": "feedback", "model": NAME, "data": json.dumps([{"id": "r-0", "truth": 1}])}}
    other = {"jsonPayload": {"event": "prediction", "model": "other", "data": json.dumps(rows[:1])}}
    data = b"".join(json.dumps(e).encode() + b"\n" for e in (batch, alone, feedback, other)) + b'{"unfinished'
    new, removed, items = without(data, NAME, {"r-0"})
    lines = new.splitlines()
    assert (removed, items) == (2, 1) and len(lines) == 3 and lines[-1] == b'{"unfinished'
    assert [r["id"] for r in json.loads(json.loads(lines[0])["jsonPayload"]["data"])] == ["r-1"]
    assert json.loads(lines[1]) == other


def test_the_bigquery_statements_leave_the_streaming_buffer_alone():
    script = bigquery_statements("p.d.t", NAME, "customer_id")
    assert script.count("INTERVAL 90 MINUTE") == 3 and "$.instance.\"customer_id\"" in script
    assert script.startswith("DECLARE erased") and "DELETE FROM `p.d.t`" in script and "UPDATE `p.d.t`" in script


def _sink_lines(store) -> list[str]:
    files = sorted((store.root / "logs").rglob("*_S0.json"))
    return [line + "\n" for path in files for line in path.read_text().splitlines()]
