"""`python -m retrain_job init --csv PATH --target COLUMN`: a first spec for a new model, inferred from its data.

It writes `specs/<name>/` for a person to review: `spec.toml` (every inferred choice with a one-line comment
saying what was seen and what to review), `examples.json` (three requests from the data), the CSV copied in
unchanged, and a `DATA.md` stub asking for the source, the licence and the attribution. The spec trains as
written (`python -m retrain_job --model <name>`). It never overwrites: an existing folder is refused.

Inference, column by column (the cells as the job reads them: text, missing when empty, NA, NaN, null or None):
- the target: text, or integers with at most 10 distinct values, make a classifier (binary with two labels),
  other numbers a regressor; rows without a target are not usable;
- a feature is numeric when its cells are numbers, categorical when they are short strings with a modest number
  of distinct values; identifiers (one distinct value per row), dates and free text are proposed as passthrough
  fields (accepted and logged, never features), or left out when they cannot be (text longer than 64 characters,
  no values, one value only);
- numeric bounds are the data's range widened by its span each way (0, inclusive, when nothing is negative), and
  a 0 that looks like "not measured" is pointed out, not changed.
The last output line is a JSON summary; a refusal is one line on stderr and exit status 1.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import shutil
import sys
import tomllib
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pandas as pd

from retrain_job.data.labelled import MISSING_TEXT
from shared.spec import DROP, EXAMPLES_FILE, HASH, MODEL_NAME, SPEC_FILE, SPECS_DIR, TASKS
from shared.validation.rules import MAX_STRING_CHARS

PROG = "python -m retrain_job init"
DATA_NOTES = "DATA.md"
CLASS_LEVELS = 10  # integer targets with at most this many distinct values are classes
MAX_LEVELS = 50  # a categorical feature has at most this many distinct values...
MIN_ROWS_PER_LEVEL = 2  # ...and on average at least this many rows per value (else: free text or a code)
ZERO_SHARE = 0.02  # a 0 in at least this share of rows...
MEASURED_LEVELS = 3  # a 0/1 flag or a 0/1/2 count is no measurement whose 0 could mean "not measured"
ZERO_GAP = 0.1  # ...while the smallest other value is above this share of their median: "0 means not measured"?
STRAY_SHARE = 0.05  # a numeric column may have at most this share of cells that are no number (they are bad rows)
MAX_BAD_SHARE = 0.05
ID_NAMES = {"id", "index", "idx", "key", "no", "number", "row", "record"}
ID_SUFFIXES = ("id", "num", "nr", "idx", "code")  # e.g. pidnum, patientid: unique integers so named are ids
DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?"
                  r"|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}( \d{1,2}:\d{2}(:\d{2})?)?")
INTEGER = re.compile(r"[+-]?(0|[1-9]\d*)")
UNIT_IN_HEADER = re.compile(r"[(\[]([^()\[\]]{1,20})[)\]]\s*$")
UNIT_SUFFIXES = {"mm": "mm", "cm": "cm", "km": "km", "g": "g", "kg": "kg", "mg": "mg", "ml": "mL", "kwh": "kWh",
                 "usd": "USD", "eur": "EUR", "pct": "%", "percent": "%"}
# keys a request body or an answer holds beside the fields: no field may be named so
RESERVED = {"instances", "columns", "parameters", "inputs", "id", "probabilities", "probability", "threshold",
            "interval", "extrapolation", "model_version", "fallback", "warnings"}
SHOWN_LEVELS = 8
# a passthrough column that looks personal is proposed a log policy (shared/spec.py LOG_POLICIES): an identifier
# a person may be found by is hashed (erasure finds it; retrain_job/erase.py), anything else dropped
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"\+?[\d\s().-]{7,20}")
PHONE_DIGITS = (7, 15)  # digits a phone number has
PERSONAL_SHARE = 0.5  # values that must look so
NAME_WORDS = {"name", "firstname", "lastname", "surname", "fullname", "forename", "givenname", "familyname"}
PHONE_WORDS = {"phone", "mobile", "tel", "telephone", "cell", "fax"}
PERSON_ID_WORDS = {"customer", "client", "user", "patient", "person", "member", "employee", "account", "applicant"}
BIRTH_WORDS = {"birth", "dob", "born", "birthday", "birthdate"}
FREE_TEXT_WORDS = 3  # free text: at least this many words per value on average


class InitError(Exception):
    """The spec cannot be written; the message is the one line the user reads."""


# ---- names ---------------------------------------------------------------------------------------------------

def snake_case(text: str) -> str:
    """A field name [a-z_][a-z0-9_]* from a header: "Weight (kg)" -> weight_kg, "Speed km/h" -> speed_km_per_h."""
    text = unicodedata.normalize("NFKD", text.replace("ß", "ss")).encode("ascii", "ignore").decode()
    text = text.replace("/", " per ").replace("%", " pct ").replace("#", " number ").replace("&", " and ")
    text = re.sub(r"([a-z0-9])([A-Z][a-z])", r"\1_\2", text)  # heartRate -> heart_Rate
    text = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "column"
    return f"_{text}" if text[0].isdigit() else text


def model_name(stem: str) -> str:
    """A model name from a file's stem: lower-case words joined by '-', starting with a letter, at most 32
    characters (shared.spec.MODEL_NAME: it names URLs and cloud resources)."""
    name = snake_case(stem).strip("_")[:32].strip("_").replace("_", "-")
    return name if name and name[0].isalpha() else f"model-{name}"[:32].rstrip("-")


def _field_names(headers: list[str]) -> dict[str, str]:
    """Each header's field name: snake_case, unique, never a key of the request or answer envelope."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for header in headers:
        base = snake_case(header)
        base = f"{base}_field" if base in RESERVED else base
        name, n = base, 2
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        taken.add(name)
        names[header] = name
    return names


