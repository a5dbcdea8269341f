"""The BigQuery harness: the real google-cloud-bigquery Client against bqemulator on 127.0.0.1.

A table shaped like the one a Cloud Logging sink writes (run_googleapis_com_stdout, jsonPayload a RECORD,
partitioned by day on timestamp) holds a few prediction and feedback log lines; every SQL construct the job's
log queries use runs through client.query() and is checked against what BigQuery answers.

A construct bqemulator gets wrong is not skipped: it is listed in EMULATOR_GAPS with what happens, its SQL is
checked to parse as BigQuery SQL with SQLGlot, and test_gap_is_still_there shows the wrong answer, so a
bqemulator that fixes it fails that test and the construct moves to CASES.
"""
from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlglot
from google.cloud import bigquery

from tests.support.bigquery import BQEMULATOR_PYTHON, MISSING_VENV, BigQueryEmulator, bigquery_client

PROJECT = "test-project"
DATASET = "logs"
TABLE = f"`{PROJECT}.{DATASET}.run_googleapis_com_stdout`"


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


PAYLOAD_FIELDS = [
    ("event", "STRING", "NULLABLE"), ("model", "STRING", "NULLABLE"), ("model_version", "STRING", "NULLABLE"),
    ("role", "STRING", "NULLABLE"), ("fallback", "BOOLEAN", "NULLABLE"), ("request_id", "STRING", "NULLABLE"),
    ("first_row", "FLOAT", "NULLABLE"), ("labels", "STRING", "REPEATED"), ("threshold", "FLOAT", "NULLABLE"),
    ("source", "STRING", "NULLABLE"), ("data", "STRING", "NULLABLE"),
]
# What a Cloud Logging sink creates for a Cloud Run service's stdout, cut to the fields the job reads.
SCHEMA = [
    bigquery.SchemaField("timestamp", "TIMESTAMP"),
    bigquery.SchemaField("insertId", "STRING"),
    bigquery.SchemaField("jsonPayload", "RECORD",
                         fields=[bigquery.SchemaField(name, kind, mode=mode) for name, kind, mode in PAYLOAD_FIELDS]),
]


def _line(ts, insert_id, data, **payload):
    return {"timestamp": ts, "insertId": insert_id, "jsonPayload": {**payload, "data": json.dumps(data)}}


# Streamed in with insert_rows_json (as the sink does).
PREDICTIONS = [
    _line("2026-03-01T10:00:00Z", "p1", [{"id": "a1", "interval": [0.1, 0.9]}, {"id": "a2", "interval": [0.2, 0.8]}],
          event="prediction", model="penguins", model_version="v1", role="stable", fallback=False,
          request_id="req-1", first_row=0.25, labels=["Adelie", "Gentoo"], threshold=0.5, source="api"),
    _line("2026-03-01T11:00:00Z", "p2", [{"id": "a3", "interval": [0.3, 0.7]}],
          event="prediction", model="penguins", model_version="v2", role="canary", fallback=True,
          request_id="req-2", first_row=0.75, labels=["Adelie", "Chinstrap"], threshold=0.5, source="api"),
    _line("2026-03-02T09:00:00Z", "p3", [{"id": "c1", "interval": [1.5, 2.5]}],
          event="prediction", model="co2", model_version="v1", role="stable", fallback=False,
          request_id="req-3", first_row=1.5, labels=[], source="api"),
]
# Loaded with load_table_from_json (a load job).
FEEDBACK = [
    _line("2026-03-02T12:00:00Z", "f1", [{"id": "a1", "truth": "Adelie"}, {"id": "a2", "truth": "Gentoo"}],
          event="feedback", model="penguins", request_id="req-1", source="labels"),
    _line("2026-03-03T08:00:00Z", "f2", [{"id": "a1", "truth": "Chinstrap"}],
          event="feedback", model="penguins", request_id="req-1", source="labels"),
    _line("2026-03-03T09:00:00Z", "f3", [{"id": "c1", "truth": 2.5}],
          event="feedback", model="co2", request_id="req-3", source="labels"),
]

ROWS = f"{TABLE} AS t, UNNEST(JSON_QUERY_ARRAY(t.jsonPayload.data)) AS r"


