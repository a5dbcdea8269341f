"""Where the job's log queries run: DuckDB over the sink's files (embedded), or BigQuery over the sink's table.

Every query is written once, in BigQuery's dialect, against two relations over the routed log lines of a time
window. Each engine defines them over its own storage (the only engine-specific SQL) and runs the queries:
BigQuery as written, DuckDB as SQLGlot transpiles them (the same translation the BigQuery emulator makes).

    lines:  one row per LogEntry: ts TIMESTAMP, insert_id, event, model, model_version, role, source STRING,
            labels STRING (JSON text of the line's labels, NULL without)
    logged: one row per element of a line's `data` (shared.logline): the line's columns, k INT64 (its
            position), id STRING, id_json (a feedback item's id as JSON text, NULL on other rows), predicted,
            probabilities, instance, truth (JSON texts), probability, interval_low, interval_high FLOAT64

A query's intermediate result can be `materialize`d: DuckDB keeps it as a table (so the logs are parsed once
per run), BigQuery as a session's temporary table. Queries return aggregates and bounded samples, never every
logged row, so the job's memory does not grow with the traffic; DuckDB keeps its tables in memory and spills them
to disk past its memory limit (DUCKDB_MEMORY_LIMIT, DUCKDB_QUERY_MEMORY_LIMIT, or the caller's).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import sqlglot

from shared.logline import BIGQUERY_TABLE, LOG_ID, SINK_EVENTS
from shared.store import LocalStore, Store

# A sink file is named after the hour its entries belong to; files of neighbouring hours are read too, so an
# entry filed by another clock than its own timestamp's is still found.
FILE_SLACK = timedelta(hours=1)
log = logging.getLogger(__name__)
# DuckDB's memory by default (the monitor's, the drift report's), spilling to disk past it: while it parses the
# window's files (its read buffers need the room), then for the queries; lower for the queries, so that the peak RSS
# stays flat as the logs grow (make scale)
DUCKDB_MEMORY_LIMIT = "256MB"
DUCKDB_QUERY_MEMORY_LIMIT = "160MB"
_EVENTS = ", ".join(f"'{e}'" for e in sorted(SINK_EVENTS))


@dataclass(frozen=True)
class Scan:
    """What the engine read besides the rows: sink files, and lines that were not LogEntry JSON or whose `data` was
    no JSON array of rows (DuckDB only)."""

    files: int = 0
    bad_lines: int = 0


class LogEngine(Protocol):
    """Runs a query (BigQuery dialect, reading `lines`) over one window of routed log lines."""

    name: str
    since: datetime
    until: datetime

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        """The query's result rows (small: aggregates or a bounded sample)."""

    def materialize(self, name: str, sql: str, params: dict[str, Any] | None = None) -> None:
        """Make `name` a relation later queries can read, holding the query's result."""

    def scan(self) -> Scan:
        """Files and unreadable lines behind `lines` (zero where the engine has no files)."""

    def close(self) -> None:
        """Release the engine's resources."""


@lru_cache(maxsize=64)
def to_duckdb(sql: str) -> str:
    """A BigQuery-dialect query in DuckDB's dialect (SQLGlot); query parameters become `$name`."""
    return sqlglot.transpile(sql, read="bigquery", write="duckdb")[0]


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def sink_base(log_prefix: str) -> str:
    """The store prefix of the sink's files under a log prefix."""
    prefix = log_prefix.strip("/")
    return f"{prefix}/{LOG_ID}/" if prefix else f"{LOG_ID}/"


def _file_may_hold(key: str, base: str, since: datetime, until: datetime) -> bool:
    """Whether a sink file's hour (from its path) is within the slack of [since, until]; unknown names are read."""
    rest = key[len(base):]
    try:
        start = datetime.strptime(rest[:10] + " " + rest.rsplit("/", 1)[-1][:2], "%Y/%m/%d %H").replace(tzinfo=UTC)
    except ValueError:
        return True
    return start <= until + FILE_SLACK and start + timedelta(hours=1) > since - FILE_SLACK


