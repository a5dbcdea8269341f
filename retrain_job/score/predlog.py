"""`--log`: scored rows as prediction log lines in the sink's layout, read by the job's log engine like served ones.

Each line is a LogEntry as the bucket sink writes it around the payload the function logs for a large batch's rows
(`shared.logline`): event `prediction_rows`, the request id (one per input file), model, version, labels and
threshold, `role: "batch"`, `source: "batch"`, `first_row`, and the rows in `data`, encoded by `PredictionRows` with
the prediction ids the output file gives them. So the monitor's drift and feedback joins count batch predictions.

Where the lines go is where the job's log engine reads (`LOG_ENGINE`):
- DuckDB (`LogParts`): objects of their own beside the sink's hour files (whose names end in `_S0.json`; these in
  `_B<plan>-<task>-<part>.json`), each written whole, so a sink appending meanwhile is never disturbed. A task
  records each object in the output folder before writing it, and its rerun removes them first: its rows are
  logged once.
- BigQuery (`StdoutLog`): the payloads on stdout, one JSON line each as the function writes its own, which Cloud
  Logging routes from the job like the function's (terraform/logging.tf): into the sink's table, and the bucket's
  archive. A line once logged cannot be taken back: a rerun task logs its rows again under the same prediction ids,
  and the monitor's join keeps an id's first line (counting the others as repeated predictions).
"""
from __future__ import annotations

import itertools
import json
import sys
import time
from datetime import UTC, datetime
from typing import BinaryIO

import numpy as np
import orjson
import pyarrow as pa

from retrain_job.score.answers import label_positions
from shared.logline import DATA, LOG_ID, PREDICTION_ROWS, LogPolicy, PredictionRows, sink_key
from shared.model import ServingModel
from shared.predictor import Estimates, Probabilities
from shared.store import NotFound, Store

ROLE = SOURCE = "batch"
LOGGED_DIGITS = 6  # probabilities as the function logs them
ROWS_PER_ENTRY = 500  # rows per line to start from, fewer when a line would be too long
MAX_ENTRY_BYTES = 250_000  # Cloud Logging's LogEntry limit, less room for the entry's own fields
PART_BYTES = 32 * 1024 * 1024  # lines gathered in memory before they are written as one object
LOGS = "_logs/"
_LOG_NAME = "projects/local/logs/" + LOG_ID.replace("/", "%2F")


class _From:
    """Values indexed from `offset`: `[start:stop]` is the values' `[start - offset:stop - offset]`.

    `PredictionRows` numbers a slice's rows by their positions; this makes those the rows' numbers in their file."""

    __slots__ = ("offset", "values")

    def __init__(self, values, offset: int) -> None:
        self.values, self.offset = values, offset

    def __len__(self) -> int:
        return self.offset + len(self.values)

    def __getitem__(self, part: slice):
        return self.values[part.start - self.offset:part.stop - self.offset]


