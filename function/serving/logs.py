"""One structured JSON log line per request, in the shape Cloud Logging parses from stdout.

On Cloud Run log sinks route these lines into BigQuery and the bucket; on the embedded default (`LOG_TO_STORE`)
the function appends the same LogEntry lines to the local store itself, in the sink's file layout,
so local traffic feeds the retraining job's drift report exactly as production traffic would.

Nothing is written on the request path: `RequestLog.emit` serialises the payload once and appends it to
in-memory buffers under a short lock; a request's rows (shared.logline) are queued as they are and encoded
into entries by the flusher, off the request's time. One daemon thread per process (`_Flusher`) writes the buffers out
in batches, every `FLUSH_INTERVAL_S` or as soon as a buffer holds `FLUSH_BYTES`: stdout as whole lines,
the sink into its hour file, whose handle stays open until the hour changes. At exit the last lines are
written and the files closed (`atexit`): gunicorn's worker answers SIGTERM by finishing its requests and
leaving through `sys.exit`, after its request threads are joined, so every answered request is logged.
A worker killed outright (SIGKILL) loses at most the lines of the last flush interval.
"""
from __future__ import annotations

import atexit
import logging
import os
import select
import stat
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson

from shared.logline import (
    DATA,
    LOG_ID,
    PREDICTION_ROWS,
    SINK_EVENTS,
    FeedbackRows,
    LogPolicy,
    PredictionRows,
    sink_key,
)
from shared.model import ServingModel
from shared.predictor import Estimates, Probabilities
from shared.settings import read_setting

# Cloud Logging caps a LogEntry at 256 KB; this leaves room for the entry's own fields around the payload.
MAX_ENTRY_BYTES = 250_000
ROWS_PER_ENTRY = 500  # a batch's rows per entry to start from (fewer when its rows are large)
ROW_BYTES = 200  # a logged row's size to expect, before it is encoded (when the queued rows wake the flusher)
CONTINUED = PREDICTION_ROWS  # the event of a batch's later entries: counted by no request metric
# what a large batch's later log entries repeat, so each can be joined and read on its own
CONTINUED_FIELDS = ("request_id", "model", "model_version", "role", "fallback", "labels", "threshold", "source")
LOGGED_DIGITS = 6  # logged probabilities keep this many decimals
_JSON = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY
# How long a line may wait in memory (what a SIGKILL can lose), and how full a buffer may get before
# the flusher is woken at once (declared, with their defaults, in shared/settings.py).
FLUSH_INTERVAL_S: float = read_setting("LOG_FLUSH_INTERVAL_S")
FLUSH_BYTES: int = read_setting("LOG_FLUSH_BYTES")

_LOG_NAME = "projects/local/logs/" + LOG_ID.replace("/", "%2F")
_RESOURCE = {"type": "cloud_run_revision", "labels": {"service_name": "function-local"}}
# A LogEntry spliced around the payload's own JSON: the same bytes as orjson.dumps of the entry dict
# {insertId, jsonPayload, logName, receiveTimestamp, resource, severity, timestamp}, in that order.
_ENTRY_HEAD = b'{"insertId":"'
_ENTRY_PAYLOAD = b'","jsonPayload":'
_ENTRY_RECEIVED = b',"logName":' + orjson.dumps(_LOG_NAME) + b',"receiveTimestamp":"'
_ENTRY_SEVERITY = b'","resource":' + orjson.dumps(_RESOURCE) + b',"severity":'
_ENTRY_TIME = b',"timestamp":"'
_ENTRY_TAIL = b'"}\n'

log = logging.getLogger(__name__)


