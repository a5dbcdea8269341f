"""Send synthetic prediction traffic drawn from a model's own data, optionally shifted.

Usage: python -m scripts.send_traffic --url http://127.0.0.1:8080 [--model NAME] --rows 300
       [--scale FEATURE=FACTOR ...] [--set FEATURE=VALUE ...] [--batch N]
Rows are sampled (seeded) from the model's data file (its spec names it); --scale multiplies a numeric
feature, --set fixes a field. Feeds the drift report when the function runs with LOG_TO_STORE=1 (as
`make serve` does).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sys
import urllib.request

from shared.settings import Settings
from shared.spec import ModelSpec, load_spec, spec_names

MISSING = {"", "NA", "na", "NaN", "nan", "null"}


def request_rows(spec: ModelSpec) -> list[dict]:
    """The model's data as request-shaped rows (features and passthrough fields; missing values as None)."""
    kinds = {f.name: f.kind for f in spec.features} | {p.name: p.kind for p in spec.passthrough}
    out = []
    for raw_record in csv.DictReader(io.StringIO(spec.read_data().decode())):
        record = {spec.data.columns.get(k, k): v for k, v in raw_record.items()}
        if any(record.get(name, "").strip() in MISSING for name in spec.data.required):
            continue
        row = {}
        for name, kind in kinds.items():
            raw = record.get(name, "").strip()
            if raw in MISSING:
                row[name] = None
            elif kind == "numeric":
                row[name] = float(raw)
            elif kind == "integer":
                row[name] = int(raw)
            else:
                row[name] = raw
        out.append(row)
    return out


def synthetic_rows(model: str, rows: int, scale: dict[str, float] | None = None, fixed: dict | None = None,
                   seed: int = 7) -> list[dict]:
    """Real rows of the model's data, resampled, with each `scale` factor and `fixed` value applied."""
    pool = request_rows(load_spec(model))
    rng = random.Random(seed)
    out = []
    for sampled in rng.choices(pool, k=rows):
        row = {k: v for k, v in sampled.items() if v is not None}
        for name, factor in (scale or {}).items():
            if row.get(name) is not None:
                row[name] = round(row[name] * factor, 3)
        out.append({**row, **(fixed or {})})
    return out


def send(url: str, rows: list[dict], model: str | None = None, batch: int = 1) -> int:
    """POST rows one by one (or in batches) to `/predict` (or the model's V1 path); how many were answered 200."""
    path = f"/v1/models/{model}:predict" if model else "/predict"
    ok = 0
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        body = chunk[0] if batch == 1 and not model else {"instances": chunk}
        req = urllib.request.Request(url.rstrip("/") + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            ok += len(chunk) if resp.status == 200 else 0
    return ok


def _pairs(items: list[str], convert) -> dict:
    return {k: convert(v) for k, _, v in (item.partition("=") for item in items)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--model", default=Settings().model_name, choices=spec_names())
    p.add_argument("--rows", type=int, default=300)
    p.add_argument("--scale", action="append", default=[], metavar="FEATURE=FACTOR")
    p.add_argument("--set", action="append", default=[], metavar="FEATURE=VALUE")
    p.add_argument("--batch", type=int, default=1)
    args = p.parse_args()
    rows = synthetic_rows(args.model, args.rows, _pairs(args.scale, float), _pairs(args.set, str))
    ok = send(args.url, rows, args.model, args.batch)
    print(f"{ok} of {args.rows} rows answered")
    return 0 if ok == args.rows else 1


if __name__ == "__main__":
    sys.exit(main())