class LineEncoder:
    """The log lines of one model's scored rows (pure: no I/O)."""

    def __init__(self, model: ServingModel, job: str, policy: LogPolicy | None = None, *, entries: bool = True) -> None:
        self.model = model
        self.entries = entries  # each line a LogEntry around its payload (a sink's file), else the payload alone
        self.policy = policy  # the spec's log policy: what the rows' instances may hold
        self.head = {"severity": "INFO", "message": f"batch scoring of {model.name}", "event": PREDICTION_ROWS,
                     "model": model.name, "model_version": model.version, "role": ROLE, "fallback": False,
                     "source": SOURCE}
        if model.contract.is_classifier:
            self.head["labels"] = list(model.labels)
            if model.threshold is not None:
                self.head["threshold"] = model.threshold
        self.resource = {"type": "cloud_run_job", "labels": {"job_name": job}}
        self._insert = itertools.count(time.time_ns() // 1000)  # increasing; next() is atomic across threads

    def lines(self, request_id: str, rows: np.ndarray, inputs: pa.RecordBatch, out: Probabilities | Estimates) -> bytes:
        """LogEntry lines of predicted rows: `rows` their numbers in their file (increasing), `inputs` their fields."""
        columns = {name: inputs.column(name).to_pylist() for name in inputs.schema.names}
        answers = self._answers(out)
        parts = []
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1  # runs of consecutive rows: ids numbered by file row
        for begin, end in zip([0, *breaks.tolist()], [*breaks.tolist(), len(rows)]):
            first = int(rows[begin])
            offset = first - begin
            logged = PredictionRows(request_id, {"columns": {k: _From(v, offset) for k, v in columns.items()}},
                                    _From(answers["predicted"], offset),
                                    **{k: _From(v, offset) for k, v in answers.items() if k != "predicted"})
            parts.append(self._entries(request_id, logged, first, first + end - begin))
        return b"".join(parts)

    def _answers(self, out: Probabilities | Estimates) -> dict:
        if isinstance(out, Estimates):
            lower, upper = np.asarray(out.lower, np.float64), np.asarray(out.upper, np.float64)
            return {"predicted": np.asarray(out.values, dtype=np.float64), "intervals": np.column_stack((lower, upper)),
                    "extrapolation": np.asarray(out.flags(), dtype=bool)}
        labels = self.model.labels
        positions = label_positions(out, labels)
        probabilities = np.round(np.asarray(out.array if out.array is not None else out.rows, np.float64),
                                 LOGGED_DIGITS)
        return {"predicted": np.asarray(labels, dtype=object)[positions].tolist(), "probabilities": probabilities,
                "probability": probabilities[np.arange(len(positions)), positions]}

    def _entries(self, request_id: str, logged: PredictionRows, start: int, stop: int) -> bytes:
        lines = []
        step = ROWS_PER_ENTRY
        while start < stop:
            end = min(start + step, stop)
            payload = {**self.head, "request_id": request_id, "first_row": start, "rows": end - start,
                       DATA: logged.encode(start, end, self.policy)}
            line = self._entry(payload)
            if len(line) > MAX_ENTRY_BYTES and step > 1:
                step //= 2
                continue
            lines.append(line)
            start = end
        return b"".join(lines)

    def _entry(self, payload: dict) -> bytes:
        if not self.entries:  # what Cloud Logging parses into the entry's jsonPayload
            return orjson.dumps(payload, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY)
        now = datetime.now(UTC).isoformat()
        return orjson.dumps({"insertId": f"{next(self._insert):016x}", "jsonPayload": payload, "logName": _LOG_NAME,
                             "receiveTimestamp": now, "resource": self.resource, "severity": "INFO",
                             "timestamp": now}, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY)


def log_key(log_prefix: str, when: datetime, tag: str) -> str:
    """An object beside the sink's hour file of `when` (`shared.logline.sink_key`), named by `tag`."""
    prefix = log_prefix.strip("/")
    key = sink_key(when)
    if not key.endswith("_S0.json"):
        raise AssertionError("the sink's object names no longer end in _S0.json")
    return f"{prefix + '/' if prefix else ''}{key.removesuffix('_S0.json')}_B{tag}.json"


class LogParts:
    """A task's log objects in the model store, recorded in the output folder before each is written."""

    def __init__(self, store: Store, log_prefix: str, tag: str, registry: Store, registry_key: str) -> None:
        self.store, self.log_prefix, self.tag = store, log_prefix, tag
        self.registry, self.registry_key = registry, registry_key
        self.keys: list[str] = []
        self.rows = 0
        self._buffer: list[bytes] = []
        self._size = 0

    def remove_previous(self) -> int:
        """Delete the log objects an earlier run of this task wrote; how many there were."""
        try:
            data, _ = self.registry.read(self.registry_key)
            keys = json.loads(data).get("keys", [])
        except (NotFound, ValueError, AttributeError):
            return 0
        for key in keys:
            self.store.delete(key)
        self.registry.delete(self.registry_key)
        return len(keys)

    def add(self, lines: bytes, rows: int) -> None:
        if lines:
            self._buffer.append(lines)
            self._size += len(lines)
            self.rows += rows
            if self._size >= PART_BYTES:
                self.flush()

    def flush(self) -> None:
        """Write the gathered lines as the next object."""
        if not self._buffer:
            return
        key = log_key(self.log_prefix, datetime.now(UTC), f"{self.tag}-{len(self.keys):05d}")
        self.keys.append(key)
        self.registry.write(self.registry_key, json.dumps({"store": self.store.uri, "keys": self.keys}).encode())
        self.store.write(key, b"".join(self._buffer))
        self._buffer, self._size = [], 0


class StdoutLog:
    """A task's log lines on stdout, for Cloud Logging to route (see the module's docstring)."""

    keys: tuple[str, ...] = ()  # no objects

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self.text = sys.stdout  # its own lines (the summary, last) stay in order around the bytes written under it
        self.stream = stream if stream is not None else sys.stdout.buffer
        self.rows = 0

    def remove_previous(self) -> int:
        """Nothing to remove: lines logged are the log's."""
        return 0

    def add(self, lines: bytes, rows: int) -> None:
        if lines:
            self.text.flush()
            self.stream.write(lines)
            self.rows += rows

    def flush(self) -> None:
        self.stream.flush()


def registry_key(index: int, count: int) -> str:
    return f"{LOGS}{index:05d}-of-{count:05d}.json"