def inference_rows(model: ServingModel, outputs: Probabilities | Estimates, request_id: str, predicted: list,
                   inputs: dict | None, *, ids: list[str] | None = None) -> tuple[dict, PredictionRows]:
    """What a prediction log line says about one model's outputs: its fields (a classifier's `labels` and a binary
    one's `threshold`) and every row's inputs (`{"instances": rows}` or `{"columns": {field: values}}`), prediction,
    and probabilities, or interval and extrapolation flag (`ids`: the rows' own, see PredictionRows)."""
    if isinstance(outputs, Estimates):
        flags = outputs.extrapolation  # as the evaluator made them: a bool array for a large batch
        return {}, PredictionRows(request_id, inputs, predicted, intervals=outputs.intervals(),
                                  extrapolation=flags if flags is not None else outputs.flags(), ids=ids)
    fields: dict = {"labels": model.labels}
    if outputs.threshold is not None:
        fields["threshold"] = outputs.threshold
    probabilities = outputs.rows if outputs.rows is not None else np.round(outputs.array, LOGGED_DIGITS)
    return fields, PredictionRows(request_id, inputs, predicted, probabilities=probabilities,
                                  probability=_chosen(probabilities, predicted, model.labels), ids=ids)


def _chosen(probabilities: list | np.ndarray, predicted: list[str], labels: tuple[str, ...]) -> list | np.ndarray:
    """Each row's probability of its predicted label (CBPE's confidence, read by the monitor in SQL)."""
    index = {label: i for i, label in enumerate(labels)}
    if isinstance(probabilities, np.ndarray):
        return probabilities[np.arange(len(predicted)), [index[p] for p in predicted]]
    return [row[index[p]] for row, p in zip(probabilities, predicted)]


def sink_path(root: Path, when: datetime) -> Path:
    """Where a Cloud Logging sink puts an entry's hour under `root` (`shared.logline.sink_key`)."""
    return root / sink_key(when)


_insert_next = [time.time_ns() // 1000]  # increasing in write order, from this process's start
_insert_lock = threading.Lock()


def next_insert_ids(count: int) -> int:
    """The first of `count` consecutive insertIds: Cloud Logging orders entries of one timestamp by insertId, so
    the local sink's ids increase in the order its lines are written (the monitor's tie-break, as in the cloud)."""
    with _insert_lock:
        first = _insert_next[0]
        _insert_next[0] += count
    return first


class _Buffer:
    """Items waiting for the flusher; `add` is one append and one addition under an uncontended lock."""

    __slots__ = ("_items", "_lock", "_size")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list = []
        self._size = 0

    def add(self, item: object, size: int) -> bool:
        """Queue one item; True when the buffer has reached FLUSH_BYTES."""
        with self._lock:
            self._items.append(item)
            self._size += size
            return self._size >= FLUSH_BYTES

    def take(self) -> list:
        """Everything queued so far, in order; the buffer starts empty again."""
        with self._lock:
            items, self._items, self._size = self._items, [], 0
        return items

    def after_fork(self) -> None:
        """In a forked child: a fresh lock, and the parent's lines left to the parent."""
        self._lock = threading.Lock()
        self._items, self._size = [], 0


class LocalSink:
    """Appends LogEntry lines under a local directory, one file per hour, written by the background flusher."""

    def __init__(self, root: Path, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.clock = clock
        self._buffer = _Buffer()
        self._fds: dict[int, int] = {}  # UTC hour since the epoch -> open file descriptor
        weakref.finalize(self, _close_fds, self._fds)
        _flusher.register(self)

    def append(self, payload: dict, severity: str, when: datetime) -> None:
        """Queue one LogEntry for `payload` at `when` (a timezone-aware time)."""
        if self.add(orjson.dumps(payload, option=_JSON), severity, when.timestamp()):
            _flusher.wake()

    def add(self, payload_line: bytes, severity: str, when: float) -> bool:
        """Queue one LogEntry around a payload's JSON line (newline included); True when the flusher should run."""
        return self._buffer.add((payload_line, severity, when), len(payload_line) + 300)

    def write_pending(self) -> None:
        """Write the queued entries to their hour files (flusher only, under its lock)."""
        items = self._buffer.take()
        if not items:
            return
        first = next_insert_ids(len(items))
        severities: dict[str, bytes] = {}
        by_hour: dict[int, list[bytes]] = {}
        second, second_iso = -1, b""
        for i, (payload_line, severity, when) in enumerate(items):
            # datetime.fromtimestamp(when, UTC).isoformat(), its date and time formatted once per second
            whole = int(when)
            micros = round((when - whole) * 1e6)
            if micros == 1_000_000:
                whole, micros = whole + 1, 0
            if whole != second:
                second, second_iso = whole, datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S").encode()
            stamp = second_iso + (b".%06d+00:00" % micros if micros else b"+00:00")
            severity_json = severities.get(severity) or severities.setdefault(severity, orjson.dumps(severity))
            payload_json = memoryview(payload_line)[:-1]
            by_hour.setdefault(whole // 3600, []).append(b"".join((
                _ENTRY_HEAD, b"%016x" % (first + i), _ENTRY_PAYLOAD, payload_json, _ENTRY_RECEIVED, stamp,
                _ENTRY_SEVERITY, severity_json, _ENTRY_TIME, stamp, _ENTRY_TAIL)))
        for hour, lines in by_hour.items():
            _write_all(self._fd(hour), b"".join(lines))
        newest = max(self._fds)
        for hour in [h for h in self._fds if h != newest]:  # the hour has turned: keep one handle open
            os.close(self._fds.pop(hour))

    def close(self) -> None:
        """Close the open hour files (flusher only, under its lock); a later entry opens its file again."""
        _close_fds(self._fds)

    def open_hours(self) -> list[int]:
        """The hours (UTC, since the epoch) whose files are open now."""
        return sorted(self._fds)

    def after_fork(self) -> None:
        """In a forked child: the parent's queue and handles stay the parent's."""
        self._buffer.after_fork()
        _close_fds(self._fds)

    def _fd(self, hour: int) -> int:
        fd = self._fds.get(hour)
        if fd is not None and os.fstat(fd).st_nlink == 0:  # the file was deleted under us: start a new one
            os.close(self._fds.pop(hour))
            fd = None
        if fd is None:
            path = sink_path(self.root, datetime.fromtimestamp(hour * 3600, UTC))
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = self._fds[hour] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return fd


