"""One structured JSON log line per request, in the shape Cloud Logging parses from stdout.

On Cloud Run a log sink routes these lines into the bucket; on the embedded default (`LOG_TO_STORE`)
the function appends the same LogEntry lines to the local store itself, in the sink's file layout,
so local traffic feeds the retraining job's drift report exactly as production traffic would.
"""
from __future__ import annotations

import os
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson

LOG_ID = "run.googleapis.com/stdout"
MAX_LOGGED_ROWS = 100  # a LogEntry is capped at 256 KB; larger batches log a sample of their rows


def sink_path(root: Path, when: datetime) -> Path:
    """Where a Cloud Logging sink puts an entry's hour: LOG_ID/YYYY/MM/DD/HH:00:00_HH:59:59_S0.json."""
    return root / LOG_ID / f"{when:%Y/%m/%d}" / f"{when:%H}:00:00_{when:%H}:59:59_S0.json"


class LocalSink:
    """Appends LogEntry lines under a local directory, one file per hour, safe across threads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def append(self, payload: dict, severity: str, when: datetime) -> None:
        entry = {
            "insertId": uuid.uuid4().hex[:16],
            "jsonPayload": payload,
            "logName": "projects/local/logs/" + LOG_ID.replace("/", "%2F"),
            "receiveTimestamp": when.isoformat(),
            "resource": {"type": "cloud_run_revision", "labels": {"service_name": "penguins-local"}},
            "severity": severity,
            "timestamp": when.isoformat(),
        }
        path = sink_path(self.root, when)
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                _write_all(fd, orjson.dumps(entry) + b"\n")
            finally:
                os.close(fd)


class RequestLog:
    """Writes each request's log line to stdout (one write call, so lines never interleave)."""

    def __init__(self, sink: LocalSink | None = None) -> None:
        self.sink = sink

    def emit(self, payload: dict) -> None:
        """Log one request; `payload` must carry `severity` and `message`."""
        _write_all(1, orjson.dumps(payload) + b"\n")
        if self.sink is not None and payload.get("event") == "prediction":
            self.sink.append(payload, payload["severity"], datetime.now(UTC))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
