"""The feedback join as the job computed it in Python before the log engine: the oracle the engine's SQL is held to.

Unchanged from the job's former retrain_job/feedback.py except that it reads the rows of a line from `data`
(shared.logline) rather than from per-row payload fields, and that a null truth makes an item malformed (it was
an invalid truth; the function never logs one, and DuckDB's typed JSON reading cannot tell null from missing).
Tests compare `retrain_job.data.logs.join_feedback` with it on the same sink files (tests/support/joins.py).


Both arrive as Cloud Logging LogEntry lines in the sink layout `retrain_job.data.labelled.load_serving_inputs` reads:
a `prediction` entry holds some rows of one request (row j's prediction id is `<request_id>-<first_row + j>`),
a `feedback` entry names prediction ids with their truth. `join_feedback` reads a window of feedback and the
predictions it may be about; every feedback item lands in exactly one count:
items == malformed + unknown_ids + invalid_truths + duplicates + joined.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.logline import DATA, LOG_ID, PREDICTION_EVENTS
from shared.store import Store

SINK_LOG_ID = LOG_ID


def _data_rows(payload: dict) -> list:
    try:
        rows = orjson.loads(payload.get(DATA) or "[]")
    except orjson.JSONDecodeError:
        return []
    return rows if isinstance(rows, list) else []

# A sink file is named after the hour its entries belong to; files of neighbouring hours are read too, so an
# entry filed by another clock than its own timestamp's is still found.
FILE_SLACK = timedelta(hours=1)
UNKNOWN = "unknown"


@dataclass(frozen=True)
class LogEntry:
    """One parsed LogEntry line: its timestamp, its jsonPayload and its position in reading order."""

    time: datetime
    payload: dict
    order: int


@dataclass(frozen=True)
class LogRead:
    """What reading the sink files found besides the entries."""

    files: int = 0
    bad_lines: int = 0


def predicted_probability(predicted: Any, labels: tuple[str, ...] | None,
                          probabilities: tuple[float, ...] | None) -> float | None:
    """The probability of the predicted label (the top one if the label is not among them); None without any."""
    if probabilities is None or labels is None:
        return None
    if predicted in labels:
        return probabilities[labels.index(predicted)]
    return max(probabilities)


@dataclass(frozen=True)
class Prediction:
    """One served row as logged: its id, who served it, its input and its answer."""

    id: str | None  # None when the line carries no request id: counted, never joined
    model_version: str
    role: str
    fallback: bool
    instance: dict
    predicted: Any
    labels: tuple[str, ...] | None = None
    probabilities: tuple[float, ...] | None = None  # in `labels` order
    interval: tuple[float, float] | None = None
    time: datetime | None = None

    @property
    def is_classifier(self) -> bool:
        """A label was predicted (a regressor predicts a number)."""
        return isinstance(self.predicted, str)

    @property
    def predicted_probability(self) -> float | None:
        """The probability the model gave its own answer: the chance it is right, if calibrated."""
        return predicted_probability(self.predicted, self.labels, self.probabilities)


@dataclass(frozen=True)
class JoinedRow:
    """A prediction with the truth fed back for it (the last one sent)."""

    id: str
    model_version: str
    role: str
    instance: dict
    predicted: Any
    truth: str | float
    source: str
    feedback_time: datetime
    prediction_time: datetime
    labels: tuple[str, ...] | None = None
    probabilities: tuple[float, ...] | None = None
    interval: tuple[float, float] | None = None

    @property
    def predicted_probability(self) -> float | None:
        """The probability the model gave its own answer."""
        return predicted_probability(self.predicted, self.labels, self.probabilities)

    @property
    def late(self) -> bool:
        """The prediction's line is stamped after the feedback about it (lines may be written out of order)."""
        return self.prediction_time > self.feedback_time


@dataclass(frozen=True)
class FeedbackCounts:
    """How the window's feedback items were used; each item is counted in exactly one of the last five."""

    lines: int = 0  # feedback entries of this model in the window
    items: int = 0
    malformed: int = 0  # not an object with a text `id` and a `truth`
    unknown_ids: int = 0  # no prediction of this model with that id in the window
    invalid_truths: int = 0  # a truth the prediction cannot take (a number for a label, a label it does not know)
    duplicates: int = 0  # an id already fed back: the last truth wins
    joined: int = 0
    late: int = 0  # joined rows whose prediction line is stamped after its feedback
    other_model_lines: int = 0
    by_source: Mapping[str, int] = field(default_factory=dict)  # items per source

    def to_dict(self) -> dict:
        """JSON-ready counts."""
        return {"lines": self.lines, "items": self.items, "malformed": self.malformed,
                "unknown_ids": self.unknown_ids, "invalid_truths": self.invalid_truths,
                "duplicates": self.duplicates, "joined": self.joined, "late": self.late,
                "other_model_lines": self.other_model_lines, "by_source": dict(sorted(self.by_source.items()))}


