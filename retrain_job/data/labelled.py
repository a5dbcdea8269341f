"""Training data from a model's spec: the checksummed base set plus newly labelled rows, and serving inputs.

The base set is the spec's CSV (refused unless it matches the spec's sha256), its columns renamed by
`[data.columns]`, rows lacking a `[data] required` field dropped, values converted by their field's kind.
Labelled CSV files (request fields plus the target column) are judged by the request rules of
`shared.validation` (the messages a client would read), except that a category level never seen before
is accepted: that is how a model learns a new level. The target must be a known label, or a number
within the spec's plausible bounds. Feedback joined to its predictions (`retrain_job.data.feedback`) arrives as
records of the same shape (the logged request's fields plus the truth) and is judged by the same rules.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from shared.contract import FeatureContract, derive_contract
from shared.spec import ModelSpec
from shared.store import Store
from shared.validation.rules import TargetRule, Violation
from shared.validation.schema import schema_errors

LABELLED_PREFIX = "data/labelled/"
FEEDBACK_KEY = "feedback"  # the feedback's entry among the labelled files, and its rows' source
FEEDBACK_ID = "prediction_id"  # the field naming a feedback record's prediction (never a request field)
MISSING_TEXT = frozenset({"", "na", "nan", "null", "none"})  # CSV cells that hold no value (any case)
REQUIRED_MESSAGE = "Missing data for required field."  # Marshmallow's, as the request schema says it


def feature_names(spec: ModelSpec) -> list[str]:
    """The model's input fields, in spec order."""
    return [f.name for f in spec.features]


def request_fields(spec: ModelSpec) -> list[str]:
    """Every field a request may carry: the features, then the passthrough fields."""
    return [*feature_names(spec), *(p.name for p in spec.passthrough)]


def columns(spec: ModelSpec) -> list[str]:
    """The columns of every training frame: request fields, then the target."""
    return [*request_fields(spec), spec.target.name]


def _is_missing(text: str) -> bool:
    return text.strip().lower() in MISSING_TEXT


class DataError(ValueError):
    """Training data a model cannot be trained on: the message names the field, the rows and what to fix."""


@dataclass(frozen=True)
class BaseData:
    """The spec's base data as training rows, and what reading it found (rows dropped, bad rows per field)."""

    frame: pd.DataFrame
    intake: dict


BAD_EXAMPLES = 3  # example rows shown per field in the bad-rows summary


def _base_contract(spec: ModelSpec, df: pd.DataFrame) -> FeatureContract:
    """The rules the base data's rows are judged by: the spec's bounds and policies, every level seen accepted."""
    levels = {f.name: tuple(sorted({v for v in df[f.name] if not _is_missing(v)})) if f.name in df.columns else ()
              for f in spec.features if f.kind == "categorical"}
    rows = [{f.name: f.bounds[0] if f.kind == "numeric" else None for f in spec.features},
            {f.name: f.bounds[1] for f in spec.features if f.kind == "numeric"}]
    contract = derive_contract(spec, rows, spec.labels)
    return replace(contract, categorical=tuple(replace(c, levels=levels[c.name]) for c in contract.categorical))


def check_labels(spec: ModelSpec, seen: pd.Series) -> None:
    """DataError unless a classifier's spec labels and the target values in the data agree (case ignored)."""
    counts = seen.value_counts()
    known = {label.lower() for label in spec.target.labels}
    found = {str(v).strip().lower() for v in counts.index}
    shown = ", ".join(f"{v!r} ({n} rows)" for v, n in counts.head(8).items())
    if not found & known or known - found:
        raise DataError(f"target {spec.target.name!r}: the spec's labels {list(spec.target.labels)} do not match the "
                        f"values in the data: {shown}{' ...' if len(counts) > 8 else ''}; write the labels as "
                        "the data spells them in [target] labels (case is ignored)")


def bad_rows_summary(bad: list[dict], total: int) -> list[str]:
    """One line per field: its message, how many rows break it, and a few of them by line with their value."""
    by_field: dict[tuple[str, str], list[tuple[object, object]]] = {}
    for row in bad:
        for name, messages in row["errors"].items():
            key = (name, " ".join(map(str, messages)))
            by_field.setdefault(key, []).append((row.get("line", row.get("id")), row["values"].get(name, "")))
    lines = []
    for (name, message), rows in sorted(by_field.items(), key=lambda kv: -len(kv[1])):
        examples = ", ".join(f"line {line}: {value!r}" for line, value in rows[:BAD_EXAMPLES])
        lines.append(f"{name}: {message} - {len(rows)} of {total} rows, e.g. {examples}")
    return lines


