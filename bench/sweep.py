"""Which gunicorn settings to deploy with: our function under each WORKERS x THREADS, driven by wrk.

Usage: python -m bench.sweep [--seconds 5] [--rounds 2]   (or `make sweep`)

Prints a markdown table of requests/s and p99 at concurrency 1, 4 and 16, and the worker's peak RSS,
for every setting; the README's "Production settings" table comes from it. Settings are interleaved
across rounds and medians reported, as in bench/run.py, whose Server and wrk helpers this reuses.
"""
from __future__ import annotations

import argparse
import statistics
import sys

from bench.run import OUT, REPO, Server, ff_server, wrk

SETTINGS = ((1, 1), (1, 2), (1, 8), (2, 1), (2, 2), (2, 4))  # (WORKERS, THREADS); 1 x 8 is the framework's
CONNECTIONS = (1, 4, 16)


def server(workers: int, threads: int) -> Server:
    """Our function from the shipped model in a local store, under the given gunicorn settings."""
    return ff_server(f"{workers} x {threads}", REPO / "function" / "main.py",
                     {"WORKERS": str(workers), "THREADS": str(threads),
                      "MODEL_STORE": str(REPO / "function" / "shipped_model")})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    fleet = [server(w, t) for w, t in SETTINGS]
    runs: dict[str, dict[int, list[dict]]] = {s.name: {c: [] for c in CONNECTIONS} for s in fleet}
    rss: dict[str, float] = {}
    try:
        for s in fleet:
            s.start()
        for _ in range(args.rounds):
            for c in CONNECTIONS:
                for s in fleet:
                    runs[s.name][c].append(wrk(s, c, args.seconds))
        rss = {s.name: s.rss()[1] for s in fleet}
    finally:
        for s in fleet:
            s.stop()
    header = " | ".join(f"c{c} req/s | c{c} p99 (ms)" for c in CONNECTIONS)
    print(f"| WORKERS x THREADS | {header} | peak RSS of a worker (MiB) |")
    print("|---" * (2 + 2 * len(CONNECTIONS)) + "|")
    for name, by_c in runs.items():
        cells = " | ".join(f"{statistics.median(r['rps'] for r in by_c[c]):,.0f} | "
                           f"{statistics.median(r['p99'] for r in by_c[c]):.1f}" for c in CONNECTIONS)
        print(f"| {name} | {cells} | {rss[name]:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
