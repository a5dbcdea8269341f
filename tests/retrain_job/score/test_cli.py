"""`score` end to end on real files and a real store: the function's answers, every refused row named, the summary."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from retrain_job.score.outputs import ERROR_SCHEMA, MANIFEST
from retrain_job.score.run import request_id
from retrain_job.score.sources import resolve_inputs
from shared.logline import prediction_id
from testbed.servers import REPO
from tests.retrain_job.score.conftest import read_errors, read_output, requests_of, write_parquet
from tests.support.bundles import STABLE

# rows made bad, each in one way the function refuses: (row, field, value)
BAD = [(3, "bill_length_mm", -5.0), (10, "island", "Atlantis"), (11, "body_mass_g", 1e9), (40, "island", None)]


def _with_bad_rows(rows: pd.DataFrame) -> pd.DataFrame:
    frame = rows.astype({"island": object}).copy()
    for row, name, value in BAD:
        frame.loc[row, name] = value
    return frame


def _function_answers(make_client, store, model: str, requests: list[dict]) -> list[dict]:
    client = make_client(MODEL_STORE=store.root, POINTER_TTL_S=0.2, MODELS="penguins,co2")
    resp = client.post(f"/v1/models/{model}:predict", json={"instances": requests})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["predictions"]


def _function_violations(make_client, store, request: dict) -> list[tuple[str, str]]:
    client = make_client(MODEL_STORE=store.root, POINTER_TTL_S=0.2, MODELS="penguins,co2")
    resp = client.post("/v1/models/penguins:predict", json=request)
    assert resp.status_code == 400
    details = resp.get_json()["error"]["details"]
    return sorted((v["field"], v["description"]) for d in details for v in d.get("fieldViolations", []))


def test_parquet_rows_get_the_functions_answers_and_bad_rows_its_messages(store, penguin_rows, tmp_path, run_score,
                                                                          make_client):
    frame = _with_bad_rows(penguin_rows.iloc[:300].reset_index(drop=True))
    frame["customer"] = [f"c{i}" for i in range(len(frame))]
    write_parquet(frame, tmp_path / "in" / "rows.parquet", row_group_size=64)
    out = tmp_path / "out"
    code, summary = run_score("--model", "penguins", "--input", str(tmp_path / "in" / "rows.parquet"),
                              "--output", str(out), "--store", str(store.root), "--id-columns", "customer")
    bad_rows = sorted({row for row, _, _ in BAD})
    assert code == 0 and summary["decision"] == "scored" and summary["version"] == STABLE
    assert (summary["rows_in"], summary["rows_scored"], summary["rows_rejected"]) == (300, 300 - len(bad_rows),
                                                                                        len(bad_rows))
    assert summary["complete"] is True and (out / MANIFEST).exists()
    scored = read_output(out)
    good = frame.drop(index=bad_rows)
    assert scored["customer"].tolist() == good["customer"].tolist()  # input order, nothing dropped silently
    rid = request_id("penguins", str(out), resolve_inputs(str(tmp_path / "in" / "rows.parquet"))[0])
    assert scored["prediction_id"].tolist() == [prediction_id(rid, i) for i in good.index]
    answers = _function_answers(make_client, store, "penguins", requests_of(good.drop(columns="customer")))
    assert scored["prediction"].astype(str).tolist() == [a["species"] for a in answers]
    for label in ("Adelie", "Chinstrap", "Gentoo"):  # within what the function's evaluators agree to among themselves
        assert scored[f"probability_{label}"].tolist() == pytest.approx([a["probabilities"][label] for a in answers],
                                                                        abs=1e-5)
    assert scored["warnings"].map(list).tolist() == [a["warnings"] for a in answers]
    assert set(scored["model_version"].astype(str)) == {STABLE}
    errors = read_errors(out)
    assert pq.read_schema(next(out.glob("errors-*.parquet"))).equals(ERROR_SCHEMA)
    assert set(errors["file"]) == {str(tmp_path / "in" / "rows.parquet")}
    for row in bad_rows:  # each refused row: the field and message the function answers for it
        expected = _function_violations(make_client, store, requests_of(frame.drop(columns="customer"))[row])
        got = errors[errors["row"] == row]
        assert sorted(zip(got["field"], got["message"])) == expected
    assert set(errors["row"]) == set(bad_rows)


def test_regressor_csv_glob_answers_with_intervals(store, co2_rows, tmp_path, run_score, make_client):
    rows = co2_rows.iloc[:120].reset_index(drop=True)
    folder = tmp_path / "in"
    folder.mkdir()
    rows.iloc[:70].to_csv(folder / "a.csv", index=False)
    rows.iloc[70:].to_csv(folder / "b.csv", index=False)
    write_parquet(rows.iloc[:5], folder / "c.parquet")  # not matched by the glob
    code, summary = run_score("--model", "co2", "--input", str(folder / "*.csv"), "--output", str(tmp_path / "out"),
                              "--store", str(store.root), "--id-columns", "model")
    assert code == 0 and summary["input_files"] == 2
    assert (summary["rows_in"], summary["rows_scored"], summary["rows_rejected"]) == (120, 120, 0)
    scored = read_output(tmp_path / "out")
    assert scored["model"].tolist() == rows["model"].tolist()
    answers = _function_answers(make_client, store, "co2", requests_of(rows))
    for column, answer in (("prediction", lambda a: a["co2_emissions_g_per_km"]),
                           ("interval_lower", lambda a: a["interval"]["lower"]),
                           ("interval_upper", lambda a: a["interval"]["upper"])):
        assert scored[column].tolist() == pytest.approx([answer(a) for a in answers], abs=2e-3)
    assert scored["extrapolation"].tolist() == [a["extrapolation"] for a in answers]
    ids = scored["prediction_id"].str.rsplit("-", n=1).str[1].astype(int).tolist()
    assert ids == list(range(70)) + list(range(50))  # each file its own request id, rows numbered in it


def test_csv_cells_are_read_as_the_job_reads_csv(store, penguin_rows, tmp_path, run_score, make_client):
    frame = penguin_rows.iloc[:20].astype(object).reset_index(drop=True)
    frame.loc[2, "sex"] = "NA"  # no value: an optional field left out
    frame.loc[4, "bill_depth_mm"] = "abc"  # text in a numeric field
    frame.loc[5, "flipper_length_mm"] = ""  # a required field without a value
    frame.loc[6, "year"] = "2007.0"  # a whole number is an integer
    frame.to_csv(tmp_path / "rows.csv", index=False)
    code, summary = run_score("--model", "penguins", "--input", str(tmp_path / "rows.csv"), "--output",
                              str(tmp_path / "out"), "--store", str(store.root))
    assert code == 0 and (summary["rows_scored"], summary["rows_rejected"]) == (18, 2)
    errors = read_errors(tmp_path / "out")
    assert sorted(zip(errors["row"], errors["field"], errors["message"])) == [
        (4, "bill_depth_mm", "must be a number"), (5, "flipper_length_mm", "Missing data for required field.")]
    assert summary["rejected_by_field"] == {"bill_depth_mm": 1, "flipper_length_mm": 1}
    assert [e["row"] for e in summary["first_errors"]] == [4, 5]


def test_flags_and_inputs_the_command_refuses(store, penguin_rows, tmp_path, run_score):
    write_parquet(penguin_rows.iloc[:10], tmp_path / "rows.parquet")
    base = ["--input", str(tmp_path / "rows.parquet"), "--output", str(tmp_path / "out"), "--store", str(store.root)]
    code, summary = run_score("--model", "nobody", *base)
    assert code == 1 and summary["decision"] == "failed" and "no serving pointer" in summary["error"]
    code, summary = run_score("--model", "penguins", "--version", "20200101T000000Z-nothing", *base)
    assert code == 1 and "no version" in summary["error"]
    code, summary = run_score("--model", "penguins", *base, "--id-columns", "customer")
    assert code == 1 and "no column customer" in summary["error"]
    code, summary = run_score("--model", "penguins", *base, "--id-columns", "prediction")
    assert code == 1 and "the output has columns of that name" in summary["error"]
    code, summary = run_score("--model", "penguins", "--input", str(tmp_path / "none-*.csv"), *base[2:])
    assert code == 1 and "no Parquet or CSV file" in summary["error"]
    with pytest.raises(SystemExit) as exc:
        run_score("--model", "penguins", "--output", str(tmp_path / "out"))
    assert exc.value.code == 2
    assert not (tmp_path / "out").exists()


def test_python_m_runs_the_command(store, penguin_rows, tmp_path):
    write_parquet(penguin_rows.iloc[:50], tmp_path / "rows.parquet")
    proc = subprocess.run([sys.executable, "-m", "retrain_job.score", "--model", "penguins", "--input",
                           str(tmp_path / "rows.parquet"), "--output", str(tmp_path / "out"), "--store",
                           str(store.root)], cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "LOG_LEVEL": "INFO"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["rows_scored"] == 50 and summary["complete"] is True
    assert "task 0 of 1: 50 rows scored" in proc.stderr