def read_base(spec: ModelSpec) -> BaseData:
    """The spec's base data: checksum verified, renamed, every row judged by the request rules (the target by its
    own); rows lacking a `[data] required` field or the target dropped; bad rows dropped or refused as the spec's
    `[data] bad_rows` says. DataError names the field, the rows and the values when the data cannot be used."""
    raw = spec.read_data()
    try:
        df = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False).rename(columns=spec.data.columns)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"{spec.data_path}: not a readable CSV file ({exc})") from None
    missing = [c for c in (*(f.name for f in spec.features if f.required), spec.target.name) if c not in df.columns]
    if missing:
        raise DataError(f"{spec.data_path}: no column for {missing} (columns after renaming by [data.columns]: "
                        f"{list(df.columns)})")
    for name in request_fields(spec):
        if name not in df.columns:
            df[name] = ""
    lines = np.arange(2, len(df) + 2)  # line 1: the header
    needed = [*spec.data.required, spec.target.name]
    keep = ~df[list(dict.fromkeys(needed))].map(_is_missing).any(axis=1).to_numpy()
    df, lines = df[keep].reset_index(drop=True), lines[keep]
    if df.empty:
        raise DataError(f"{spec.data_path}: no row has every field of [data] required and the target ({needed})")
    if spec.is_classifier:
        check_labels(spec, df[spec.target.name])
    kinds = {f.name: f.kind for f in spec.features} | {p.name: p.kind for p in spec.passthrough}
    records = df.to_dict("records")
    requests = [{name: _request_value(r[name], kinds[name]) for name in request_fields(spec)
                 if not _is_missing(r[name])} for r in records]
    where = [{"file": spec.data.file, "line": int(line)} for line in lines]
    good, bad = _judge_rows(spec.data.file, spec, _base_contract(spec, df), {}, requests=requests,
                            targets=df[spec.target.name].tolist(), shown=records, where=where)
    intake = {"rows_read": int(len(keep)), "dropped_missing_required": int((~keep).sum()), "bad_rows": len(bad),
              "bad_rows_policy": spec.data.bad_rows}
    if bad:
        share = len(bad) / len(df)
        summary = bad_rows_summary(bad, len(df))
        intake["bad_rows_by_field"] = summary
        if spec.data.bad_rows == "reject" or share > spec.data.max_bad_share:
            why = ("[data] bad_rows = \"reject\"" if spec.data.bad_rows == "reject" else
                   f"{share:.1%} of the rows, more than [data] max_bad_share = {spec.data.max_bad_share}")
            raise DataError(f"{spec.data_path}: {len(bad)} bad row(s) ({why}): " + "; ".join(summary)
                            + ". Fix the rows, widen the spec's bounds if the values are possible, declare "
                            "missing_values, or set [data] bad_rows = \"drop\" with a max_bad_share")
    return BaseData(good.reset_index(drop=True), intake)


def load_base(spec: ModelSpec) -> pd.DataFrame:
    """The spec's base data as training rows (`read_base` without its intake report)."""
    return read_base(spec).frame


def _typed(frame: pd.DataFrame, spec: ModelSpec, source: str) -> pd.DataFrame:
    """Numeric features (and a regression target) as float64 with NaN; everything else as objects with None."""
    frame = frame.copy()
    for f in spec.features:
        if f.kind == "numeric":
            frame[f.name] = pd.to_numeric(frame[f.name]).astype(np.float64)
    if not spec.is_classifier:
        frame[spec.target.name] = pd.to_numeric(frame[spec.target.name]).astype(np.float64)
    frame["source"] = source
    return frame


def empty_frame(spec: ModelSpec) -> pd.DataFrame:
    """No rows, with every training column."""
    return _typed(pd.DataFrame({c: pd.Series([], dtype=object) for c in columns(spec)}), spec, "")


def fingerprint(df: pd.DataFrame, spec: ModelSpec) -> str:
    """sha256 of the rows in a canonical order: the same data gives the same fingerprint."""
    cols = columns(spec)
    canonical = df[cols].astype(object).where(df[cols].notna(), "")
    canonical = canonical.map(lambda v: f"{v:.6g}" if isinstance(v, float) else str(v))
    text = canonical.sort_values(cols, kind="mergesort").to_csv(index=False)
    return hashlib.sha256(text.encode()).hexdigest()