def _unit(header: str, name: str) -> str:
    """The unit a header names: "(g/km)" at its end, or a known suffix such as _mm or _kg; "" if none."""
    found = UNIT_IN_HEADER.search(header)
    if found:
        return found.group(1).strip()
    return UNIT_SUFFIXES.get(name.rsplit("_", 1)[-1], "") if "_" in name else ""


# ---- numbers ---------------------------------------------------------------------------------------------------

def nice(x: float, up: bool) -> float | int:
    """x rounded outward (up or down) to two significant digits: 87.1 -> 88, -32.3 -> -33 (down), 0.0123 -> 0.013."""
    if x == 0 or not math.isfinite(x):
        return 0
    exponent = math.floor(math.log10(abs(x))) - 1
    q = Decimal(repr(x)).scaleb(-exponent)
    n = int(q.to_integral_value(rounding="ROUND_CEILING" if up else "ROUND_FLOOR"))
    value = float(Decimal(n).scaleb(exponent))
    return int(value) if value.is_integer() and abs(value) < 1e15 else value


def _bounds(low: float, high: float) -> tuple[float | int, float | int, bool]:
    """Physical-looking bounds around a range: (low, high, low_inclusive); 0 inclusive when nothing is negative."""
    span = high - low if high > low else max(abs(high), 1.0)
    top = nice(high + span, up=True)
    if low >= 0:
        return 0, top if top > 0 else 1, True
    return nice(low - span, up=False), top, False


def _fmt(x: float) -> str:
    """A number for a comment: 6 significant digits, no trailing zeros."""
    return f"{x:.6g}"


def _sig3(x: float) -> float:
    return float(f"{x:.3g}")


# ---- TOML ------------------------------------------------------------------------------------------------------

def toml_string(text: str) -> str:
    """A TOML basic string (quotes, backslashes and control characters escaped)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\b\t\n\f\r":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value) -> str:
    """A TOML value of a bool, int, float, str or list of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def comment(text: str) -> str:
    """One comment line: no line breaks or control characters inside."""
    return "# " + re.sub(r"[\x00-\x08\x0a-\x1f\x7f]+", " ", text).strip()


def _q(value) -> str:
    """A value quoted for a comment or a message, as TOML and JSON quote it."""
    return json.dumps(value, ensure_ascii=False)


