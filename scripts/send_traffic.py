"""Send synthetic prediction traffic drawn from the Palmer Penguins data, optionally shifted.

Usage: python -m scripts.send_traffic --url http://127.0.0.1:8080 --rows 300 [--mass-factor 1.2] [--island Biscoe]
Rows are sampled (seeded) from the real data; --mass-factor scales body mass, --island forces one island.
Feeds the drift report when the function runs with LOG_TO_STORE=1 (as `make serve` does).
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.request

from palmerpenguins import load_penguins


def synthetic_rows(rows: int, mass_factor: float = 1.0, island: str | None = None, seed: int = 7) -> list[dict]:
    """Real penguins, resampled, with an optional shift applied."""
    df = load_penguins().dropna(subset=["bill_length_mm", "body_mass_g", "island"]).sample(
        n=rows, replace=True, random_state=seed)
    out = []
    for r in df.to_dict("records"):
        out.append({"bill_length_mm": r["bill_length_mm"], "bill_depth_mm": r["bill_depth_mm"],
                    "flipper_length_mm": r["flipper_length_mm"],
                    "body_mass_g": round(r["body_mass_g"] * mass_factor, 1),
                    "island": island or r["island"], "sex": r["sex"] if isinstance(r["sex"], str) else None})
    return out


def send(url: str, rows: list[dict], batch: int = 1) -> int:
    """POST rows one by one (or in batches); returns how many were answered 200."""
    ok = 0
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        body = chunk[0] if batch == 1 else {"instances": chunk}
        req = urllib.request.Request(url.rstrip("/") + "/predict", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            ok += len(chunk) if resp.status == 200 else 0
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--rows", type=int, default=300)
    p.add_argument("--mass-factor", type=float, default=1.0)
    p.add_argument("--island", default=None)
    p.add_argument("--batch", type=int, default=1)
    args = p.parse_args()
    ok = send(args.url, synthetic_rows(args.rows, args.mass_factor, args.island), args.batch)
    print(f"{ok} of {args.rows} rows answered")
    return 0 if ok == args.rows else 1


if __name__ == "__main__":
    sys.exit(main())