def to_records(df: pd.DataFrame, names: list[str]) -> list[dict]:
    """Rows as request-shaped dicts of the given fields (missing values become None): `build_batch`'s input."""
    frame = df[names].astype(object)
    return frame.where(frame.notna(), None).to_dict("records")


# ---- labelled CSV files ----------------------------------------------------------------------------------

@dataclass
class LabelledData:
    """New labelled rows from the store and from feedback, with what was skipped and why."""

    rows: pd.DataFrame
    files: list[dict] = field(default_factory=list)  # each CSV file, and the feedback as the pseudo-file "feedback"
    rejected: list[dict] = field(default_factory=list)  # {"file", "line" or "id", "reason", "errors"}; reports cap it
    feedback: dict | None = None  # what reading the feedback found (None: not read)

    @property
    def from_files(self) -> pd.DataFrame:
        """The rows of the CSV files only: feedback rows' inputs are served inputs already (the drift report
        reads them from the prediction log, so counting them again would weigh them twice)."""
        if "source" not in self.rows.columns:
            return self.rows
        return self.rows[self.rows["source"] != FEEDBACK_KEY]

    @classmethod
    def none(cls, spec: ModelSpec) -> LabelledData:
        """No labelled rows at all."""
        return cls(empty_frame(spec))

    @property
    def rejected_count(self) -> int:
        """How many rows were skipped."""
        return len(self.rejected)


def intake_contract(spec: ModelSpec, base: pd.DataFrame) -> FeatureContract:
    """The request rules labelled rows are judged by: the base data's levels, new levels accepted (kept as sent)."""
    contract = derive_contract(spec, to_records(base, feature_names(spec)), spec.labels)
    open_levels = tuple(replace(c, unseen="missing", strip=True) for c in contract.categorical)
    return replace(contract, categorical=open_levels)


def load_labelled(store: Store, spec: ModelSpec, base: pd.DataFrame, prefix: str = LABELLED_PREFIX,
                  feedback: list[dict] | None = None) -> LabelledData:
    """Every CSV under the prefix, each distinct content once, then the feedback records (None: none read); bad
    rows skipped with the rules' messages. Feedback is listed in `files` as the pseudo-file "feedback"."""
    contract = intake_contract(spec, base)
    new_levels: dict[tuple[str, str], str] = {}
    frames, files, rejected, seen = [], [], [], {}
    for key in store.list(prefix):
        if not key.endswith(".csv"):
            continue
        raw, _ = store.read(key)
        digest = hashlib.sha256(raw).hexdigest()
        if digest in seen:
            files.append({"key": key, "sha256": digest, "rows": 0, "duplicate_of": seen[digest]})
            continue
        seen[digest] = key
        good, bad = parse_labelled_csv(raw, key, spec, contract, new_levels)
        files.append({"key": key, "sha256": digest, "rows": int(len(good)), "rejected": len(bad)})
        frames.append(good)
        rejected.extend(bad)
    if feedback is not None:
        good, bad = parse_labelled_records(feedback, FEEDBACK_KEY, spec, contract, new_levels, id_name=FEEDBACK_ID)
        files.append({"key": FEEDBACK_KEY, "sha256": fingerprint(good, spec), "rows": int(len(good)),
                      "rejected": len(bad), "read": len(feedback)})
        frames.append(good)
        rejected.extend(bad)
    rows = pd.concat(frames, ignore_index=True) if frames else empty_frame(spec)
    return LabelledData(rows, files, rejected)


def _request_value(text: str, kind: str):
    """A CSV cell as the JSON value a client would have sent (a cell that is no number stays text)."""
    if kind in ("numeric", "integer"):
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if kind == "integer" and number.is_integer() else number
    return text


def _logged_value(value, kind: str):
    """A logged request value as the client sent it (an integer field decoded from a tensor comes back as 2007.0)."""
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _target_value(value, rule: TargetRule):
    """The target of one labelled row (CSV text, or a logged truth), or Violation with the message a bad one gets."""
    if isinstance(value, str) and rule.target.task == "regression":
        try:
            value = float(value)
        except ValueError:
            raise Violation("must be a number") from None
    return rule.parse(value)