def _quote_list(values, limit: int = SHOWN_LEVELS) -> str:
    values = list(values)
    shown = ", ".join(_q(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


# ---- inference -------------------------------------------------------------------------------------------------

@dataclass
class Column:
    """What init decided about one CSV column."""

    header: str
    name: str
    role: str  # feature, passthrough, left_out
    kind: str = ""  # feature: numeric / categorical; passthrough: integer / string
    settings: dict = field(default_factory=dict)  # its TOML keys after name and kind
    note: str = ""  # the one-line comment above it (left out: why)
    review: list[str] = field(default_factory=list)  # extra comment lines: proposals to review
    bad: set[int] = field(default_factory=set)  # row positions whose cell the job will judge bad (not a number)

    def value(self, text: str):
        """A cell as the JSON value a request would carry (None: missing)."""
        text = text.strip()
        if text.lower() in MISSING_TEXT:
            return None
        if self.kind == "numeric":
            try:
                return int(text) if INTEGER.fullmatch(text) else float(text)
            except ValueError:
                return None
        if self.kind == "integer":
            return int(text)
        return text


@dataclass
class Plan:
    """Everything the spec, the examples and the data notes say."""

    name: str
    file: str
    sha256: str
    task: str
    target: Column
    target_lines: list[str]
    columns: list[Column]
    rows: int
    usable: pd.DataFrame  # the text cells of the rows with a target, by header
    labels: list[str] = field(default_factory=list)
    label_counts: dict[str, int] = field(default_factory=dict)
    target_values: pd.Series | None = None  # regression: the numbers
    max_bad_share: float = MAX_BAD_SHARE
    bad_rows: int = 0
    review: list[str] = field(default_factory=list)  # notes for the summary

    def by_role(self, role: str) -> list[Column]:
        return [c for c in self.columns if c.role == role]


def _present(cells: pd.Series) -> pd.Series:
    return cells[~cells.str.strip().str.lower().isin(MISSING_TEXT)]


def _numbers(cells: pd.Series) -> pd.Series:
    """The cells as floats (NaN where not a finite number)."""
    values = pd.to_numeric(cells.str.strip(), errors="coerce")
    return values.where(values.abs() != math.inf)


def read_csv(path: Path) -> pd.DataFrame:
    """The CSV as the job reads it: every cell as text, no value guessed missing by pandas."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InitError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise InitError(f"{path}: not UTF-8 text; save the CSV as UTF-8") from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise InitError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]})") from None
    if df.columns.empty or df.empty:
        raise InitError(f"{path}: no rows under a header line")
    return df


def _find_target(df: pd.DataFrame, target: str, names: dict[str, str], path: Path) -> str:
    """The header the --target flag names: exactly, by its field name, or ignoring case."""
    for header in df.columns:
        if header == target:
            return header
    for header in df.columns:
        if names[header] == target or header.strip().lower() == target.strip().lower():
            return header
    raise InitError(f"{path}: no column {_q(target)} for --target; the columns are {_quote_list(df.columns, 40)}")


def _looks_like_id(name: str, numbers: pd.Series, n_rows: int) -> bool:
    """Integers, one per row, named like an id or densely numbered (a row number, a sequence)."""
    if len(numbers) < n_rows or numbers.nunique() != len(numbers) or len(numbers) < 2:
        return False
    tokens = set(name.strip("_").split("_"))
    named = bool(tokens & ID_NAMES) or name.startswith("unnamed") or name.endswith(ID_SUFFIXES)
    dense = numbers.max() - numbers.min() + 1 <= 2 * len(numbers)
    return named or dense


def _numeric_feature(col: Column, numbers: pd.Series, n_rows: int, missing: int) -> None:
    low, high = float(numbers.min()), float(numbers.max())
    b_low, b_high, inclusive = _bounds(low, high)
    unit = _unit(col.header, col.name)
    col.role, col.kind = "feature", "numeric"
    col.settings = {"unit": unit, "bounds": [b_low, b_high]}
    if inclusive:
        col.settings["low_inclusive"] = True
    if missing:
        col.settings["required"] = False
    seen = f"numeric: {_fmt(low)} to {_fmt(high)} in {n_rows - missing} of {n_rows} rows"
    seen += f", {missing} missing (required = false)" if missing else ""
    unit_note = f"unit {_q(unit)} from the header" if unit else "unit unknown: fill it in"
    edge = "from 0 (inclusive: nothing negative seen)" if inclusive else "from the minimum less the range"
    col.note = (f"{seen}; {unit_note}; bounds {edge} to the maximum plus the range, rounded: review the physical "
                "limits (a value outside them is refused)")
    zeros = int((numbers == 0).sum())
    others = numbers[numbers != 0]
    if (zeros >= ZERO_SHARE * n_rows and others.nunique() >= MEASURED_LEVELS and others.min() > 0
            and others.min() > ZERO_GAP * others.median()):
        text = (f"review: 0 in {zeros} rows ({zeros / n_rows:.0%}) while the other values run from "
                f"{_fmt(others.min())} to {_fmt(others.max())}: if 0 means 'not measured', add "
                "missing_values = [0] and required = false")
        col.review.append(text)


def _classify(header: str, name: str, cells: pd.Series, n_rows: int) -> Column:
    """One non-target column's role, kind, settings and comment, from its text cells (usable rows only)."""
    col = Column(header, name, "left_out")
    present = _present(cells)
    missing = n_rows - len(present)
    if present.empty:
        col.note = "no values"
        return col
    stripped = present.str.strip()
    distinct = stripped.nunique()
    numbers = _numbers(present)
    numeric = numbers.dropna()
    stray = present[numbers.isna()]
    if distinct == 1:
        col.note = f"one value only ({_q(stripped.iloc[0])})"
        return col
    if len(stray) <= STRAY_SHARE * len(present) and len(numeric) >= 2 and numeric.nunique() > 1:
        if stray.empty and stripped.map(lambda t: bool(INTEGER.fullmatch(t))).all() \
                and _looks_like_id(name, numeric, n_rows):
            low, high = int(numeric.min()), int(numeric.max())
            col.role, col.kind = "passthrough", "integer"
            col.settings = {"bounds": [min(0, low), max(10 ** len(str(abs(high) * 10)), 10)]}
            col.note = (f"passthrough: an identifier ({distinct} distinct integers {low} to {high}, one per row), "
                        "never a feature; accepted in requests and logged; review the bounds (new ids must fit)")
            return col
        _numeric_feature(col, numeric, n_rows, missing)
        if len(stray):
            col.bad = set(stray.index)
            tokens = Counter(stray.str.strip())
            col.review.append(f"review: {len(stray)} cells are no number ({_quote_list(tokens)}): their rows are bad "
                              "rows the job drops ([data] bad_rows); empty those cells in the CSV if they mean "
                              "'not measured'")
        return col
    longest = int(stripped.str.len().max())
    dates = stripped.map(lambda t: bool(DATE.fullmatch(t))).mean()
    if dates >= 0.9:
        kind_of = "dates"
        detail = f"{distinct} distinct, {stripped.min()} to {stripped.max()}"
        advice = "derive a feature from it (a year, a month, a weekday) in a column of its own if it matters"
    elif longest <= MAX_STRING_CHARS and distinct <= MAX_LEVELS and distinct * MIN_ROWS_PER_LEVEL <= len(present):
        levels = sorted(Counter(stripped).items(), key=lambda kv: (-kv[1], kv[0]))
        col.role, col.kind = "feature", "categorical"
        col.settings = {"unseen": "missing"} | ({"required": False} if missing else {})
        col.note = (f"categorical: {distinct} levels ({_levels(levels)}) in "
                    f"{len(present)} of {n_rows} rows" + (f", {missing} missing (required = false)" if missing else "")
                    + "; a level never seen in training is served as unknown with a warning (\"reject\": a 400)")
        return col
    else:
        many = distinct > MAX_LEVELS or distinct * MIN_ROWS_PER_LEVEL > len(present)
        kind_of = ("an identifier or code, one per row" if distinct == len(present) else
                   "free text or a code" if many else "long text")
        detail = f"{distinct} distinct values in {len(present)} rows, up to {longest} characters"
        advice = "make it a categorical feature only if its values repeat and matter"
    if longest > MAX_STRING_CHARS:
        col.note = f"{kind_of} ({detail}): longer than the {MAX_STRING_CHARS} characters a passthrough string holds"
        return col
    col.role, col.kind = "passthrough", "string"
    col.note = f"passthrough: {kind_of} ({detail}), never a feature; accepted in requests and logged; {advice}"
    return col


def _words(name: str) -> set[str]:
    return set(name.split("_")) | {name.replace("_", "")}


def _phone(value: str) -> bool:
    return bool(PHONE.fullmatch(value)) and PHONE_DIGITS[0] <= sum(ch.isdigit() for ch in value) <= PHONE_DIGITS[1] \
        and not DATE.fullmatch(value) and not INTEGER.fullmatch(value)


def looks_personal(name: str, values: pd.Series) -> tuple[str, str] | None:
    """The log policy proposed for a passthrough column that looks personal, and why; None otherwise."""
    words = _words(name)
    share = (lambda test: values.map(test).mean()) if len(values) else (lambda test: 0.0)
    if share(lambda v: bool(EMAIL.fullmatch(v))) >= PERSONAL_SHARE:
        return HASH, "email addresses"
    if words & PHONE_WORDS or share(_phone) >= PERSONAL_SHARE:
        return HASH, "phone numbers"
    if words & BIRTH_WORDS:
        return DROP, "dates of birth"
    if words & NAME_WORDS:
        return DROP, "names"
    if words & PERSON_ID_WORDS:
        return HASH, "a person's identifier"
    if share(lambda v: len(v.split()) >= FREE_TEXT_WORDS) >= PERSONAL_SHARE:
        return DROP, "free text"
    return None


def _levels(levels: list[tuple[str, int]]) -> str:
    shown = ", ".join(f"{_q(v)} {n}" for v, n in levels[:SHOWN_LEVELS])
    return shown + (f", ... ({len(levels)} in all)" if len(levels) > SHOWN_LEVELS else "")


def _infer_task(cells: pd.Series, task: str | None, header: str) -> str:
    numbers = _numbers(cells)
    all_numbers = numbers.notna().all()
    integers = all_numbers and cells.str.strip().map(lambda t: bool(INTEGER.fullmatch(t))).all()
    distinct = cells.str.strip().str.lower().nunique()
    mostly_numbers = numbers.isna().sum() <= STRAY_SHARE * len(cells) and numbers.nunique() > CLASS_LEVELS
    if task is None:
        if (all_numbers and not (integers and distinct <= CLASS_LEVELS)) or mostly_numbers:
            return "regression"
        return "binary" if distinct == 2 else "multiclass"
    if task == "regression" and not mostly_numbers and not all_numbers:
        shown = _quote_list(Counter(cells[numbers.isna()].str.strip()))
        raise InitError(f"--task regression: target {_q(header)} has values that are no number ({shown})")
    if task == "binary" and distinct != 2:
        raise InitError(f"--task binary: target {_q(header)} has {distinct} distinct values, not 2")
    return task


def _title_words(header: str) -> str:
    """A header as words for a title: its unit and underscores dropped, the first letter capitalised."""
    words = " ".join(UNIT_IN_HEADER.sub("", header).replace("_", " ").split()) or header
    return words[:1].upper() + words[1:]


def infer(df: pd.DataFrame, target: str, *, path: Path, name: str, task: str | None = None) -> Plan:
    """The plan of a spec for the CSV `df` (text cells) with `target` (a header, or its field name)."""
    names = _field_names(list(df.columns))
    header = _find_target(df, target, names, path)
    target_cells = df[header]
    has_target = ~target_cells.str.strip().str.lower().isin(MISSING_TEXT)
    usable = df[has_target].reset_index(drop=True)
    dropped = int((~has_target).sum())
    if usable.empty:
        raise InitError(f"{path}: no row has a value for the target {_q(header)}")
    cells = usable[header].str.strip()
    task = _infer_task(cells, task, header)
    n = len(usable)
    tcol = Column(header, names[header], "target")
    lines: list[str] = []
    without = (f"; {dropped} of {len(df)} rows have no target and are not usable (dropped)" if dropped
               else f"; every one of the {len(df)} rows has a target")
    plan = Plan(name, path.name, "", task, tcol, lines, [], len(df), usable)
    if task == "regression":
        values = _numbers(cells)
        stray = cells[values.isna()]
        if len(stray):
            tcol.bad = set(stray.index)
            lines.append(comment(f"review: {len(stray)} targets are no number ({_quote_list(Counter(stray))}): "
                                 "their rows are bad rows the job drops ([data] bad_rows)"))
            plan.review.append(f"{len(stray)} targets are no number")
            values = values.dropna()
        sd = float(values.std(ddof=1)) if n > 1 else 0.0
        if sd == 0:
            raise InitError(f"target {_q(header)}: a single value ({_fmt(values.iloc[0])}); nothing to learn")
        low, high = float(values.min()), float(values.max())
        b_low, b_high, inclusive = _bounds(low, high)
        plan.target_values = values
        tcol.settings = {"unit": _unit(header, tcol.name), "bounds": [b_low, b_high]}
        tcol.settings |= ({"low_inclusive": True} if inclusive else {}) | {"interval": 0.9}
        lines.insert(0, comment(f"target {_q(header)}: numbers from {_fmt(low)} to {_fmt(high)} (mean "
                                f"{_fmt(values.mean())}, sd {_fmt(sd)}) -> regression{without}; --task overrides"))
    else:
        spellings: dict[str, Counter] = {}
        for value in cells:
            spellings.setdefault(value.lower(), Counter())[value] += 1
        counts = {c.most_common(1)[0][0]: sum(c.values()) for c in spellings.values()}
        if len(counts) < 2:
            raise InitError(f"target {_q(header)}: one label only ({_q(next(iter(counts)))}); a classifier needs two")
        long = [label for label in counts if len(label) > MAX_STRING_CHARS]
        if long:
            raise InitError(f"target {_q(header)}: label(s) longer than {MAX_STRING_CHARS} characters "
                            f"({_quote_list(long, 2)}); is this the right column, or the right --task?")
        numeric_labels = all(INTEGER.fullmatch(v) for v in counts)
        plan.labels = sorted(counts, key=lambda v: (int(v), v) if numeric_labels else (v.lower(), v))
        plan.label_counts = {label: counts[label] for label in plan.labels}
        shown = ", ".join(f"{_q(label)}: {counts[label]}" for label in plan.labels[:SHOWN_LEVELS])
        more = f", ... ({len(plan.labels)} labels)" if len(plan.labels) > SHOWN_LEVELS else ""
        lines.append(comment(f"target {_q(header)}: {len(plan.labels)} labels ({shown}{more} rows) -> {task}{without}; "
                             "--task overrides"))
        merged = [label for label, c in spellings.items() if len(c) > 1]
        if merged:
            lines.append(comment(f"review: labels spelled in several cases are one label (case is ignored): "
                                 f"{_quote_list(merged)}"))
        tcol.settings = {"labels": plan.labels}
        rare = [label for label in plan.labels if counts[label] < MIN_ROWS_PER_LEVEL]
        if rare:
            raise InitError(f"target {_q(header)}: label(s) {_quote_list(rare)} on a single row; the holdout and the "
                            "cross-validation are stratified by label, so each needs several rows")
        few = [label for label in plan.labels if counts[label] < 10]
        if few:
            plan.review.append(f"labels with fewer than 10 rows: {', '.join(few)}")
            lines.append(comment(f"review: label(s) {_quote_list(few)} have fewer than 10 rows; the holdout and "
                                 "each cross-validation fold see very few of them"))
        if task == "binary":
            positive = min(plan.labels, key=lambda v: (counts[v], -plan.labels.index(v)))
            tcol.settings["positive"] = positive
            tcol.settings["_positive_note"] = (
                f"review: the positive class (its probability is the answer's, the threshold is for it) is the "
                f"minority label {_q(positive)} ({counts[positive]} of {n} rows); e.g. \"1\" or \"yes\"")
    others = [h for h in df.columns if h != header]
    plan.columns = [_classify(h, names[h], usable[h], n) for h in others]
    for c in plan.by_role("passthrough"):
        proposed = looks_personal(c.name, _present(usable[c.header]).str.strip())
        if proposed is not None:
            policy, why = proposed
            c.settings["log"] = policy
            c.review.append(f"review: looks personal ({why}): logged {'hashed' if policy == HASH else 'never'}"
                            + (" (erase a person's rows by it)" if policy == HASH else ""))
    if not plan.by_role("feature"):
        raise InitError(f"{path}: no column can be a feature (every other column is an identifier, a date, text, "
                        "empty or constant)")
    bad = set().union(tcol.bad, *(c.bad for c in plan.columns))
    plan.bad_rows = len(bad)
    if len(bad) > MAX_BAD_SHARE * n:
        plan.max_bad_share = math.ceil(100 * len(bad) / n + 1) / 100
    for c in plan.columns:
        plan.review.extend(f"{c.name}: {r.removeprefix('review: ')}" for r in c.review)
    return plan


# ---- rendering -------------------------------------------------------------------------------------------------

def _search(n: int) -> tuple[dict, str]:
    """A small grid (24 points at most, each cross-validated 5-fold) scaled to the usable rows."""
    if n < 2000:
        grid = {"max_depth": [2, 3, 4, 6], "num_boost_round": [100, 300, 600], "eta": [0.03, 0.1],
                "min_child_weight": [1]}
        why = "under 2,000: shallow trees, more rounds at a lower eta"
    elif n < 20000:
        grid = {"max_depth": [4, 6, 8], "num_boost_round": [200, 500], "eta": [0.05, 0.1], "min_child_weight": [1, 5]}
        why = "2,000 to 20,000: deeper trees"
    else:
        grid = {"max_depth": [6, 8, 10], "num_boost_round": [300, 800], "eta": [0.05, 0.1],
                "min_child_weight": [5, 20]}
        why = "20,000 or more: deep trees, heavier leaves"
    points = math.prod(len(v) for v in grid.values())
    return grid, (f"scaled to the {n:,} usable rows ({why}): {points} points, each cross-validated 5-fold; "
                  "add subsample, colsample_bytree, lambda, alpha, gamma or max_bin lists to search them too")


def _keys(settings: dict) -> list[str]:
    return [f"{k} = {toml_value(v)}" for k, v in settings.items() if not k.startswith("_")]


def render_spec(plan: Plan) -> str:
    """The spec's TOML text, every inferred choice commented."""
    t = plan.target
    n = len(plan.usable)
    words = _title_words(t.header)
    kind = "regressor" if plan.task == "regression" else "classifier"
    description = (f"{words} predicted from the {len(plan.by_role('feature'))} features of a row of "
                   f"{plan.file}.")
    out = [comment(f"A first spec written by `python -m retrain_job init` from {plan.file} ({plan.rows} rows): every "
                   "inferred choice has a comment saying what was seen; review each."),
           comment(f"Then train it: python -m retrain_job --model {plan.name} (make retrain MODEL={plan.name})."),
           f"name = {toml_string(plan.name)}",
           comment("rewrite: a few words naming what the model predicts"),
           f"title = {toml_string(f'{words} {kind}')}",
           comment("rewrite: what is predicted, for what, from which inputs"),
           f"description = {toml_string(description)}",
           *plan.target_lines,
           f"task = {toml_string(plan.task)}",
           "",
           "[target]",
           f"name = {toml_string(t.name)}"]
    if plan.task == "regression":
        unit = t.settings["unit"]
        out += [comment(f"the target's unit (answers and warnings show it): {_q(unit)} from the header, review it"
                        if unit else "fill in: the target's unit (answers and warnings show it)"),
                f"unit = {toml_string(unit)}",
                comment("plausible values of the truth (what feedback and labelled data may say): the data's range "
                        "widened by its span" + (", from 0 inclusive as nothing is negative" if "low_inclusive"
                                                 in t.settings else "") + "; review the physical limits"),
                f"bounds = {toml_value(t.settings['bounds'])}"]
        if "low_inclusive" in t.settings:
            out.append("low_inclusive = true")
        out += [comment("the level of the prediction interval every answer carries"), "interval = 0.9"]
    else:
        out += [comment("every label as spelled in the data (case is ignored in requests and feedback)"),
                f"labels = {toml_value(plan.labels)}"]
        if plan.task == "binary":
            out += [comment(t.settings["_positive_note"]), f"positive = {toml_string(t.settings['positive'])}", "",
                    comment("the decision threshold, chosen at training on out-of-fold probabilities to maximise F1; "
                            "other rules: \"fixed\" with value = 0.5, \"min_precision\" or \"min_recall\" with "
                            "value = 0.9"),
                    "[threshold]", "rule = \"best_f1\""]
    for c in plan.by_role("feature"):
        out += ["", comment(c.note), *(comment(r) for r in c.review), "[[features]]", f"name = {toml_string(c.name)}",
                f"kind = {toml_string(c.kind)}", *_keys(c.settings)]
    for c in plan.by_role("passthrough"):
        out += ["", comment(c.note), *(comment(r) for r in c.review), "[[passthrough]]",
                f"name = {toml_string(c.name)}", f"kind = {toml_string(c.kind)}", *_keys(c.settings)]
    left = plan.by_role("left_out")
    if left:
        out += ["", comment("left out (neither features nor passthrough): "
                            + "; ".join(f"{_q(c.header)} ({c.note})" for c in left))]
    dropped = plan.rows - n
    bad_note = (f"{plan.bad_rows} rows ({plan.bad_rows / n:.1%}) have a cell that is no number: above 5%, so the "
                "share allowed is raised to cover them; review" if plan.max_bad_share != MAX_BAD_SHARE else
                "a row breaking a rule (not a number, out of bounds) is dropped, up to this share of the rows; "
                "bad_rows = \"reject\" refuses the data set at the first bad row")
    out += ["", "[data]", f"file = {toml_string(plan.file)}", f"sha256 = {toml_string(plan.sha256)}",
            comment(f"rows without a target are dropped ({dropped} of {plan.rows} here); a missing feature is kept "
                    "as missing (its feature says required = false)"),
            f"required = {toml_value([t.name])}",
            comment(bad_note),
            "bad_rows = \"drop\"",
            f"max_bad_share = {plan.max_bad_share}"]
    used = {c.name for c in (t, *plan.columns) if c.role != "left_out"}
    # a column left out keeps its header, unless that header is some other column's field name
    renames = [c for c in (t, *plan.columns) if c.header != c.name and (c.role != "left_out" or c.header in used)]
    if renames:
        out += ["", comment("the file's headers renamed to field names (snake_case)"), "[data.columns]",
                *(f"{toml_string(c.header)} = {toml_string(c.name)}" for c in renames)]
    out += ["", "[holdout]", comment("a seeded fifth of the rows, frozen: the gate compares candidates with stable "
                                     "on it"), "fraction = 0.2"]
    if plan.task == "regression":
        repeated = [c.name for c in plan.by_role("passthrough")
                    if plan.usable[c.header].str.strip().nunique() < len(plan.usable)]
        out.append(comment("no group_by: rows with identical features are kept on one side automatically; name "
                           "group_by columns if rows describe the same entity (e.g. group_by = "
                           f"{toml_value(repeated[:1] or ['customer_id'])})"))
    else:
        out += [comment("each label in the same proportion on both sides"), "stratify = true"]
    out += ["", "[gate]"]
    if plan.task == "regression":
        sd = float(plan.target_values.std(ddof=1))
        out += [comment(f"a candidate may be at most this much worse in RMSE than stable on the holdout: 1% of the "
                        f"target's standard deviation ({_fmt(sd)}); review in the target's unit"),
                "metric = \"rmse\"", f"tolerance = {toml_value(_sig3(0.01 * sd))}",
                comment("the 90% interval must cover between these shares of the holdout"),
                "coverage_min = 0.87", "coverage_max = 0.93"]
    else:
        top = max(plan.label_counts, key=plan.label_counts.get)
        share = plan.label_counts[top] / n
        out += [comment("a candidate may be at most this much worse in log loss than stable on the holdout"),
                "metric = \"log_loss\"", "tolerance = 0.02",
                comment("also held: accuracy and macro F1 within these of stable's"),
                "accuracy_tolerance = 0.01", "macro_f1_tolerance = 0.01",
                comment(f"no accuracy_floor: consider one above {share:.2f}, the accuracy of always answering "
                        f"{_q(top)} (e.g. accuracy_floor = {min(0.99, math.ceil(100 * share + 5) / 100)})")]
    grid, why = _search(n)
    out += ["", comment(why), "[search]", *_keys(grid)]
    if plan.task == "regression":
        out += ["", comment("\"plain\" models the target as it is; \"log_baseline\" with regimes suits a positive "
                            "target proportional to its inputs (retrain_job/README.md, the regressor)"),
                "[regression]", "strategy = \"plain\""]
    return "\n".join(out) + "\n"


def _example_rows(plan: Plan) -> list[int]:
    """Three rows to show: one per label where possible (classifiers), or low, middle and high targets, each the
    most complete row of its kind (fewest missing fields, no bad cell)."""
    fields = [*plan.by_role("feature"), *plan.by_role("passthrough")]
    frame = plan.usable
    bad = set().union(plan.target.bad, *(c.bad for c in plan.columns))
    gaps = pd.Series(0, index=frame.index)
    for c in fields:
        gaps += frame[c.header].str.strip().str.lower().isin(MISSING_TEXT).astype(int)
    gaps[list(bad)] = len(fields) + 1
    chosen: list[int] = []
    if plan.task == "regression":
        order = [i for i in plan.target_values.sort_values(kind="mergesort").index if i not in bad]
        for q in (0.1, 0.5, 0.9):
            around = order[max(0, int(q * len(order)) - 5):int(q * len(order)) + 5] or order
            pick = min((i for i in around if i not in chosen), key=lambda i: gaps[i], default=None)
            if pick is not None:
                chosen.append(pick)
        return chosen
    cells = frame[plan.target.header].str.strip().str.lower()
    for label in sorted(plan.labels, key=lambda v: -plan.label_counts[v]):
        rows = cells.index[cells == label.lower()]
        chosen.append(min(rows, key=lambda i: gaps[i]))
    rest = [i for i in gaps.sort_values(kind="mergesort").index if i not in chosen]
    return (chosen + rest)[:3]


def render_examples(plan: Plan) -> str:
    """examples.json: three requests from the data, JSON-typed, missing fields omitted, no expected answers."""
    fields = [*plan.by_role("feature"), *plan.by_role("passthrough")]
    examples = []
    for i in _example_rows(plan):
        row = plan.usable.loc[i]
        request = {c.name: v for c in fields if (v := c.value(row[c.header])) is not None}
        examples.append({"request": request})
    return "[\n" + ",\n".join("  " + json.dumps(e, ensure_ascii=False) for e in examples) + "\n]\n"


def render_data_notes(plan: Plan) -> str:
    """DATA.md: what init saw, and the questions only a person can answer."""
    missing = {c.name: int(plan.usable[c.header].str.strip().str.lower().isin(MISSING_TEXT).sum())
               for c in plan.by_role("feature")}
    quirks = [f"{plan.rows - len(plan.usable)} rows have no target (dropped)"] if plan.rows > len(plan.usable) else []
    quirks += [f"{name}: {k} missing" for name, k in missing.items() if k]
    quirks += [f"{c.name}: {r.removeprefix('review: ')}" for c in plan.columns for r in c.review]
    return "\n".join([
        f"# {_title_words(Path(plan.file).stem)} (`{plan.file}`)",
        "",
        f"{plan.rows} rows, {len(plan.usable.columns)} columns; the target is `{plan.target.header}`. "
        "TODO: one paragraph on what a row is, where and when it was collected.",
        "",
        "- Source: TODO: who published it, where (a URL or a DOI), which version or date, and whether it was copied "
        "unmodified.",
        "- Licence: TODO: the licence it is under (and its URL); check that it allows this use.",
        "- Attribution: TODO: the citation or notice the licence asks for.",
        f"- SHA-256: `{plan.sha256}` (checked at every load).",
        "- Quirks: " + ("; ".join(quirks) if quirks else "none seen") + ".",
        "",
    ])


def summary(plan: Plan, folder: Path) -> dict:
    kinds: dict[str, list[str]] = {"numeric": [], "categorical": []}
    for c in plan.by_role("feature"):
        kinds[c.kind].append(c.name)
    return {"command": "init", "model": plan.name, "decision": "written", "path": str(folder), "task": plan.task,
            "target": plan.target.name, "features": kinds,
            "passthrough": {c.name: c.kind for c in plan.by_role("passthrough")},
            "left_out": {c.header: c.note for c in plan.by_role("left_out")},
            "rows": plan.rows, "usable_rows": len(plan.usable), "review": plan.review,
            "files": [SPEC_FILE, EXAMPLES_FILE, plan.file, DATA_NOTES]}


# ---- the command -----------------------------------------------------------------------------------------------

def init_spec(csv: Path, target: str, *, name: str | None = None, task: str | None = None,
              specs_dir: Path | None = None) -> dict:
    """Write specs_dir/<name>/ from the CSV; the summary. InitError (one line) if it cannot, and then writes nothing."""
    csv = Path(csv)
    specs_dir = Path(specs_dir) if specs_dir is not None else SPECS_DIR
    name = name if name is not None else model_name(csv.stem)
    if not MODEL_NAME.fullmatch(name):
        raise InitError(f"--name {_q(name)}: a model name is 2-32 lower-case letters, digits or '-', starting "
                        "with a letter and not ending with '-'")
    if task is not None and task not in TASKS:
        raise InitError(f"--task {_q(task)}: one of {', '.join(TASKS)}")
    folder = specs_dir / name
    if folder.exists():
        raise InitError(f"{folder} already exists; nothing written (choose another --name, or remove the folder)")
    raw = _read_bytes(csv)
    plan = infer(read_csv(csv), target, path=csv, name=name, task=task)
    plan.sha256 = hashlib.sha256(raw).hexdigest()
    spec_text = render_spec(plan)
    tomllib.loads(spec_text)  # written by hand: prove it parses before anything is written
    specs_dir.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir()
    except FileExistsError:
        raise InitError(f"{folder} already exists; nothing written (choose another --name, or remove the folder)") \
            from None
    try:
        (folder / plan.file).write_bytes(raw)
        if hashlib.sha256((folder / plan.file).read_bytes()).hexdigest() != plan.sha256:
            raise InitError(f"{csv} changed while it was read; run init again")
        (folder / SPEC_FILE).write_text(spec_text)
        (folder / EXAMPLES_FILE).write_text(render_examples(plan))
        (folder / DATA_NOTES).write_text(render_data_notes(plan))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return summary(plan, folder)


def _read_bytes(csv: Path) -> bytes:
    try:
        return csv.read_bytes()
    except FileNotFoundError:
        raise InitError(f"{csv}: no such file") from None
    except IsADirectoryError:
        raise InitError(f"{csv}: a directory, not a CSV file") from None
    except OSError as exc:
        raise InitError(f"{csv}: cannot be read ({exc.strerror})") from None


def run_init(args: argparse.Namespace) -> int:
    """The `init` command: the summary line and 0, or one line on stderr and 1."""
    try:
        if not args.csv or not args.target:
            raise InitError("init needs --csv PATH and --target COLUMN")
        result = init_spec(Path(args.csv), args.target, name=args.name, task=args.task, specs_dir=args.specs_dir)
    except InitError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
