"""Training data: the Palmer Penguins base set plus newly labelled rows, as one clean DataFrame."""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd

from shared.contract import PHYSICAL_LIMITS
from shared.store import Store

NUMERIC = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")
CATEGORICAL = ("island", "sex")
LABEL = "species"
COLUMNS = (*NUMERIC, *CATEGORICAL, "year", LABEL)


def load_base() -> pd.DataFrame:
    """The palmerpenguins data set: rows without measurements or island are dropped, missing sex kept."""
    from palmerpenguins import load_penguins  # noqa: PLC0415

    df = load_penguins()
    df = df.dropna(subset=[*NUMERIC, "island", LABEL]).reset_index(drop=True)
    df["source"] = "palmerpenguins"
    return df


def fingerprint(df: pd.DataFrame) -> str:
    """sha256 of the rows in a canonical order: the same data gives the same fingerprint."""
    canonical = df[list(COLUMNS)].sort_values(list(COLUMNS)).to_csv(index=False, float_format="%.6g")
    return hashlib.sha256(canonical.encode()).hexdigest()


def to_records(df: pd.DataFrame) -> list[dict]:
    """Rows as request-shaped dicts (missing values become None), the input of `shared.features`."""
    frame = df[[*NUMERIC, *CATEGORICAL]].astype(object)
    return frame.where(frame.notna(), None).to_dict("records")


LABELLED_PREFIX = "data/labelled/"
KNOWN_SPECIES = ("Adelie", "Chinstrap", "Gentoo")
SEXES = ("female", "male")


@dataclass
class LabelledData:
    """New labelled rows from the store, with what was skipped and why."""

    rows: pd.DataFrame
    files: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)  # {"file", "line", "reason"}, capped in reports

    @classmethod
    def none(cls) -> LabelledData:
        """No labelled rows at all."""
        return cls(_no_rows())

    @property
    def rejected_count(self) -> int:
        """How many rows were skipped."""
        return len(self.rejected)


def _no_rows() -> pd.DataFrame:
    return pd.DataFrame(columns=[*COLUMNS, "source"])


def load_labelled(store: Store, prefix: str = LABELLED_PREFIX, islands: tuple[str, ...] = ()) -> LabelledData:
    """Every CSV under the prefix, each distinct content once; bad rows skipped with a reason."""
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
        good, bad = parse_labelled_csv(raw, key, islands)
        files.append({"key": key, "sha256": digest, "rows": int(len(good)), "rejected": len(bad)})
        frames.append(good)
        rejected.extend(bad)
    rows = pd.concat(frames, ignore_index=True) if frames else _no_rows()
    return LabelledData(rows, files, rejected)


def parse_labelled_csv(raw: bytes, key: str, islands: tuple[str, ...]) -> tuple[pd.DataFrame, list[dict]]:
    """Valid rows of one CSV (request fields plus species) and the reasons the others were skipped."""
    try:
        df = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        return _no_rows(), [{"file": key, "line": None, "reason": f"unreadable CSV: {type(exc).__name__}"}]
    missing = [c for c in (*NUMERIC, "island", LABEL) if c not in df.columns]
    if missing:
        return _no_rows(), [{"file": key, "line": None, "reason": f"missing columns {missing}"}]
    island_case = {name.lower(): name for name in islands}
    good, bad = [], []
    for line, record in enumerate(df.to_dict("records"), start=2):  # line 1 is the header
        row, reason = _clean_row(record, island_case)
        if reason:
            bad.append({"file": key, "line": line, "reason": reason})
        else:
            good.append(row)
    frame = pd.DataFrame(good, columns=list(COLUMNS)) if good else pd.DataFrame(columns=list(COLUMNS))
    frame["source"] = key
    return frame, bad


def _clean_row(record: dict, island_case: dict[str, str]) -> tuple[dict, str | None]:
    row: dict = {}
    for name in NUMERIC:
        try:
            value = float(str(record.get(name, "")).strip())
        except ValueError:
            return row, f"{name} is not a number"
        low, high = PHYSICAL_LIMITS[name]
        if not (low < value <= high):  # also rejects NaN and infinities
            return row, f"{name}={value:g} outside ({low:g}, {high:g}]"
        row[name] = value
    island = str(record.get("island", "")).strip()
    if not island or len(island) > 64:
        return row, "island is empty or too long"
    row["island"] = island_case.get(island.lower(), island.title())
    sex = str(record.get("sex", "")).strip().lower()
    if sex not in (*SEXES, "", "na", "nan", "null"):
        return row, f"sex {sex!r} is not one of {SEXES}"
    row["sex"] = sex if sex in SEXES else None
    species = str(record.get(LABEL, "")).strip().title()
    if species not in KNOWN_SPECIES:
        return row, f"species {species!r} is not one of {KNOWN_SPECIES}"
    row[LABEL] = species
    year = str(record.get("year", "")).strip()
    row["year"] = int(year) if year.isdigit() else None
    return row, None


SINK_LOG_ID = "run.googleapis.com/stdout"


def load_serving_inputs(store: Store, log_prefix: str, days: int, now: datetime | None = None
                        ) -> tuple[pd.DataFrame, dict]:
    """Inputs and predicted classes from the prediction log lines a Cloud Logging sink wrote to the store.

    The sink's layout is `<log id>/YYYY/MM/DD/HH:00:00_HH:59:59_S<n>.json`, one LogEntry per line; only
    files of the last `days` days are read. Returns the rows and what was read (window, files, bad lines).
    """
    now = now or datetime.now(UTC)
    since = (now - timedelta(days=days)).strftime("%Y/%m/%d")
    base = f"{log_prefix.strip('/')}/{SINK_LOG_ID}/" if log_prefix.strip("/") else f"{SINK_LOG_ID}/"
    rows, files, bad_lines = [], 0, 0
    for key in store.list(base):
        day = key[len(base):len(base) + 10]
        if day < since or not key.endswith(".json"):
            continue
        files += 1
        data, _ = store.read(key)
        for line in data.splitlines():
            try:
                payload = json.loads(line).get("jsonPayload") or {}
            except (ValueError, AttributeError):
                bad_lines += 1
                continue
            if payload.get("event") != "prediction":
                continue
            for features, predicted in zip(payload.get("instances") or [], payload.get("predicted") or []):
                if isinstance(features, dict):
                    rows.append({**{k: features.get(k) for k in (*NUMERIC, *CATEGORICAL)}, "predicted": predicted})
    frame = pd.DataFrame(rows, columns=[*NUMERIC, *CATEGORICAL, "predicted"])
    window = {"from": since.replace("/", "-"), "to": now.strftime("%Y-%m-%d"), "files": files,
              "bad_lines": bad_lines}
    return frame, window