def parse_labelled_csv(raw: bytes, key: str, spec: ModelSpec, contract: FeatureContract,
                       new_levels: dict[tuple[str, str], str] | None = None) -> tuple[pd.DataFrame, list[dict]]:
    """Valid rows of one CSV (request fields plus the target) and, for the others, every bad field's message."""
    try:
        df = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        return empty_frame(spec), [{"file": key, "line": None, "reason": f"unreadable CSV: {type(exc).__name__}"}]
    required = [f.name for f in spec.features if f.required]
    missing = [c for c in (*required, spec.target.name) if c not in df.columns]
    if missing:
        return empty_frame(spec), [{"file": key, "line": None, "reason": f"missing columns {missing}"}]
    kinds = {f.name: f.kind for f in spec.features} | {p.name: p.kind for p in spec.passthrough}
    present = [name for name in request_fields(spec) if name in df.columns]
    records = df.to_dict("records")
    requests = [{name: _request_value(r[name], kinds[name]) for name in present if not _is_missing(r[name])}
                for r in records]
    targets = [None if _is_missing(r[spec.target.name]) else r[spec.target.name] for r in records]
    where = [{"file": key, "line": i + 2} for i in range(len(records))]  # line 1: the header
    return _judge_rows(key, spec, contract, new_levels, requests=requests, targets=targets, shown=records,
                       where=where)


def parse_labelled_records(records: list[dict], key: str, spec: ModelSpec, contract: FeatureContract,
                           new_levels: dict[tuple[str, str], str] | None = None, *,
                           id_name: str | None = None) -> tuple[pd.DataFrame, list[dict]]:
    """Valid rows of request-shaped records with their target (as `retrain_job.data.feedback.labelled_rows` gives them:
    JSON values, None or absent where missing), judged as `parse_labelled_csv` judges a CSV's rows; fields
    that are not request fields are ignored. A bad row is named by its `id_name` value if given, else its index."""
    kinds = {f.name: f.kind for f in spec.features} | {p.name: p.kind for p in spec.passthrough}
    requests = [{name: _logged_value(r[name], kinds[name]) for name in request_fields(spec) if r.get(name) is not None}
                for r in records]
    targets = [r.get(spec.target.name) for r in records]
    where = [{"file": key, "id": r.get(id_name)} if id_name else {"file": key, "line": i}
             for i, r in enumerate(records)]
    return _judge_rows(key, spec, contract, new_levels, requests=requests, targets=targets, shown=records,
                       where=where)


def _judge_rows(key: str, spec: ModelSpec, contract: FeatureContract, new_levels: dict[tuple[str, str], str] | None,
                *, requests: list[dict], targets: list, shown: list[dict],
                where: list[dict]) -> tuple[pd.DataFrame, list[dict]]:
    """The labelled rows' one set of rules: each request through the request schema, each target (None: missing)
    through `TargetRule`; good rows as a training frame, bad ones with every bad field's message (the value
    shown is the row's own, from `shown`) at their `where`."""
    new_levels = {} if new_levels is None else new_levels
    target_rule = TargetRule(contract.target)
    cleaned, errors = schema_errors(contract, requests)
    cleaned_by_row = iter(cleaned)
    good, bad = [], []
    for i, (record, given) in enumerate(zip(shown, targets)):
        row_errors = {name: list(msgs) for name, msgs in errors.get(i, {}).items()}
        row = None if i in errors else next(cleaned_by_row)
        try:
            if given is None:
                raise Violation(REQUIRED_MESSAGE)
            target = _target_value(given, target_rule)
        except Violation as exc:
            row_errors[spec.target.name] = [str(exc)]
        if row_errors:
            reason = "; ".join(f"{name}={record.get(name, '')!r}: {' '.join(map(str, msgs))}"
                               for name, msgs in row_errors.items())
            bad.append({**where[i], "reason": reason, "errors": row_errors,
                        "values": {name: record.get(name, "") for name in row_errors}})
            continue
        for c in contract.categorical:  # a new level: one spelling for all its rows (the first seen)
            value = row.get(c.name)
            if value is not None and value not in c.levels:
                row[c.name] = new_levels.setdefault((c.name, value.lower()), value)
        good.append({**{name: row.get(name) for name in request_fields(spec)}, spec.target.name: target})
    # dtype=object keeps None for a missing text value (pandas would infer a string column with NaN)
    frame = pd.DataFrame(good, columns=columns(spec), dtype=object) if good else empty_frame(spec)[columns(spec)]
    return _typed(frame.astype(object), spec, key), bad


# ---- serving inputs ----------------------------------------------------------------------------------------