def _p(name: str, kind: str, value) -> bigquery.ScalarQueryParameter:
    return bigquery.ScalarQueryParameter(name, kind, value)


# (id, SQL, query parameters, the rows BigQuery answers)
CASES = [
    ("json_value", f"SELECT JSON_VALUE(r, '$.id') AS id FROM {ROWS} "
     "WHERE t.jsonPayload.event = 'prediction' ORDER BY id", [],
     [("a1",), ("a2",), ("a3",), ("c1",)]),
    ("safe_cast_json_value_array_element", f"SELECT JSON_VALUE(r, '$.id') AS id, "
     "SAFE_CAST(JSON_VALUE(r, '$.interval[1]') AS FLOAT64) AS upper, "
     "SAFE_CAST(JSON_VALUE(r, '$.id') AS FLOAT64) AS not_a_number "
     f"FROM {ROWS} WHERE t.jsonPayload.event = 'prediction' ORDER BY id", [],
     [("a1", 0.9, None), ("a2", 0.8, None), ("a3", 0.7, None), ("c1", 2.5, None)]),
    ("row_number", "SELECT insertId, rn FROM (SELECT insertId, ROW_NUMBER() OVER "
     "(PARTITION BY jsonPayload.request_id ORDER BY timestamp DESC) AS rn "
     f"FROM {TABLE} WHERE jsonPayload.event = 'feedback') ORDER BY insertId", [],
     [("f1", 2), ("f2", 1), ("f3", 1)]),
    ("qualify", f"SELECT jsonPayload.request_id AS request_id, insertId FROM {TABLE} "
     "WHERE jsonPayload.event = 'feedback' "
     "QUALIFY ROW_NUMBER() OVER (PARTITION BY jsonPayload.request_id ORDER BY timestamp DESC) = 1 "
     "ORDER BY request_id", [],
     [("req-1", "f2"), ("req-3", "f3")]),
    ("countif", "SELECT jsonPayload.model AS model, COUNTIF(jsonPayload.fallback) AS fallbacks, "
     "COUNTIF(jsonPayload.event = 'prediction') AS predictions, COUNTIF(jsonPayload.event = 'nothing') AS none "
     f"FROM {TABLE} GROUP BY model ORDER BY model", [],
     [("co2", 0, 1, 0), ("penguins", 1, 2, 0)]),
    ("to_json_string_repeated", "SELECT insertId, TO_JSON_STRING(jsonPayload.labels) AS labels "
     f"FROM {TABLE} WHERE jsonPayload.event = 'prediction' ORDER BY insertId", [],
     [("p1", '["Adelie","Gentoo"]'), ("p2", '["Adelie","Chinstrap"]'), ("p3", "[]")]),
    ("strpos_label_in_labels", "SELECT insertId, STRPOS(LOWER(TO_JSON_STRING(jsonPayload.labels)), "
     "CONCAT('\"', LOWER(TRIM('  GENTOO ')), '\"')) AS pos "
     f"FROM {TABLE} WHERE jsonPayload.event = 'prediction' ORDER BY insertId", [],
     [("p1", 11), ("p2", 0), ("p3", 0)]),
    ("approx_quantiles", "SELECT APPROX_QUANTILES(x, 10) AS q FROM UNNEST(GENERATE_ARRAY(0, 100)) AS x", [],
     [([0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100],)]),
    ("approx_quantiles_column", "SELECT APPROX_QUANTILES(jsonPayload.first_row, 2) AS q "
     f"FROM {TABLE} WHERE jsonPayload.event = 'prediction'", [],
     [([0.25, 0.75, 1.5],)]),
    ("range_bucket", "SELECT insertId, RANGE_BUCKET(jsonPayload.first_row, [0.0, 0.5, 1.0]) AS bucket "
     f"FROM {TABLE} WHERE jsonPayload.event = 'prediction' ORDER BY insertId", [],
     [("p1", 1), ("p2", 2), ("p3", 3)]),
    # BigQuery's documented values (hash_functions, FARM_FINGERPRINT) and FARM_FINGERPRINT("alphabet")
    ("farm_fingerprint", "SELECT s, FARM_FINGERPRINT(s) AS f FROM UNNEST(['1footrue', '2applefalse', '3true', "
     "'alphabet']) AS s ORDER BY s", [],
     [("1footrue", -1541654101129638711), ("2applefalse", 2794438866806483259),
      ("3true", -4880158226897771312), ("alphabet", -2427165924636348523)]),
    ("mod_abs_farm_fingerprint", "SELECT s, MOD(ABS(FARM_FINGERPRINT(s)), 100) AS bucket "
     "FROM UNNEST(['1footrue', '2applefalse', '3true']) AS s ORDER BY s", [],
     [("1footrue", 11), ("2applefalse", 59), ("3true", 12)]),
    ("timestamp_diff", "SELECT f.insertId, TIMESTAMP_DIFF(f.timestamp, p.timestamp, HOUR) AS hours, "
     "TIMESTAMP_DIFF(f.timestamp, p.timestamp, SECOND) AS seconds "
     f"FROM {TABLE} AS f JOIN {TABLE} AS p ON p.jsonPayload.request_id = f.jsonPayload.request_id "
     "AND p.jsonPayload.event = 'prediction' WHERE f.jsonPayload.event = 'feedback' ORDER BY f.insertId", [],
     [("f1", 26, 93600), ("f2", 46, 165600), ("f3", 24, 86400)]),
    ("parameters", f"SELECT insertId FROM {TABLE} WHERE jsonPayload.model = @model AND timestamp >= @since "
     "ORDER BY timestamp",
     [_p("model", "STRING", "penguins"), _p("since", "TIMESTAMP", _utc("2026-03-01T10:30:00"))],
     [("p2",), ("f1",), ("f2",)]),
    ("timestamp_between_parameters", f"SELECT insertId FROM {TABLE} WHERE timestamp BETWEEN @since AND @until "
     "ORDER BY timestamp",
     [_p("since", "TIMESTAMP", _utc("2026-03-01T11:00:00")), _p("until", "TIMESTAMP", _utc("2026-03-02T12:00:00"))],
     [("p2",), ("p3",), ("f1",)]),
    ("left_join_ctes", f"""
        WITH predicted AS (
          SELECT JSON_VALUE(r, '$.id') AS id, t.jsonPayload.model AS model FROM {ROWS}
          WHERE t.jsonPayload.event = 'prediction'),
        truth AS (
          SELECT JSON_VALUE(r, '$.id') AS id, JSON_VALUE(r, '$.truth') AS truth FROM {ROWS}
          WHERE t.jsonPayload.event = 'feedback'
          QUALIFY ROW_NUMBER() OVER (PARTITION BY JSON_VALUE(r, '$.id') ORDER BY t.timestamp DESC) = 1)
        SELECT p.id, p.model, truth.truth FROM predicted AS p LEFT JOIN truth ON truth.id = p.id ORDER BY p.id""",
     [], [("a1", "penguins", "Chinstrap"), ("a2", "penguins", "Gentoo"), ("a3", "penguins", None),
          ("c1", "co2", "2.5")]),
    # JSON_QUERY on a STRING answers a STRING holding JSON text ('"Adelie"', '2.5'): its first character tells a
    # JSON string from a number.
    ("json_query_string_first_char", "SELECT JSON_VALUE(r, '$.id') AS id, "
     "LEFT(JSON_QUERY(r, '$.truth'), 1) = '\"' AS is_string "
     f"FROM {ROWS} WHERE t.jsonPayload.event = 'feedback' ORDER BY t.insertId, id", [],
     [("a1", True), ("a2", True), ("a1", True), ("c1", False)]),
    ("array_offset_literal_and_ordinal", "SELECT ['a', 'b', 'c'][OFFSET(1)] AS o, ['a', 'b', 'c'][ORDINAL(1)] AS n, "
     "['a', 'b', 'c'][ORDINAL(i + 1)] AS by_column FROM UNNEST([1]) AS i", [], [("b", "a", "b")]),
]