class _Stdout:
    """The process's stdout lines, written in batches of whole lines."""

    def __init__(self) -> None:
        self._buffer = _Buffer()

    def add(self, line: bytes) -> bool:
        """Queue one line (ending in a newline); True when the flusher should run now."""
        return self._buffer.add(line, len(line))

    def write_pending(self) -> None:
        """Write the queued lines to file descriptor 1 (flusher only, under its lock)."""
        lines = self._buffer.take()
        if not lines:
            return
        mode = os.fstat(1).st_mode
        # a pipe keeps a write whole only up to PIPE_BUF bytes: other processes may share it
        limit = select.PIPE_BUF if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) else sys.maxsize
        for chunk in whole_line_chunks(lines, limit):
            _write_all(1, chunk)

    def close(self) -> None:
        """Nothing to close: stdout belongs to the process."""

    def after_fork(self) -> None:
        """In a forked child: the parent's lines stay the parent's."""
        self._buffer.after_fork()


class _Flusher:
    """The process's one background writer: wakes every FLUSH_INTERVAL_S, or when a buffer is full."""

    def __init__(self) -> None:
        self.stdout = _Stdout()
        self.rows = _Buffer()  # requests' rows, encoded into entries by the flusher
        self._sinks: weakref.WeakSet[LocalSink] = weakref.WeakSet()
        self._lock = threading.Lock()  # one writer at a time: the thread, flush() and the exit hook
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self, sink: LocalSink) -> None:
        """Flush this sink from now on."""
        with self._lock:
            self._sinks.add(sink)
        self.ensure_running()

    def ensure_running(self) -> None:
        """Start the thread on first use in this process."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="log-flusher", daemon=True)
                    self._thread.start()

    def wake(self) -> None:
        """Flush now rather than at the end of the interval."""
        self._wake.set()

    def flush(self, close: bool = False) -> None:
        """Write everything queued so far; with `close`, also close the sink files."""
        with self._lock:
            for request_log, *item in self.rows.take():
                try:
                    request_log.write_rows(*item)
                except Exception:  # a row that cannot be encoded must not cost the others their lines
                    log.exception("could not encode a request's logged rows")
            for target in (self.stdout, *self._sinks):
                try:
                    target.write_pending()
                    if close:
                        target.close()
                except OSError:  # a full disk or a closed stdout must not stop the flusher
                    log.exception("could not write request logs")

    def after_fork(self) -> None:
        """In a forked child: no thread yet, fresh locks, nothing of the parent's queued."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self.stdout.after_fork()
        self.rows.after_fork()
        for sink in list(self._sinks):
            sink.after_fork()

    def _run(self) -> None:
        while True:
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # a bug must not end the thread: the lines would wait until exit
                log.exception("request log flusher failed")