@dataclass(frozen=True)
class Window:
    """The times read: feedback in (feedback_from, to], predictions in [predictions_from, to]."""

    feedback_from: datetime
    predictions_from: datetime
    to: datetime
    files: int = 0
    bad_lines: int = 0
    prediction_lines: int = 0
    repeated_predictions: int = 0  # a prediction id logged twice: the first line is kept

    def to_dict(self) -> dict:
        """JSON-ready window."""
        return {"feedback_from": self.feedback_from.isoformat(), "predictions_from": self.predictions_from.isoformat(),
                "to": self.to.isoformat(), "files": self.files, "bad_lines": self.bad_lines,
                "prediction_lines": self.prediction_lines, "repeated_predictions": self.repeated_predictions}


@dataclass(frozen=True)
class Joined:
    """One model's feedback joined to its predictions: the labelled rows, all predictions, and the counts."""

    model: str
    window: Window
    rows: tuple[JoinedRow, ...]
    predictions: tuple[Prediction, ...]
    counts: FeedbackCounts


# ---- reading the sink -------------------------------------------------------------------------------------

def _utc(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _sink_base(log_prefix: str) -> str:
    prefix = log_prefix.strip("/")
    return f"{prefix}/{SINK_LOG_ID}/" if prefix else f"{SINK_LOG_ID}/"


def _file_may_hold(key: str, base: str, since: datetime, until: datetime) -> bool:
    """Whether a sink file's hour (from its path) is within the slack of [since, until]; unknown names are read."""
    rest = key[len(base):]
    try:
        start = datetime.strptime(rest[:10] + " " + rest.rsplit("/", 1)[-1][:2], "%Y/%m/%d %H").replace(tzinfo=UTC)
    except ValueError:
        return True
    return start <= until + FILE_SLACK and start + timedelta(hours=1) > since - FILE_SLACK


def _sink_keys(store: Store, log_prefix: str, since: datetime, until: datetime) -> list[str]:
    """The sink files that may hold entries stamped in [since, until], listed one day folder at a time."""
    base = _sink_base(log_prefix)
    day = (since - FILE_SLACK).date()
    last = (until + FILE_SLACK).date()
    keys: list[str] = []
    while day <= last:
        keys.extend(k for k in store.list(f"{base}{day:%Y/%m/%d}/")
                    if k.endswith(".json") and _file_may_hold(k, base, since, until))
        day += timedelta(days=1)
    return keys


def _entry_time(entry: dict) -> datetime:
    stamp = entry.get("timestamp") or entry.get("receiveTimestamp")
    if not isinstance(stamp, str):
        raise ValueError("no timestamp")
    return _utc(datetime.fromisoformat(stamp))


def read_log_entries(store: Store, log_prefix: str, since: datetime, until: datetime) -> tuple[list[LogEntry], LogRead]:
    """Every LogEntry stamped in [since, until] under the log prefix, in file then line order; bad lines counted.

    Shared reader of the sink layout (`<log id>/YYYY/MM/DD/HH:00:00_HH:59:59_S<n>.json`, one entry per line):
    it lists only the day folders of the window, so a long history is not listed on every run.
    """
    since, until = _utc(since), _utc(until)
    entries: list[LogEntry] = []
    keys = _sink_keys(store, log_prefix, since, until)
    bad = 0
    for key in keys:
        data, _ = store.read(key)
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                entry = orjson.loads(line)
                payload = entry.get("jsonPayload")
                when = _entry_time(entry)
            except (ValueError, AttributeError, TypeError):
                bad += 1
                continue
            if isinstance(payload, dict) and since <= when <= until:
                entries.append(LogEntry(when, payload, len(entries)))
    return entries, LogRead(len(keys), bad)


# ---- parsing payloads ------------------------------------------------------------------------------------

def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _row_probabilities(rows: Any, j: int, labels: tuple[str, ...] | None) -> tuple[float, ...] | None:
    if labels is None or not isinstance(rows, list) or j >= len(rows):
        return None
    row = rows[j]
    if isinstance(row, dict):  # tolerated: {label: probability}
        row = [row.get(label) for label in labels]
    if not isinstance(row, list) or len(row) != len(labels):
        return None
    values = [_number(p) for p in row]
    return None if any(p is None for p in values) else tuple(values)


def _row_interval(rows: Any, j: int) -> tuple[float, float] | None:
    if not isinstance(rows, list) or j >= len(rows):
        return None
    row = rows[j]
    if isinstance(row, dict):  # tolerated: {"lower", "upper"}
        row = [row.get("lower"), row.get("upper")]
    if not isinstance(row, list) or len(row) != 2:
        return None
    lower, upper = _number(row[0]), _number(row[1])
    return None if lower is None or upper is None else (lower, upper)


def parse_predictions(payload: dict, time: datetime | None = None) -> list[Prediction]:
    """The rows of one prediction entry."""
    raw_labels = payload.get("labels")
    labels = (tuple(raw_labels) if isinstance(raw_labels, list) and raw_labels
              and all(isinstance(label, str) for label in raw_labels) else None)
    version = str(payload.get("model_version") or UNKNOWN)
    role = str(payload.get("role") or UNKNOWN)
    fallback = bool(payload.get("fallback", False))
    out = []
    for row in _data_rows(payload):
        if not isinstance(row, dict) or not isinstance(row.get("instance"), dict):
            continue
        pid = row.get("id")
        out.append(Prediction(
            id=pid if isinstance(pid, str) else None, model_version=version, role=role,
            fallback=fallback, instance=row["instance"], predicted=row.get("predicted"), labels=labels,
            probabilities=_row_probabilities([row.get("probabilities")], 0, labels),
            interval=_row_interval([row.get("interval")], 0), time=time))
    return out


def canonical_truth(prediction: Prediction, truth: Any) -> str | float | None:
    """The truth in the prediction's terms (a known label in its spelling, or a finite number); None if it cannot be."""
    if prediction.is_classifier:
        if not isinstance(truth, str) or not truth.strip():
            return None
        if prediction.labels is None:
            return truth.strip()
        return {label.lower(): label for label in prediction.labels}.get(truth.strip().lower())
    if isinstance(truth, str):
        try:
            truth = float(truth)
        except ValueError:
            return None
    return _number(truth)


@dataclass(frozen=True)
class _Item:
    id: str
    truth: Any
    source: str
    time: datetime
    order: tuple[int, int]


def _feedback_items(entry: LogEntry) -> Iterator[_Item | None]:
    """The items of one feedback entry; None for a malformed one."""
    source = entry.payload.get("source")
    source = source if isinstance(source, str) and source else UNKNOWN
    for k, item in enumerate(_data_rows(entry.payload)):
        if isinstance(item, dict) and isinstance(item.get("id"), str) and item.get("truth") is not None:
            yield _Item(item["id"], item["truth"], source, entry.time, (entry.order, k))
        else:
            yield None


# ---- the join --------------------------------------------------------------------------------------------

def join_feedback(store: Store, model: str, now: datetime, log_prefix: str, *, feedback_hours: float = 24,
                  prediction_days: float = 7) -> Joined:
    """The model's feedback of the last hours joined by prediction id to its predictions (up to days before it).

    The last truth sent for an id wins (by timestamp, then reading order); an item for an id this model never
    predicted in the window is dropped; a prediction line stamped after its feedback still joins (late).
    """
    now = _utc(now)
    feedback_from = now - timedelta(hours=feedback_hours)
    predictions_from = feedback_from - timedelta(days=prediction_days)
    entries, read = read_log_entries(store, log_prefix, predictions_from, now)

    predictions: dict[str, Prediction] = {}
    anonymous: list[Prediction] = []
    feedback: list[LogEntry] = []
    prediction_lines = repeated = other = 0
    for entry in entries:
        event, entry_model = entry.payload.get("event"), entry.payload.get("model")
        if event not in (*PREDICTION_EVENTS, "feedback"):
            continue
        if entry_model != model:
            if event == "feedback" and entry.time > feedback_from:
                other += 1
            continue
        if event == "feedback":
            if entry.time > feedback_from:
                feedback.append(entry)
            continue
        prediction_lines += 1
        for p in parse_predictions(entry.payload, entry.time):
            if p.id is None:
                anonymous.append(p)
            elif p.id in predictions:
                repeated += 1
            else:
                predictions[p.id] = p

    items = [item for entry in feedback for item in _feedback_items(entry)]
    valid = sorted((i for i in items if i is not None), key=lambda i: (i.time, i.order))
    by_source: dict[str, int] = {}
    for item in valid:
        by_source[item.source] = by_source.get(item.source, 0) + 1
    winners: dict[str, tuple[_Item, str | float]] = {}
    unknown = invalid = duplicates = 0
    for item in valid:
        prediction = predictions.get(item.id)
        if prediction is None:
            unknown += 1
            continue
        truth = canonical_truth(prediction, item.truth)
        if truth is None:
            invalid += 1
            continue
        duplicates += item.id in winners
        winners[item.id] = (item, truth)

    rows = []
    for pid, (item, truth) in sorted(winners.items(), key=lambda kv: (kv[1][0].time, kv[1][0].order)):
        p = predictions[pid]
        rows.append(JoinedRow(
            id=pid, model_version=p.model_version, role=p.role, instance=p.instance, predicted=p.predicted,
            truth=truth, source=item.source, feedback_time=item.time, prediction_time=p.time or item.time,
            labels=p.labels, probabilities=p.probabilities, interval=p.interval))
    counts = FeedbackCounts(
        lines=len(feedback), items=len(items), malformed=len(items) - len(valid), unknown_ids=unknown,
        invalid_truths=invalid, duplicates=duplicates, joined=len(rows), late=sum(r.late for r in rows),
        other_model_lines=other, by_source=by_source)
    window = Window(feedback_from, predictions_from, now, read.files, read.bad_lines, prediction_lines, repeated)
    return Joined(model, window, tuple(rows), (*predictions.values(), *anonymous), counts)


def labelled_rows(joined: Joined, target_name: str, *, id_name: str | None = None) -> list[dict]:
    """The joined rows as training rows (the instance's fields plus the target), one per prediction id; with
    `id_name`, each also names its prediction id under that key."""
    latest = {row.id: row for row in joined.rows}
    return [{**row.instance, target_name: row.truth, **({id_name: row.id} if id_name else {})}
            for row in latest.values()]