# Constructs bqemulator 1.4 (on duckdb 1.5) answers differently from BigQuery. Each: the SQL, what BigQuery
# answers ("rows"; "columns": the result's column names; "error": BigQuery refuses it) and what happens instead.
ERROR = "error"
EMULATOR_GAPS: list[dict] = [
    {"id": "array_offset_column",
     "sql": "SELECT i, ['a', 'b', 'c'][OFFSET(i)] AS v FROM UNNEST([2, 0, 1]) AS i ORDER BY i",
     "bigquery": [(0, "a"), (1, "b"), (2, "c")],
     "happens": "OFFSET(column) is read as ORDINAL (1-based): [(0, None), (1, 'a'), (2, 'b')], silently; "
                "SAFE_OFFSET(column) too. Literal OFFSET(1) and ORDINAL(column) are right (CASES)."},
    {"id": "array_offset_column_out_of_bounds",
     "sql": "SELECT ['a', 'b', 'c'][OFFSET(i)] AS v FROM UNNEST([3]) AS i",
     "bigquery": ERROR,
     "happens": "BigQuery fails (array index 3 out of bounds); the emulator answers 'c' (the same 1-based read)."},
    {"id": "to_json_string_of_json_query",
     "sql": "SELECT JSON_VALUE(r, '$.id') AS id, LEFT(TO_JSON_STRING(JSON_QUERY(r, '$.truth')), 1) = '\"' AS s "
            f"FROM {ROWS} WHERE t.jsonPayload.event = 'feedback' ORDER BY t.insertId, id",
     # JSON_QUERY on a STRING answers a STRING ('2.5', '"Adelie"'), which TO_JSON_STRING quotes again
     # ('"2.5"'): on BigQuery the test is true for numbers too.
     "bigquery": [("a1", True), ("a2", True), ("a1", True), ("c1", True)],
     "happens": "the emulator types JSON_QUERY(STRING) as JSON, so TO_JSON_STRING returns it unquoted ('2.5', "
                "'\"Adelie\"') and c1's number gives False: the emulator makes this string-vs-number test look right "
                "where BigQuery answers True for every non-NULL value. Use LEFT(JSON_QUERY(r, path), 1) = '\"' "
                "(json_query_string_first_char in CASES), right on both."},
    {"id": "string_function_of_json_query_literal",
     "sql": "SELECT UPPER(JSON_QUERY('{\"t\": \"x\"}', '$.t')) AS a",
     "bigquery": [('"X"',)],
     "happens": "400 invalidQuery, Binder Error: failed to bind function ... does not support lambdas / "
                "Referenced column \"{\"t\": \"x\"}\" was not found (the literal becomes a column)."},
    {"id": "unaliased_column_names",
     "sql": "SELECT 1 + 1, TO_JSON_STRING(['a'])",
     "bigquery": ["f0_", "f1_"],
     "answer": "columns",
     "happens": "columns are named after DuckDB's expression: '(1 + 1)', "
                "\"CAST(to_json(main.list_value('a')) AS VARCHAR)\". Alias every computed column."},
    {"id": "dml_over_streaming_buffer",
     "sql": f"DELETE FROM `{PROJECT}.{DATASET}.streamed` WHERE insertId = 'p1'",
     "bigquery": ERROR,
     "happens": "BigQuery refuses UPDATE/DELETE/MERGE over rows still in the streaming buffer (insert_rows_json, "
                "the sink's own writes, for up to about 90 minutes); the emulator deletes them."},
]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """One bqemulator for the module, stopped after it."""
    if not BQEMULATOR_PYTHON.exists():
        pytest.fail(MISSING_VENV, pytrace=False)
    server = BigQueryEmulator(tmp_path_factory.mktemp("bqemulator"), PROJECT).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(emulator):
    return bigquery_client(emulator.endpoint, PROJECT)


