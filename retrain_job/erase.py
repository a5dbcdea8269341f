"""`python -m retrain_job erase --model M --field F --value V`: one person's rows out of the prediction logs.

A person is named by the value a client sent in one of the model's fields, in practice a passthrough id
(`customer_id`): the request id a client may set (X-Request-Id) names a request, not a person, and one person's
requests have many. Every logged row whose instance holds that value is removed, with every row logged under
the same prediction id (a shadow's) and every feedback item for those ids. A field the spec hashes is matched on
the value hashed with the environment's key (`shared.logline.load_hash_key`); a dropped field was never logged and
a bucketed one names a bin, not a person: both are refused.

With the embedded engine (LOG_ENGINE=duckdb) the sink's files in the store are rewritten, each as a new object
replacing the old one only if it did not change meanwhile (retried otherwise); a file without a match is left as
it is. A line left with no row goes; a batch line keeps its other rows. With LOG_ENGINE=bigquery the statements
of `bigquery_statements` (terraform/README.md explains them) are printed and run, unless `--print-only`. The last
output line is a JSON summary. Exit 0 when done, 1 on failure, 2 on a bad flag or setting.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from retrain_job.data.engine import sink_base
from retrain_job.data.logs import json_path
from shared.logline import DATA, FEEDBACK, PREDICTION_EVENTS, SINK_EVENTS, hashed, load_hash_key
from shared.settings import JOB, Settings, exit_on_bad_settings
from shared.spec import BUCKET, DROP, HASH, ModelSpec, SpecError, load_spec
from shared.store import PreconditionFailed, Store, open_store

PROG = "python -m retrain_job erase"
ATTEMPTS = 5  # rewrites of one file tried while the function keeps appending to it
# rows the BigQuery sink streamed in lately sit in its streaming buffer, which DML may not touch; run again later
STREAMING_BUFFER_MINUTES = 90


class EraseError(ValueError):
    """A request that cannot be carried out: the message says why."""


@dataclass
class Erasure:
    """What one erasure removed from the sink's files."""

    files_rewritten: list[str] = field(default_factory=list)
    rows: int = 0
    feedback_items: int = 0
    prediction_ids: set[str] = field(default_factory=set)

    def summary(self, model: str, field_name: str) -> dict:
        """The JSON summary line (ids are counted, never printed: they name the person's requests)."""
        return {"command": "erase", "model": model, "field": field_name, "engine": "duckdb",
                "files_rewritten": len(self.files_rewritten), "rows_removed": self.rows,
                "feedback_items_removed": self.feedback_items, "prediction_ids": len(self.prediction_ids)}


def logged_value(spec: ModelSpec, field_name: str, value: str, key: bytes | None) -> Any:
    """The value as the log lines hold it: typed as the field is, hashed if the spec hashes it; EraseError when the
    field is unknown, dropped or bucketed, or hashed without a key."""
    fields = {f.name: f for f in (*spec.features, *spec.passthrough)}
    spec_field = fields.get(field_name)
    if spec_field is None:
        raise EraseError(f"{spec.name} has no field {field_name!r}; fields: {', '.join(fields)}")
    if spec_field.log == DROP:
        raise EraseError(f"{field_name!r} is never logged (log = \"drop\"): erase by a field that is")
    if spec_field.log == BUCKET:
        raise EraseError(f"{field_name!r} is logged as a bin (log = \"bucket\"), shared by many: it names no one")
    typed: Any = value
    if spec_field.kind in ("integer", "numeric"):
        try:
            number = float(value)
        except ValueError:
            raise EraseError(f"{field_name!r} holds numbers, not {value!r}") from None
        typed = int(number) if number.is_integer() else number
    if spec_field.log == HASH:
        if key is None:
            raise EraseError(f"{field_name!r} is hashed (log = \"hash\") and there is no key: set LOG_HASH_KEY")
        return hashed(key, typed, fold=spec_field.kind == "categorical")
    return typed


def _lines(data: bytes) -> tuple[list[bytes], bytes]:
    """Whole lines (newline kept), and any unfinished last line (being appended) as it is."""
    lines = data.splitlines(keepends=True)
    if lines and not lines[-1].endswith(b"\n"):
        return lines[:-1], lines[-1]
    return lines, b""


