"""What a scoring run leaves in its output folder, and the order it is committed in.

Task i of n writes `part-i-of-n.parquet` (the scored rows) and `errors-i-of-n.parquet` (file, row, field, message of
every refused row), each as a whole object at its commit, then its marker `_shards/i-of-n.json` (its counts and the
run's plan fingerprint). A rerun of the task replaces the same three objects, so no row is kept twice or lost. A
task that finds every marker of the plan in place writes `_SUCCESS`, the manifest: the files and the totals. A run
of another plan into the same folder first removes a `_SUCCESS` that is not its own, and the shards of a
run with another number of tasks.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from retrain_job.score.storage import AtomicObject
from shared.store import NotFound, Store

MANIFEST = "_SUCCESS"
MARKERS = "_shards/"
ERROR_SCHEMA = pa.schema([pa.field("file", pa.string(), nullable=False), pa.field("row", pa.int64(), nullable=False),
                          pa.field("field", pa.string(), nullable=False),
                          pa.field("message", pa.string(), nullable=False)])
COMPRESSION = "snappy"
_SHARD = re.compile(r"(part-|errors-|_shards/)\d{5}-of-\d{5}\.(parquet|json)")


def part_key(index: int, count: int) -> str:
    return f"part-{index:05d}-of-{count:05d}.parquet"


def errors_key(index: int, count: int) -> str:
    return f"errors-{index:05d}-of-{count:05d}.parquet"


def marker_key(index: int, count: int) -> str:
    return f"{MARKERS}{index:05d}-of-{count:05d}.json"


class ShardFiles:
    """A task's two Parquet files, written chunk by chunk and committed together."""

    def __init__(self, store: Store, index: int, count: int, schema: pa.Schema) -> None:
        self.part = AtomicObject(store, part_key(index, count))
        self.errors = AtomicObject(store, errors_key(index, count))
        # dictionaries for the columns of few values only: ids and measurements would only grow one to drop it;
        # no min/max statistics for text (every id distinct: costly, and no reader prunes by them)
        repeated = [f.name for f in schema if pa.types.is_dictionary(f.type) or pa.types.is_list(f.type)]
        ordered = [f.name for f in schema if not pa.types.is_string(f.type)]
        self._rows = pq.ParquetWriter(self.part.sink, schema, compression=COMPRESSION, use_dictionary=repeated,
                                      write_statistics=ordered)
        self._errors = pq.ParquetWriter(self.errors.sink, ERROR_SCHEMA, compression=COMPRESSION)

    def write_rows(self, table: pa.Table) -> None:
        if table.num_rows:
            self._rows.write_table(table)

    def write_errors(self, file: str, errors: Sequence[tuple[int, str, str]]) -> None:
        """Refused rows of one input file: (row of the file, field, message)."""
        if errors:
            rows, fields, messages = zip(*errors)
            self._errors.write_table(pa.table([pa.array([file] * len(rows), pa.string()), pa.array(rows, pa.int64()),
                                               pa.array(fields, pa.string()), pa.array(messages, pa.string())],
                                              schema=ERROR_SCHEMA))

    def commit(self) -> None:
        """Both files become their objects, whole (an empty shard's are empty Parquet files)."""
        self._rows.close()
        self._errors.close()
        self.part.commit()
        self.errors.commit()

    def abort(self) -> None:
        """Neither object changes."""
        for writer in (self._rows, self._errors):
            try:
                writer.close()
            except Exception:  # noqa: S110 - the files are dropped anyway
                pass
        self.part.abort()
        self.errors.abort()


def clear_other_plans(store: Store, plan: str, count: int) -> None:
    """Remove a `_SUCCESS` written for another plan (the folder is no longer that run's whole output), and the shards
    of a run with another number of tasks (this run's tasks replace those of its own number)."""
    manifest = read_json(store, MANIFEST)
    if manifest is not None and manifest.get("plan") != plan:
        store.delete(MANIFEST)
    ours = f"-of-{count:05d}."
    for key in store.list(""):
        if _SHARD.fullmatch(key) and ours not in key:
            store.delete(key)


def write_marker(store: Store, index: int, count: int, record: dict) -> None:
    store.write(marker_key(index, count), json.dumps(record, indent=2).encode())


def complete(store: Store, plan: str, count: int, run: dict) -> dict | None:
    """The manifest, written if every task of the plan has its marker in place; None while some are missing."""
    markers = []
    for index in range(count):
        marker = read_json(store, marker_key(index, count))
        if marker is None or marker.get("plan") != plan:
            return None
        markers.append(marker)
    manifest = {
        **run, "plan": plan, "tasks": count,
        "rows_in": sum(m["rows_in"] for m in markers), "rows_scored": sum(m["rows_scored"] for m in markers),
        "rows_rejected": sum(m["rows_rejected"] for m in markers),
        "parts": [m["part"] for m in markers], "errors": [m["errors"] for m in markers],
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    store.write(MANIFEST, json.dumps(manifest, indent=2).encode())
    return manifest


def read_json(store: Store, key: str) -> dict | None:
    """A small JSON object, or None if absent or unreadable."""
    try:
        data, _ = store.read(key)
        value = json.loads(data)
    except (NotFound, ValueError):
        return None
    return value if isinstance(value, dict) else None