def sink_keys(store: Store, log_prefix: str, since: datetime, until: datetime) -> list[str]:
    """The sink files that may hold entries stamped in [since, until], listed one day folder at a time."""
    base = sink_base(log_prefix)
    day, last = (since - FILE_SLACK).date(), (until + FILE_SLACK).date()
    keys: list[str] = []
    while day <= last:
        keys.extend(k for k in store.list(f"{base}{day:%Y/%m/%d}/")
                    if k.endswith(".json") and _file_may_hold(k, base, since, until))
        day += timedelta(days=1)
    return keys


_DUCKDB_LINES = """
CREATE OR REPLACE TEMP VIEW entries AS
SELECT TRY_CAST(timestamp AS TIMESTAMPTZ) AS ts, insertId AS insert_id, jsonPayload.event AS event,
       jsonPayload.model AS model, jsonPayload.model_version AS model_version, jsonPayload.role AS role,
       jsonPayload.source AS source, NULLIF(CAST(jsonPayload.labels AS VARCHAR), 'null') AS labels,
       jsonPayload.data AS data,
       -- a line that is no JSON object, or an object with none of a LogEntry's fields, reads as all NULL
       timestamp IS NULL AND insertId IS NULL AND jsonPayload IS NULL AS unreadable
FROM read_json({files}, format = 'newline_delimited', ignore_errors = {lenient}, maximum_object_size = 16777216,
               columns = {{timestamp: 'VARCHAR', insertId: 'VARCHAR', jsonPayload: 'STRUCT(event VARCHAR,
               model VARCHAR, model_version VARCHAR, role VARCHAR, source VARCHAR, labels JSON, data VARCHAR)'}});
CREATE OR REPLACE TEMP VIEW lines AS
SELECT ts, insert_id, event, model, model_version, role, source, labels, data FROM entries
WHERE ts BETWEEN {since} AND {until} AND event IN ({events});
CREATE OR REPLACE TEMP VIEW logged_files AS
SELECT ts, insert_id, event, model, model_version, role, source, labels, unreadable,
       k - 1 AS k, IF(event = 'feedback', CAST(r.id AS VARCHAR), NULL) AS id_json, r.id ->> '$' AS id,
       CAST(r.predicted AS VARCHAR) AS predicted, r.probability,
       CAST(r.probabilities AS VARCHAR) AS probabilities, CAST(r.instance AS VARCHAR) AS instance,
       CAST(r.truth AS VARCHAR) AS truth, r.interval[1] AS interval_low, r.interval[2] AS interval_high
FROM (SELECT *, unnest(x) AS r, generate_subscripts(x, 1) AS k  -- in the projection: far faster than LATERAL
      FROM (SELECT * EXCLUDE (unreadable, parsed), unreadable OR broken AS unreadable,
                   CASE WHEN unreadable OR broken THEN [NULL] ELSE parsed END AS x  -- one row of NULLs, for `scan`
            FROM (SELECT *, parsed IS NULL AND data IS NOT NULL AND NOT unreadable AS broken  -- data no JSON array
                  FROM (SELECT *, {try_}(json_transform(data, '[{{"id": "JSON", "predicted": "JSON",
                               "probability": "DOUBLE", "probabilities": "JSON", "instance": "JSON", "truth": "JSON",
                               "interval": "DOUBLE[]"}}]')) AS parsed  -- a value of another type: NULL
                        FROM entries WHERE unreadable OR event IN ({events})))))
"""
_EMPTY_ENTRIES = ("SELECT CAST(NULL AS TIMESTAMPTZ) AS ts, CAST(NULL AS VARCHAR) AS insert_id, "
                  "CAST(NULL AS VARCHAR) AS event, CAST(NULL AS VARCHAR) AS model, CAST(NULL AS VARCHAR) AS "
                  "model_version, CAST(NULL AS VARCHAR) AS role, CAST(NULL AS VARCHAR) AS source, "
                  "CAST(NULL AS VARCHAR) AS labels, CAST(NULL AS VARCHAR) AS data, "
                  "FALSE AS unreadable WHERE false")


