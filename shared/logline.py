"""The log line contract: the events a sink routes, their payload fields and types, and the sink's file layout.

The function writes one JSON line per request to stdout; Cloud Logging routes the lines of `SINK_EVENTS` to
BigQuery (and, if kept, to a bucket), and `make serve` appends the same LogEntry lines to the local store.
A BigQuery sink fixes each payload field's column type from the first entry it sees and refuses later entries
whose field has another type; each model's inputs, answers and truths differ in kind. So every routed field has
one type for every model (`ROUTED_FIELDS`), and what varies per model (each row's inputs and answer, or each
feedback item) travels as JSON text in `data`: one object per row, `{"id", "instance", "predicted", ...}` or
`{"id", "truth"}`, which BigQuery's JSON functions and DuckDB's read alike.

A spec may keep personal data out of the rows (`log` of a feature or passthrough field, shared/spec.py): `LogPolicy`
is that rule, applied where a row's logged instance is built (`PredictionRows.encode`), so no sink ever sees the value
as sent. A hashed value is `h:` and the first hex digits of its HMAC-SHA256 under the environment's key
(`LOG_HASH_KEY`, or the key file `load_hash_key` finds); a bucketed one the lower bound of its bin; a dropped
field is left out.
"""
from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from shared.settings import JOB, SettingError, Settings
from shared.spec import BUCKET, DROP, HASH, ModelSpec, SpecError, load_spec

LOG_ID = "run.googleapis.com/stdout"
BIGQUERY_TABLE = "run_googleapis_com_stdout"  # the table a Cloud Logging sink into BigQuery names after LOG_ID
PREDICTION, PREDICTION_ROWS, FEEDBACK = "prediction", "prediction_rows", "feedback"
PREDICTION_EVENTS = (PREDICTION, PREDICTION_ROWS)  # a request's first entry, and a large batch's later ones
SINK_EVENTS = frozenset({*PREDICTION_EVENTS, FEEDBACK})  # what the sinks route
DATA = "data"  # the payload field holding the rows as JSON text
# a shadow version's rows: logged under the ids of the answers given, answering no one
SHADOW_ROLE = "shadow"

# Every payload field a routed line may carry, with its BigQuery type (Cloud Logging writes JSON numbers as
# FLOAT). terraform/README.md and the BigQuery tests build the sink table from this.
ROUTED_FIELDS: dict[str, str] = {
    "severity": "STRING", "message": "STRING", "event": "STRING", "status": "FLOAT", "request_id": "STRING",
    "latency_ms": "FLOAT", "parse_ms": "FLOAT", "validate_ms": "FLOAT", "predict_ms": "FLOAT",
    "format_ms": "FLOAT", "inference_ms": "FLOAT", "explain_ms": "FLOAT", "model": "STRING",
    "model_version": "STRING", "role": "STRING", "fallback": "BOOLEAN", "rows": "FLOAT", "first_row": "FLOAT",
    "prediction": "STRING", "out_of_range": "FLOAT", "labels": "STRING REPEATED", "threshold": "FLOAT",
    "cold": "BOOLEAN", "source": "STRING", DATA: "STRING",
}
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
HASH_PREFIX = "h:"  # a hashed value in a log row
HASH_DIGITS = 16  # hex digits of the HMAC kept: enough to tell people apart, too few to matter as a secret
BUCKET_DIGITS = 10  # a bin's lower bound is rounded to this many decimals (0.1 * 3 is 0.3, not 0.30000000000000004)
LOCAL_KEY_FILE = "_secrets/log-hash-key"  # under a local store: the key generated on first use (never in the repo)


def sink_key(when: datetime) -> str:
    """Where a Cloud Logging sink puts an entry's hour: LOG_ID/YYYY/MM/DD/HH:00:00_HH:59:59_S0.json."""
    return f"{LOG_ID}/{when:%Y/%m/%d}/{when:%H}:00:00_{when:%H}:59:59_S0.json"


def prediction_id(request_id: str, row: int) -> str:
    """The id a client sends feedback with: the request's id and the row's position in it."""
    return f"{request_id}-{row}"