_flusher = _Flusher()


class RequestLog:
    """Queues each request's log line for stdout (and for the local sink); the flusher writes them, each model's
    rows as its log policy says (`policies`: by model name, only models whose spec logs a field otherwise than
    as sent)."""

    def __init__(self, sink: LocalSink | None = None, policies: dict[str, LogPolicy] | None = None) -> None:
        self.sink = sink
        self.policies = policies or {}
        _flusher.ensure_running()

    def emit(self, payload: dict, rows: PredictionRows | FeedbackRows | None = None, continued: tuple = (),
             continued_event: str | None = CONTINUED) -> None:
        """Log one request; `payload` must carry `severity` and `message`.

        `rows` (a prediction's or a feedback's) are logged in full, as the JSON text of the `data` field, encoded
        by the flusher (not on the request's time: rows become JSON objects one by one). Rows that do not fit
        one entry under MAX_ENTRY_BYTES continue in more entries of `continued_event` (None: the payload's own),
        each with its `first_row` and only the `continued` fields of `payload`.
        """
        if not rows:
            self._queue(orjson.dumps(payload, option=_JSON), payload)
            return
        when = self.sink.clock() if self.sink is not None else 0.0
        if _flusher.rows.add((self, payload, rows, continued, continued_event, when), ROW_BYTES * len(rows)):
            _flusher.wake()
        if _flusher._thread is None:  # first use after a fork
            _flusher.ensure_running()

    def write_rows(self, payload: dict, rows: PredictionRows | FeedbackRows, continued: tuple,
                   continued_event: str | None, when: float) -> None:
        """The entries of one request's rows, queued for stdout and the sink (flusher only)."""
        count = len(rows)
        policy = self.policies.get(payload.get("model")) if self.policies else None
        if count <= ROWS_PER_ENTRY // 8:  # a small request fits one entry whatever its rows: no slicing
            part = {**payload, "first_row": 0, DATA: rows.encode(0, count, policy)}
            self._add(orjson.dumps(part, option=_JSON), part, when)
            return
        step, start, head = min(count, ROWS_PER_ENTRY), 0, payload
        while start < count:
            part = {**head, "first_row": start, DATA: rows.encode(start, min(start + step, count), policy)}
            line = orjson.dumps(part, option=_JSON)
            if len(line) > MAX_ENTRY_BYTES and step > 1:
                step //= 2
                continue
            self._add(line, part, when)
            start += step
            if head is payload:
                head = {"severity": payload["severity"], "message": payload["message"],
                        "event": continued_event or payload["event"],
                        **{k: payload[k] for k in continued if k in payload}}

    def _add(self, line: bytes, payload: dict, when: float) -> bool:
        full = _flusher.stdout.add(line)
        if self.sink is not None and payload.get("event") in SINK_EVENTS:
            full = self.sink.add(line, payload["severity"], when) or full
        return full

    def _queue(self, line: bytes, payload: dict) -> None:
        if self._add(line, payload, self.sink.clock() if self.sink is not None else 0.0):
            _flusher.wake()
        if _flusher._thread is None:  # first use after a fork
            _flusher.ensure_running()


def flush() -> None:
    """Write every queued line now (tests, and anything reading the logs in the same process)."""
    _flusher.flush()


def close() -> None:
    """Write every queued line and close the sink files; runs at exit."""
    _flusher.flush(close=True)


def whole_line_chunks(lines: list[bytes], limit: int) -> Iterator[bytes]:
    """Lines joined into writes of at most `limit` bytes; a longer line is a write of its own."""
    batch: list[bytes] = []
    size = 0
    for line in lines:
        if batch and size + len(line) > limit:
            yield b"".join(batch)
            batch, size = [], 0
        batch.append(line)
        size += len(line)
    if batch:
        yield b"".join(batch)


def _close_fds(fds: dict[int, int]) -> None:
    while fds:
        os.close(fds.popitem()[1])


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


atexit.register(close)
os.register_at_fork(after_in_child=_flusher.after_fork)