class DuckDBEngine:
    """DuckDB reading the sink's LogEntry files where they lie (a local bucket), or copies of them (any other store)."""

    name = "duckdb"

    def __init__(self, files: Sequence[Path], since: datetime, until: datetime, *, model: str | None = None,
                 cleanup: Path | None = None, memory_limit: str | None = None) -> None:
        import duckdb  # the job's dependency only: the function never loads it

        self.since, self.until = _utc(since), _utc(until)
        self.files = [str(f) for f in files]
        self._cleanup = cleanup
        self._spill = Path(tempfile.mkdtemp(prefix="duckdb-spill-"))
        self.con = duckdb.connect(":memory:", config={
            "memory_limit": memory_limit or DUCKDB_MEMORY_LIMIT, "threads": os.cpu_count() or 1,
            "temp_directory": str(self._spill),
            "preserve_insertion_order": False})  # queries order what they return; scans need not keep file order
        self.con.execute("SET TimeZone = 'UTC'")
        self._scan: Scan | None = None
        self.con.execute("CREATE MACRO farm_fingerprint(x) AS hash(x)")  # BigQuery's, for hashed samples
        # the files are parsed once (each timestamp too: the window's bounds filter the view, not the parse):
        # `logged` reads a table of the files' rows (the model's, and every model's feedback), beside a row for each
        # unreadable line (for `scan`), in memory and spilled past its limit; later queries read only the columns
        # they name. DuckDB's reader is faster when it need not recover from bad lines: the files are read so first,
        # and only if one holds a line that is not a JSON object of a LogEntry's shape, read again skipping it
        only = "" if model is None else f" WHERE model = {_quote(model)} OR event = 'feedback' OR unreadable"
        try:
            self._parse(only, lenient=False)
        except duckdb.InvalidInputException as error:
            log.info("a sink file holds lines that are no LogEntry; reading again, counting them: %s",
                     str(error).splitlines()[0])
            self._parse(only, lenient=True)
        self.con.execute("CREATE TEMP VIEW logged AS SELECT * EXCLUDE (unreadable), rowid AS row_key FROM logged_rows "
                         f"WHERE NOT unreadable AND ts BETWEEN {_timestamp(self.since)} AND {_timestamp(self.until)}")
        self.con.execute(f"SET memory_limit = {_quote(memory_limit or DUCKDB_QUERY_MEMORY_LIMIT)}")

    def _parse(self, only: str, *, lenient: bool) -> None:
        """The relations over the files, and the table of their rows (`lenient`: lines that are no JSON object of a
        LogEntry's fields read as unreadable, rather than failing the read)."""
        files = "[" + ", ".join(_quote(f) for f in self.files) + "]"
        script = _DUCKDB_LINES.format(files=files, events=_EVENTS, since=_timestamp(self.since),
                                      until=_timestamp(self.until), lenient=str(lenient).lower(),
                                      try_="TRY" if lenient else "")
        if not self.files:  # no file in the window: the same relations, empty
            script = script.replace(script[script.index("SELECT TRY_CAST"):script.index(";")], _EMPTY_ENTRIES)
        self.con.execute(script)
        self.con.execute(f"CREATE OR REPLACE TABLE logged_rows AS SELECT * FROM logged_files{only}")

    @classmethod
    def for_store(cls, store: Store, log_prefix: str, since: datetime, until: datetime, *,
                  model: str | None = None, memory_limit: str | None = None) -> DuckDBEngine:
        """The engine over a store's sink files of the window: read in place from a local bucket, else copied
        one file at a time to a temporary folder (disk, not memory) first."""
        since, until = _utc(since), _utc(until)
        keys = sink_keys(store, log_prefix, since, until)
        if isinstance(store, LocalStore):
            return cls([store.root / k for k in keys], since, until, model=model, memory_limit=memory_limit)
        folder = Path(tempfile.mkdtemp(prefix="sink-copy-"))
        files = []
        for i, key in enumerate(keys):
            data, _ = store.read(key)
            path = folder / f"{i:06d}.json"
            path.write_bytes(data)
            files.append(path)
        return cls(files, since, until, model=model, cleanup=folder, memory_limit=memory_limit)

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        """The query's rows, run by DuckDB after translation from BigQuery's dialect."""
        text = to_duckdb(sql)
        used = {k: v for k, v in (params or {}).items() if f"${k}" in text}  # DuckDB refuses unused parameters
        return self.con.execute(text, used).fetchall()

    def materialize(self, name: str, sql: str, params: dict[str, Any] | None = None) -> None:
        """A table `name` on the run's scratch database, holding the query's result."""
        text = to_duckdb(sql)
        used = {k: v for k, v in (params or {}).items() if f"${k}" in text}
        self.con.execute(f"CREATE OR REPLACE TABLE {name} AS {text}", used)

    def scan(self) -> Scan:
        """Files read, and lines that are no LogEntry (no JSON object, an object with none of its fields, or `data`
        that is no JSON array), counted by the same parse as the rows; an entry without a usable timestamp is
        dropped by the window."""
        if self._scan is None:
            (bad,) = self.con.execute("SELECT count(*) FROM logged_rows WHERE unreadable").fetchone()
            self._scan = Scan(len(self.files), int(bad))
        return self._scan

    def close(self) -> None:
        """Close the connection; remove the spill folder and any copied files."""
        self.con.close()
        shutil.rmtree(self._spill, ignore_errors=True)
        if self._cleanup is not None:
            shutil.rmtree(self._cleanup, ignore_errors=True)