@pytest.fixture(scope="module")
def log_table(client) -> bigquery.Table:
    """The sink's table with PREDICTIONS streamed in and FEEDBACK loaded."""
    client.create_dataset(DATASET)
    table = bigquery.Table(f"{PROJECT}.{DATASET}.run_googleapis_com_stdout", schema=SCHEMA)
    table.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field="timestamp")
    table = client.create_table(table)
    assert client.insert_rows_json(table, PREDICTIONS) == []
    client.load_table_from_json(FEEDBACK, table).result()
    streamed = client.create_table(bigquery.Table(f"{PROJECT}.{DATASET}.streamed", schema=SCHEMA))
    assert client.insert_rows_json(streamed, PREDICTIONS) == []
    return table


def query(client, sql: str, params=()) -> list[tuple]:
    job = client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=list(params)))
    return [tuple(row.values()) for row in job.result()]


def test_dataset_and_partitioned_table(client, log_table):
    assert [d.dataset_id for d in client.list_datasets()] == [DATASET]
    assert {t.table_id for t in client.list_tables(DATASET)} >= {"run_googleapis_com_stdout", "streamed"}
    table = client.get_table(f"{PROJECT}.{DATASET}.run_googleapis_com_stdout")
    assert table.time_partitioning.type_ == "DAY"
    assert table.time_partitioning.field == "timestamp"
    payload = {f.name: f for f in next(f for f in table.schema if f.name == "jsonPayload").fields}
    assert list(payload) == [name for name, _, _ in PAYLOAD_FIELDS]
    assert payload["labels"].mode == "REPEATED"
    assert payload["fallback"].field_type in ("BOOLEAN", "BOOL")


