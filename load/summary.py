"""Markdown table of the last `make load` run of each profile (from load/out/<profile>/stats_stats.csv)."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
PROFILES = ("baseline", "normal", "stress", "spike", "10x")


def main() -> int:
    print("| profile | requests | failures | req/s | warm single p50 / p95 / p99 (ms) | batch p50 / p99 (ms) "
          "| cold requests (median ms) |")
    print("|---|---|---|---|---|---|---|")
    for profile in PROFILES:
        path = OUT / profile / "stats_stats.csv"
        if not path.exists():
            continue
        rows = {r["Name"]: r for r in csv.DictReader(path.open())}
        total, single, batch = rows["Aggregated"], rows.get("predict single", {}), rows.get("predict batch", {})
        cold = [r for name, r in rows.items() if name.endswith("(cold)")]
        cold_count = sum(int(r["Request Count"]) for r in cold)
        cold_median = max((float(r["50%"]) for r in cold), default=0)
        print(f"| {profile} | {total['Request Count']} | {total['Failure Count']} | "
              f"{float(total['Requests/s']):.0f} | {single.get('50%', '-')} / {single.get('95%', '-')} / "
              f"{single.get('99%', '-')} | {batch.get('50%', '-')} / {batch.get('99%', '-')} | "
              f"{cold_count} ({cold_median:.0f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
