"""`--log`: scored rows become prediction log lines the job's log engine reads, joined to feedback by the ids the
output file gives them, and logged once however often a task runs."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from retrain_job.data.engine import DuckDBEngine
from retrain_job.data.logs import join_feedback, served_sample
from retrain_job.score import cli
from tests.retrain_job.score.conftest import read_output, write_parquet
from tests.support.bundles import STABLE
from tests.support.feedback_log import FeedbackLog

PREFIX = "logs"


def _engine(store, model: str) -> DuckDBEngine:
    now = datetime.now(UTC)
    return DuckDBEngine.for_store(store, PREFIX, now - timedelta(days=1), now + timedelta(minutes=5), model=model)


@pytest.mark.parametrize("model", ["penguins", "co2"])
def test_logged_batch_rows_are_served_rows_feedback_joins(store, penguin_rows, co2_rows, tmp_path, run_score,
                                                          penguins_spec, co2_spec, trained_bundle, co2_bundle, model):
    rows = (penguin_rows if model == "penguins" else co2_rows).sample(700, replace=True, random_state=0)
    rows = rows.reset_index(drop=True)
    write_parquet(rows, tmp_path / "rows.parquet", row_group_size=300)
    args = ["--model", model, "--input", str(tmp_path / "rows.parquet"), "--output", str(tmp_path / "out"),
            "--store", str(store.root), "--log", "--log-prefix", PREFIX]
    code, summary = run_score(*args)
    assert code == 0 and summary["logged_rows"] == 700 and summary["log_objects"] == 1
    code, again = run_score(*args)  # the task runs again: its rows are logged once
    assert code == 0 and again["logged_rows"] == 700
    scored = read_output(tmp_path / "out")
    spec, bundle = (penguins_spec, trained_bundle) if model == "penguins" else (co2_spec, co2_bundle)
    fed = scored.iloc[[0, 299, 300, 699]]
    feedback = FeedbackLog(store, spec, bundle, prefix=PREFIX)
    truth = "Adelie" if model == "penguins" else 200.0
    feedback.feedback([{"id": pid, "truth": truth} for pid in fed["prediction_id"]], at=datetime.now(UTC))
    feedback.flush()
    engine = _engine(store, model)
    try:
        served = served_sample(engine, model, [spec.features[0].name])
        joined = join_feedback(engine, model, datetime.now(UTC) - timedelta(hours=1))
        source_role = engine.rows("SELECT DISTINCT source, role, model_version FROM logged "
                                  "WHERE event = 'prediction_rows'")
    finally:
        engine.close()
    assert served.total == 700
    assert source_role == [("batch", "batch", STABLE)]
    assert joined.counts.joined == 4 and joined.counts.unknown_ids == 0
    assert sorted(r.id for r in joined.rows) == sorted(fed["prediction_id"])
    by_id = {r.id: r for r in joined.rows}
    for _, row in fed.iterrows():
        logged = by_id[row["prediction_id"]].predicted
        assert logged == (str(row["prediction"]) if model == "penguins" else pytest.approx(row["prediction"]))
    assert {r.truth for r in joined.rows} == {truth}


def test_with_bigquery_the_lines_go_to_stdout_for_cloud_logging(store, penguin_rows, tmp_path, run_score, monkeypatch,
                                                                capsys):
    """LOG_ENGINE=bigquery: the job's log is Cloud Logging's sink table, fed from stdout (terraform/logging.tf), so
    the payloads are printed, one JSON line each, as the LogEntries' jsonPayload the DuckDB layout holds."""
    rows = penguin_rows.sample(700, replace=True, random_state=1).reset_index(drop=True)
    write_parquet(rows, tmp_path / "rows.parquet", row_group_size=300)
    args = ["--model", "penguins", "--input", str(tmp_path / "rows.parquet"), "--store", str(store.root), "--log",
            "--log-prefix", PREFIX]
    code, in_store = run_score(*args, "--output", str(tmp_path / "duck"))
    assert code == 0 and in_store["log_objects"] == 1
    stored = [orjson.loads(line)["jsonPayload"] for path in sorted((store.root / PREFIX).rglob("*_B*.json"))
              for line in path.read_bytes().splitlines()]
    for path in (store.root / PREFIX).rglob("*_B*.json"):
        path.unlink()
    monkeypatch.setenv("LOG_ENGINE", "BIGQUERY")
    monkeypatch.setenv("LOG_TABLE", "project.dataset.run_googleapis_com_stdout")
    capsys.readouterr()
    code = cli.main([*args, "--output", str(tmp_path / "bq")])
    out = capsys.readouterr().out.splitlines()
    summary, printed = json.loads(out[-1]), [orjson.loads(line) for line in out[:-1]]
    assert code == 0 and summary["logged_rows"] == 700 and summary["log_objects"] == 0
    assert not list((store.root / PREFIX).rglob("*_B*.json"))  # nothing beside the sink's files
    assert printed and all(p["event"] == "prediction_rows" and p["source"] == "batch" for p in printed)

    def logged(payloads: list[dict]) -> list[tuple]:  # (row number in the file, answer, its id)
        return sorted((int(row["id"].rsplit("-", 1)[1]), row["predicted"], row["id"])
                      for p in payloads for row in orjson.loads(p["data"]))

    ours, theirs = logged(printed), logged(stored)
    assert [r[:2] for r in ours] == [r[:2] for r in theirs] and len(ours) == 700  # the same rows and answers
    assert {r[2] for r in ours} == set(read_output(tmp_path / "bq")["prediction_id"])  # under the output's ids