def _list(values: Any) -> list:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def hashed(key: bytes, value: Any, fold: bool = False) -> str | None:
    """A value's keyed hash as logged (None stays None); `fold`: a category, matched in any case and spacing."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower() if fold else value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | np.integer) or (isinstance(value, float | np.floating) and float(value).is_integer()):
        text = str(int(value))
    else:
        text = orjson.dumps(value, option=_NUMPY).decode()
    return HASH_PREFIX + hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:HASH_DIGITS]


def bucketed(width: float, value: Any) -> float | int | None:
    """The lower bound of a number's bin of `width` counted from 0 (an integer for an integer and a whole width);
    anything but a number logs as null."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) \
            or not math.isfinite(value):
        return None
    low = math.floor(value / width) * width
    return int(low) if isinstance(value, int | np.integer) and float(width).is_integer() else round(low, BUCKET_DIGITS)


class LogPolicy:
    """One model's fields logged otherwise than as sent: hashed, bucketed or dropped (what its spec says)."""

    __slots__ = ("dropped", "policies", "transforms")

    def __init__(self, policies: Mapping[str, tuple[str, float | None]], key: bytes | None,
                 categories: Collection[str] = ()) -> None:
        if key is None and any(policy == HASH for policy, _ in policies.values()):
            raise ValueError("a hashed field needs a key")
        self.policies = dict(policies)
        self.dropped = frozenset(name for name, (policy, _) in policies.items() if policy == DROP)
        self.transforms: dict[str, Callable[[Any], Any]] = {}
        for name, (policy, width) in policies.items():
            if policy == HASH:
                fold = name in categories
                self.transforms[name] = lambda v, fold=fold: hashed(key, v, fold)
            elif policy == BUCKET:
                self.transforms[name] = lambda v, width=width: bucketed(width, v)

    def value(self, name: str, value: Any) -> Any:
        """One field's value as logged (a dropped field's is never logged: None)."""
        if name in self.dropped:
            return None
        transform = self.transforms.get(name)
        return transform(value) if transform is not None else value

    def row(self, row: dict) -> dict:
        """A row's instance as logged: a new dict, the row as sent left as it is."""
        dropped, transforms = self.dropped, self.transforms
        return {k: (transforms[k](v) if k in transforms else v) for k, v in row.items() if k not in dropped}

    def columns(self, columns: dict[str, list]) -> dict[str, list]:
        """Columns (`{field: values}`) as logged."""
        transforms = self.transforms
        return {k: ([transforms[k](v) for v in values] if k in transforms else values)
                for k, values in columns.items() if k not in self.dropped}


def load_hash_key(settings: Settings) -> bytes | None:
    """The key hashed fields are logged with: `LOG_HASH_KEY`, else the file `LOG_HASH_KEY_FILE` names, else, with
    a local store, LOCAL_KEY_FILE under it, generated on first use; None when there is none."""
    if settings.log_hash_key:
        return settings.log_hash_key.encode()
    local = not settings.model_store.startswith("gs://")
    if settings.log_hash_key_file:
        path = Path(settings.log_hash_key_file)
    elif local:
        path = Path(settings.model_store) / LOCAL_KEY_FILE
    else:
        return None
    if not path.is_file() and local:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # exclusive: concurrent workers agree on the first one's key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
        except FileExistsError:
            pass
    try:
        key = path.read_text().strip()
    except OSError:
        return None
    return key.encode() or None


def log_policies(settings: Settings, names: Sequence[str]) -> dict[str, LogPolicy]:
    """The log policy of each named model whose spec logs a field otherwise than as sent; SettingError naming
    LOG_HASH_KEY when a spec hashes a field and there is no key (or SPECS_DIR when a spec cannot be read)."""
    try:
        specs = {name: load_spec(name, Path(settings.specs_dir)) for name in names}
    except SpecError as exc:
        raise SettingError([f"SPECS_DIR: {exc}"]) from None
    key = None
    if any(policy == HASH for spec in specs.values() for policy, _ in spec.log_policies.values()):
        key = load_hash_key(settings)
        if key is None:
            hashing = ", ".join(sorted(n for n, s in specs.items() if HASH in {p for p, _ in s.log_policies.values()}))
            raise SettingError([f"LOG_HASH_KEY: unset, and the spec of {hashing} hashes a field (log = \"hash\"); "
                                "set it (a Secret Manager secret on GCP) or LOG_HASH_KEY_FILE"])
    return {name: LogPolicy(spec.log_policies, key, {f.name for f in spec.features if f.kind == "categorical"})
            for name, spec in specs.items() if spec.log_policies}