class BigQueryEngine:
    """BigQuery over the table a Cloud Logging sink fills (`project.dataset.run_googleapis_com_stdout`).

    Its queries run in one BigQuery session: the window's partitions are scanned once, into the session's
    temporary table `logged` (the model's rows and every model's feedback), and each `materialize` is another
    temporary table, so the bytes billed per run are one scan of the window's columns read.
    """

    name = "bigquery"

    def __init__(self, client: Any, table: str, since: datetime, until: datetime, *, model: str | None = None) -> None:
        self.client, self.table, self.model = client, table, model
        self.since, self.until = _utc(since), _utc(until)
        self._session: str | None = None

    def _lines(self) -> str:
        # the window's filter on the partitioning column: only its daily partitions are scanned
        return (f"lines AS (SELECT timestamp AS ts, insertId AS insert_id, jsonPayload.event AS event, "
                f"jsonPayload.model AS model, jsonPayload.model_version AS model_version, jsonPayload.role AS role, "
                f"jsonPayload.source AS source, NULLIF(TO_JSON_STRING(jsonPayload.labels), '[]') AS labels, "
                f"jsonPayload.data AS data FROM `{self.table}` "
                f"WHERE timestamp BETWEEN @_since AND @_until AND jsonPayload.event IN ({_EVENTS}))")

    def _start(self) -> str:
        """The session, and in it the temporary table `logged`: the one scan of the sink table."""
        if self._session is None:
            from google.cloud import bigquery

            job = self.client.query("SELECT 1", job_config=bigquery.QueryJobConfig(create_session=True))
            job.result()
            self._session = job.session_info.session_id
            only = "" if self.model is None else " WHERE l.model = @_model OR l.event = 'feedback'"
            # a `data` that is no JSON gives no rows (SAFE.), not a failed run; DuckDB counts it as a bad line.
            # The offset is `pos`, not `k`: bqemulator rewrites every `k` of a query whose offset is named `k`
            # (tests/retrain_job/data/test_bigquery.py, BIGQUERY_GAPS)
            self._run(f"CREATE OR REPLACE TEMP TABLE logged AS WITH {self._lines()} "
                      "SELECT l.ts, l.insert_id, l.event, l.model, l.model_version, l.role, l.source, "
                      "l.labels, pos AS k, GENERATE_UUID() AS row_key, "
                      "IF(l.event = 'feedback', JSON_QUERY(r, '$.id'), NULL) AS id_json, "
                      "JSON_VALUE(r, '$.id') AS id, JSON_QUERY(r, '$.predicted') AS predicted, "
                      "SAFE_CAST(JSON_VALUE(r, '$.probability') AS FLOAT64) AS probability, "
                      "JSON_QUERY(r, '$.probabilities') AS probabilities, JSON_QUERY(r, '$.instance') AS instance, "
                      "JSON_QUERY(r, '$.truth') AS truth, "
                      "SAFE_CAST(JSON_VALUE(r, '$.interval[0]') AS FLOAT64) AS interval_low, "
                      "SAFE_CAST(JSON_VALUE(r, '$.interval[1]') AS FLOAT64) AS interval_high "
                      f"FROM lines AS l, UNNEST(SAFE.JSON_QUERY_ARRAY(l.data)) AS r WITH OFFSET AS pos{only}",
                      {"_since": self.since, "_until": self.until, **({"_model": self.model} if self.model else {})})
        return self._session

    def _run(self, text: str, params: dict[str, Any]) -> list[tuple]:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(
            query_parameters=[_parameter(bigquery, k, v) for k, v in params.items()],
            connection_properties=[bigquery.ConnectionProperty("session_id", self._session)])
        return [tuple(row.values()) for row in self.client.query(text, job_config=config).result()]

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        """The query's rows, in the session (`logged` is its table; `lines` a CTE over the window's partitions)."""
        self._start()
        text = sql.strip()
        if _reads_lines(text):
            lines = self._lines()
            text = f"WITH {lines}, {text[5:]}" if text[:5].upper() == "WITH " else f"WITH {lines} {text}"
        return self._run(text, {"_since": self.since, "_until": self.until, **(params or {})})

    def materialize(self, name: str, sql: str, params: dict[str, Any] | None = None) -> None:
        """A temporary table `name` of the session, holding the query's result."""
        self._start()
        self._run(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql.strip()}", params or {})

    def scan(self) -> Scan:
        """No files: the sink writes rows."""
        return Scan()

    def close(self) -> None:
        """End the session (its temporary tables go with it); the client is the caller's."""
        if self._session is not None:
            try:
                self._run("CALL BQ.ABORT_SESSION()", {})
            except Exception:  # noqa: BLE001 - an unended session expires on its own (bqemulator has no such call)
                log.debug("could not end BigQuery session %s", self._session, exc_info=True)
            self._session = None