def _entry(line: bytes) -> tuple[dict, dict] | None:
    """A LogEntry line and its payload, or None for anything else (left as it is)."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    payload = entry.get("jsonPayload") if isinstance(entry, dict) else None
    return (entry, payload) if isinstance(payload, dict) and payload.get("event") in SINK_EVENTS else None


def _rows(payload: dict) -> list:
    try:
        rows = json.loads(payload.get(DATA) or "[]")
    except ValueError:
        return []
    return rows if isinstance(rows, list) else []


def matching_ids(data: bytes, model: str, field_name: str, value: Any) -> set[str]:
    """The prediction ids of the model's rows in one file whose instance holds `value` in `field_name`."""
    ids = set()
    for line in _lines(data)[0]:
        parsed = _entry(line)
        if parsed is None or parsed[1].get("event") not in PREDICTION_EVENTS or parsed[1].get("model") != model:
            continue
        for row in _rows(parsed[1]):
            instance = row.get("instance") if isinstance(row, dict) else None
            if isinstance(instance, dict) and field_name in instance and instance[field_name] == value:
                ids.add(str(row.get("id")))
    return ids


def without(data: bytes, model: str, ids: set[str]) -> tuple[bytes, int, int]:
    """A file's bytes without the model's rows and feedback items of `ids`: (bytes, rows removed, items removed);
    a line left with no row goes, any other line is kept byte for byte."""
    kept, rows, items = [], 0, 0
    lines, unfinished = _lines(data)
    for line in lines:
        parsed = _entry(line)
        if parsed is None or parsed[1].get("model") != model:
            kept.append(line)
            continue
        entry, payload = parsed
        all_rows = _rows(payload)
        left = [r for r in all_rows if not (isinstance(r, dict) and str(r.get("id")) in ids)]
        if len(left) == len(all_rows):
            kept.append(line)
            continue
        if payload.get("event") == FEEDBACK:
            items += len(all_rows) - len(left)
        else:
            rows += len(all_rows) - len(left)
        if left:
            entry["jsonPayload"] = {**payload, DATA: json.dumps(left, separators=(",", ":"))}
            kept.append(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
    return b"".join(kept) + unfinished, rows, items


def sink_files(store: Store, log_prefix: str) -> list[str]:
    """Every LogEntry file of the sink in the store (hour files and batch scoring's)."""
    return [k for k in store.list(sink_base(log_prefix)) if k.endswith(".json")]


def erase_files(store: Store, keys: Iterable[str], model: str, field_name: str, value: Any) -> Erasure:
    """Find the rows holding the value, then rewrite every file holding them or feedback for them."""
    keys = list(keys)
    done = Erasure()
    for key in keys:
        done.prediction_ids |= matching_ids(store.read(key)[0], model, field_name, value)
    if not done.prediction_ids:
        return done
    for key in keys:
        for _ in range(ATTEMPTS):
            data, generation = store.read(key)
            new, rows, items = without(data, model, done.prediction_ids)
            if new == data:
                break
            try:
                store.write(key, new, if_generation_match=generation)
            except PreconditionFailed:  # the function appended meanwhile: read it again
                continue
            done.files_rewritten.append(key)
            done.rows += rows
            done.feedback_items += items
            break
        else:
            raise EraseError(f"{key} kept changing; run the erasure again")
    return done


def bigquery_statements(table: str, model: str, field_name: str) -> str:
    """The BigQuery script erasing the rows whose instance holds @value in the field, with the feedback for their
    ids: lines older than the streaming buffer only (run it again later for newer ones). Parameters: @model, @value
    (the value as logged, as a string)."""
    rows = "UNNEST(JSON_QUERY_ARRAY(jsonPayload.data)) AS r"
    old = (f"timestamp < TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL {STREAMING_BUFFER_MINUTES} MINUTE) "
           "AND jsonPayload.model = @model")
    events = ", ".join(f"'{e}'" for e in sorted(SINK_EVENTS))
    predictions = ", ".join(f"'{e}'" for e in PREDICTION_EVENTS)
    return f"""DECLARE erased ARRAY<STRING> DEFAULT (
  SELECT ARRAY_AGG(DISTINCT JSON_VALUE(r, '$.id')) FROM `{table}`, {rows}
  WHERE {old} AND jsonPayload.event IN ({predictions})
    AND JSON_VALUE(r, '$.instance.{json_path(field_name)}') = @value);
DELETE FROM `{table}`
WHERE {old} AND jsonPayload.event IN ({events})
  AND EXISTS (SELECT 1 FROM {rows} WHERE JSON_VALUE(r, '$.id') IN UNNEST(erased))
  AND NOT EXISTS (SELECT 1 FROM {rows} WHERE JSON_VALUE(r, '$.id') NOT IN UNNEST(erased));
UPDATE `{table}`
SET jsonPayload = (SELECT AS STRUCT jsonPayload.* REPLACE (
  (SELECT '[' || STRING_AGG(r, ',' ORDER BY o) || ']' FROM UNNEST(JSON_QUERY_ARRAY(jsonPayload.data)) AS r WITH OFFSET o
   WHERE JSON_VALUE(r, '$.id') NOT IN UNNEST(erased)) AS data))
WHERE {old} AND jsonPayload.event IN ({events})
  AND EXISTS (SELECT 1 FROM {rows} WHERE JSON_VALUE(r, '$.id') IN UNNEST(erased));"""


def parse_args(argv: list[str], settings: Settings) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description="Erase one person's rows from the prediction logs.")
    p.add_argument("--model", default=settings.model_name, help="the model (MODEL_NAME)")
    p.add_argument("--field", required=True, help="the field naming the person, e.g. a passthrough customer_id")
    p.add_argument("--value", required=True, help="the value the client sent in it (hashed here if the spec hashes)")
    p.add_argument("--store", default=settings.model_store, help="where the sink's files are (MODEL_STORE)")
    p.add_argument("--log-prefix", default=settings.log_prefix, help="where in the store (LOG_PREFIX)")
    p.add_argument("--print-only", action="store_true", help="BigQuery: print the statements, do not run them")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Erase; the last output line is the JSON summary."""
    settings = exit_on_bad_settings(PROG, JOB)
    args = parse_args(sys.argv[1:] if argv is None else argv, settings)
    store_settings = replace(settings, model_store=args.store)  # the key file of a local store is under it
    try:
        spec = load_spec(args.model)
        key = load_hash_key(store_settings) if spec.log_policies.get(args.field, ("",))[0] == HASH else None
        value = logged_value(spec, args.field, args.value, key)
        if settings.log_engine == "BIGQUERY":
            summary = _erase_bigquery(settings.log_table, args.model, args.field, value, args.print_only)
        else:
            store = open_store(args.store)
            summary = erase_files(store, sink_files(store, args.log_prefix), args.model, args.field,
                                  value).summary(args.model, args.field)
    except (EraseError, SpecError) as exc:
        print(json.dumps({"command": "erase", "model": args.model, "decision": "failed", "error": str(exc)}))
        return 1
    print(json.dumps(summary))
    return 0


def _erase_bigquery(table: str, model: str, field_name: str, value: Any, print_only: bool) -> dict:
    """Print the BigQuery script, and run it unless asked not to."""
    script = bigquery_statements(table, model, field_name)
    print(script)
    summary = {"command": "erase", "model": model, "field": field_name, "engine": "bigquery", "ran": not print_only,
               "older_than_minutes": STREAMING_BUFFER_MINUTES}
    if not print_only:
        from google.cloud import bigquery  # noqa: PLC0415 - only this engine needs the client

        value_text = value if isinstance(value, str) else json.dumps(value)
        parameters = [bigquery.ScalarQueryParameter(name, "STRING", text)
                      for name, text in (("model", model), ("value", value_text))]
        config = bigquery.QueryJobConfig(query_parameters=parameters)
        bigquery.Client().query(script, job_config=config).result()
    return summary


if __name__ == "__main__":
    sys.exit(main())