def job_settings(store_uri: str) -> Settings:
    """The job's settings from the environment, for the store it was given (a local store's key file is under it)."""
    return replace(Settings.from_env(reader=JOB), model_store=store_uri)


def spec_hash_key(spec: ModelSpec, store_uri: str) -> bytes | None:
    """The job's key when the spec hashes a field (drift hashes its reference alike), else None (nothing read)."""
    if all(policy != HASH for policy, _ in spec.log_policies.values()):
        return None
    return load_hash_key(job_settings(store_uri))


class PredictionRows:
    """One inference's rows as logged: inputs, answer, and probabilities or interval; encoded slice by slice.

    `inputs` is `{"instances": rows}` or `{"columns": {field: values}}` (None: rows without `instance`, as a
    shadow's, whose inputs the answer's rows hold). A classifier's rows carry their `probabilities` (in the line's
    `labels` order) and `probability`, the one of the predicted label; a regressor's their `interval` and
    `extrapolation` flag. Row ids are `<request_id>-<row>`, or `ids` when given (rows of several requests).
    """

    __slots__ = ("request_id", "inputs", "predicted", "probabilities", "probability", "intervals", "extrapolation",
                 "ids")

    def __init__(self, request_id: str, inputs: dict | None, predicted: Sequence, *, probabilities: Any = None,
                 probability: Any = None, intervals: Any = None, extrapolation: Any = None,
                 ids: Sequence[str] | None = None) -> None:
        self.ids = ids
        self.request_id = request_id
        self.inputs = inputs
        self.predicted = predicted
        self.probabilities = probabilities
        self.probability = probability
        self.intervals = intervals
        self.extrapolation = extrapolation

    def __len__(self) -> int:
        return len(self.predicted)

    def _instances(self, start: int, stop: int, policy: LogPolicy | None) -> list:
        instances = self.inputs.get("instances")
        if instances is not None:
            return instances[start:stop] if policy is None else [policy.row(row) for row in instances[start:stop]]
        columns = {name: _list(values[start:stop]) for name, values in self.inputs["columns"].items()}
        if policy is not None:
            columns = policy.columns(columns)
        names = list(columns)
        return [dict(zip(names, values)) for values in zip(*columns.values())]

    def encode(self, start: int, stop: int, policy: LogPolicy | None = None) -> str:
        """Rows start:stop as the JSON text of `data`, their instances as `policy` logs them (None: as sent)."""
        fields = {} if self.inputs is None else {"instance": self._instances(start, stop, policy)}
        fields["predicted"] = _list(self.predicted[start:stop])
        for name in ("probabilities", "probability", "interval", "extrapolation"):
            values = self.intervals if name == "interval" else getattr(self, name)
            if values is not None:
                fields[name] = _list(values[start:stop])
        rid, names = self.request_id, list(fields)
        ids = self.ids[start:stop] if self.ids is not None else [f"{rid}-{start + j}" for j in range(stop - start)]
        rows = [{"id": i, **dict(zip(names, values))} for i, values in zip(ids, zip(*fields.values()))]
        return orjson.dumps(rows, option=_NUMPY).decode()


class FeedbackRows:
    """One feedback request's accepted items (`{"id", "truth"}`), encoded slice by slice."""

    __slots__ = ("items",)

    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def encode(self, start: int, stop: int, policy: LogPolicy | None = None) -> str:
        """Items start:stop as the JSON text of `data` (ids and truths: no policy applies)."""
        return orjson.dumps(self.items[start:stop], option=_NUMPY).decode()