def test_streamed_and_loaded_rows_are_both_there(client, log_table):
    rows = query(client, f"SELECT insertId, timestamp, jsonPayload.labels AS labels FROM {TABLE} ORDER BY insertId")
    assert [r[0] for r in rows] == ["f1", "f2", "f3", "p1", "p2", "p3"]
    assert rows[3] == ("p1", _utc("2026-03-01T10:00:00"), ["Adelie", "Gentoo"])
    assert rows[0][2] == []


@pytest.mark.parametrize("sql, params, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_construct(client, log_table, sql, params, expected):
    assert query(client, sql, params) == expected


def test_delete_dml(client, log_table):
    """DELETE on a table of its own (BigQuery refuses DML on rows still in the streaming buffer: load them)."""
    scratch = bigquery.Table(f"{PROJECT}.{DATASET}.scratch", schema=SCHEMA)
    scratch.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field="timestamp")
    scratch = client.create_table(scratch)
    client.load_table_from_json(PREDICTIONS + FEEDBACK, scratch).result()
    job = client.query(f"DELETE FROM `{PROJECT}.{DATASET}.scratch` WHERE jsonPayload.model = @model "
                       "AND timestamp < @before",
                       job_config=bigquery.QueryJobConfig(query_parameters=[
                           _p("model", "STRING", "penguins"), _p("before", "TIMESTAMP", _utc("2026-03-03T00:00:00"))]))
    job.result()
    assert job.num_dml_affected_rows == 3
    left = query(client, f"SELECT insertId FROM `{PROJECT}.{DATASET}.scratch` ORDER BY insertId")
    assert left == [("f2",), ("f3",), ("p3",)]


@pytest.mark.parametrize("gap", EMULATOR_GAPS, ids=[g["id"] for g in EMULATOR_GAPS])
def test_gap_sql_is_bigquery_sql(gap):
    """What the emulator cannot check, SQLGlot at least parses as BigQuery SQL (and round-trips)."""
    tree = sqlglot.parse_one(gap["sql"], read="bigquery")
    sqlglot.parse_one(tree.sql(dialect="bigquery"), read="bigquery")


@pytest.mark.parametrize("gap", EMULATOR_GAPS, ids=[g["id"] for g in EMULATOR_GAPS])
def test_gap_is_still_there(client, log_table, gap):
    """The documented wrong answer still happens; once bqemulator gets it right, move the construct to CASES."""
    try:
        job = client.query(gap["sql"])
        rows = list(job.result())
    except Exception as exc:  # noqa: BLE001 - an error is the gap itself for some
        got = ERROR
        detail = repr(exc)
    else:
        got = list(rows[0].keys()) if gap.get("answer") == "columns" and rows else [tuple(r.values()) for r in rows]
        detail = repr(got)
    assert got != gap["bigquery"], \
        f"bqemulator now answers {gap['id']} as BigQuery does ({detail}): move it from EMULATOR_GAPS to CASES"