def _reads_lines(sql: str) -> bool:
    """Whether a query names the `lines` relation (the others read the session's tables)."""
    return any(t.name == "lines" for t in sqlglot.parse_one(sql, read="bigquery").find_all(sqlglot.exp.Table))


def _parameter(bigquery: Any, name: str, value: Any) -> Any:
    kind = ("TIMESTAMP" if isinstance(value, datetime) else "BOOL" if isinstance(value, bool)
            else "INT64" if isinstance(value, int) else "FLOAT64" if isinstance(value, float) else "STRING")
    return bigquery.ScalarQueryParameter(name, kind, value)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _timestamp(when: datetime) -> str:
    return f"TIMESTAMPTZ '{when.astimezone(UTC).isoformat()}'"


def open_engine(store: Store, log_prefix: str, since: datetime, until: datetime, *, engine: str = "duckdb",
                table: str | None = None, client: Any = None, model: str | None = None,
                memory_limit: str | None = None) -> LogEngine:
    """The configured engine over [since, until]: DuckDB over the store's sink files (within `memory_limit`, else
    the module's defaults), or BigQuery's sink table."""
    if engine.lower() == "bigquery":
        if not table:
            raise ValueError("LOG_TABLE must name the BigQuery sink table (project.dataset.table)")
        if client is None:
            from google.cloud import bigquery

            client = bigquery.Client()
        return BigQueryEngine(client, table, since, until, model=model)
    return DuckDBEngine.for_store(store, log_prefix, since, until, model=model, memory_limit=memory_limit)


__all__ = ["BIGQUERY_TABLE", "BigQueryEngine", "DuckDBEngine", "LogEngine", "Scan", "open_engine", "sink_keys"]
