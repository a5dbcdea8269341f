"""The BigQuery sink's table, filled from sink files: each LogEntry line becomes the row Cloud Logging writes.

A Cloud Logging sink into BigQuery writes one row per routed entry into `run_googleapis_com_stdout`
(shared.logline.BIGQUERY_TABLE): `timestamp`, `insertId`, and `jsonPayload`, a RECORD of the payload's fields
(shared.logline.ROUTED_FIELDS fixes their types; JSON numbers arrive as FLOAT). The rows go in with a load job:
the emulator's streaming inserts and DML differ from BigQuery's (tests/infra/test_bigquery_emulator.py).

    rows = sink_rows(files)
    table = create_sink_table(client, "project.dataset")
    load_sink_rows(client, table, rows)
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from shared.logline import BIGQUERY_TABLE, ROUTED_FIELDS, SINK_EVENTS


def sink_schema() -> list:
    """The sink table's schema: timestamp, insertId, and jsonPayload with every routed field, typed."""
    from google.cloud import bigquery

    payload = []
    for name, declared in ROUTED_FIELDS.items():
        kind, _, mode = declared.partition(" ")
        payload.append(bigquery.SchemaField(name, kind, mode=mode or "NULLABLE"))
    return [bigquery.SchemaField("timestamp", "TIMESTAMP"), bigquery.SchemaField("insertId", "STRING"),
            bigquery.SchemaField("jsonPayload", "RECORD", fields=payload)]


def _field(kind: str, value: Any) -> Any:
    """A payload value as its column holds it (numbers FLOAT); what the column cannot hold makes the entry refused."""
    base, _, mode = kind.partition(" ")
    if mode == "REPEATED":
        if not isinstance(value, list):
            raise TypeError(value)
        return [_field(base, v) for v in value if v is not None]
    if base == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(value)
        return float(value)
    if base == "BOOLEAN":
        if not isinstance(value, bool):
            raise TypeError(value)
        return value
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def sink_row(entry: dict) -> dict | None:
    """The table row of one LogEntry as the sink writes it, or None where the sink would not write it (not
    routed, or a field of another type than its column's)."""
    payload = entry.get("jsonPayload")
    if not isinstance(payload, dict) or payload.get("event") not in SINK_EVENTS or not entry.get("timestamp"):
        return None
    fields = {}
    try:
        for name, value in payload.items():
            if name in ROUTED_FIELDS and value is not None:
                fields[name] = _field(ROUTED_FIELDS[name], value)
    except TypeError:
        return None
    return {"timestamp": entry["timestamp"], "insertId": entry.get("insertId"), "jsonPayload": fields}


def sink_rows(files: Iterable[Path]) -> list[dict]:
    """The rows of every routed LogEntry line in the sink files (lines that are not LogEntry JSON are skipped)."""
    rows = []
    for path in files:
        for line in Path(path).read_bytes().splitlines():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            row = sink_row(entry) if isinstance(entry, dict) else None
            if row is not None:
                rows.append(row)
    return rows


def create_sink_table(client: Any, dataset: str, table: str = BIGQUERY_TABLE) -> str:
    """A new dataset (`project.dataset`) holding an empty sink table, partitioned by day on timestamp; its id."""
    from google.cloud import bigquery

    client.create_dataset(dataset)
    spec = bigquery.Table(f"{dataset}.{table}", schema=sink_schema())
    spec.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field="timestamp")
    client.create_table(spec)
    return f"{dataset}.{table}"


def load_sink_rows(client: Any, table: str, rows: Sequence[dict]) -> None:
    """Append the rows to the sink table with a load job (JSON, the table's own schema)."""
    from google.cloud import bigquery

    if not rows:
        return
    config = bigquery.LoadJobConfig(schema=sink_schema(), source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
                                    write_disposition=bigquery.WriteDisposition.WRITE_APPEND)
    client.load_table_from_json(list(rows), table, job_config=config).result()
