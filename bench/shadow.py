"""Shadow: the request latency a shadow version adds, at the production settings.

Usage: python -m bench.shadow [--seconds 5] [--rounds 3] [--no-results]

Two servers of our function at the production settings (bench/run.py: WORKERS=1 THREADS=1, the model read from
the GCS emulator), on the same shipped penguin model; the second's pointer also names a shadow scoring every
request (the same trees under another version: a whole second prediction and its log rows per request). wrk drives
both with the same one-penguin body at c1 and c16, levels interleaved, `--rounds` times; the medians of p50 and
p99 and their ratio are printed, with the shadow's counts from /health (every request scored, or dropped when its
queue was full), and written to their own section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import urllib.request

from bench.results import write_section
from bench.run import GUNICORN, OUT, REPO, SHIPPED, Server, _settings, ff_server, wrk
from retrain_job.publish import copy_stable, promote, stage
from shared.bundle import make_bundle, read_bundle
from shared.pointer import read_pointer
from shared.store import GcsStore, LocalStore
from testbed.servers import GcsEmulator

SECTION = "## Shadow: added request latency"
MODEL = "penguins"
SHADOW_SUFFIX = "-shadow"  # the shadow's version: the stable one's, renamed
LIMIT = 1.10  # the bound on shadowed over plain latency, p50 and p99
LEVELS = (1, 16)


def _as_shadow(store: GcsStore) -> str:
    """Stage the stable bundle again under another version and name it the shadow; returns that version."""
    pointer, _ = read_pointer(store, MODEL)
    bundle = read_bundle(store, MODEL, pointer.stable)
    version = pointer.stable + SHADOW_SUFFIX
    sections = {k: v for k, v in bundle.manifest.items() if k not in {"format", "version", "created_at", "files"}}
    stage(store, MODEL, make_bundle(version, bundle.files, **sections))
    promote(store, MODEL, version, shadow_percent=100.0)
    return version


def _shadow_health(server: Server) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=10) as resp:
        return json.loads(resp.read())["models"][MODEL]["shadow"]


def measure(seconds: int, rounds: int) -> dict:
    """wrk's p50 and p99 (ms) per level and round for the plain and the shadowed server, and the shadow's counts."""
    load = os.getloadavg()[0]
    emulator = GcsEmulator().start()
    try:
        gcs = {"STORAGE_EMULATOR_HOST": emulator.url}
        os.environ.update(gcs)  # this process's stores too
        for bucket in ("bench-plain", "bench-shadow"):
            emulator.create_bucket(bucket)
            copy_stable(LocalStore(SHIPPED), GcsStore(f"gs://{bucket}"), MODEL)
        version = _as_shadow(GcsStore("gs://bench-shadow"))
        prod = GUNICORN[""]
        main_py = REPO / "function" / "main.py"
        plain = ff_server("plain", main_py, {**prod, **gcs, "MODEL_STORE": "gs://bench-plain", "MODELS": MODEL})
        shadowed = ff_server("shadowed", main_py, {**prod, **gcs, "MODEL_STORE": "gs://bench-shadow", "MODELS": MODEL})
        servers = (plain, shadowed)
        results: dict = {s.name: {c: [] for c in LEVELS} for s in servers}
        try:
            for s in servers:
                s.start()
            for _ in range(rounds):
                for c in LEVELS:
                    for s in servers:
                        results[s.name][c].append(wrk(s, c, seconds))
            counts = _shadow_health(shadowed)
        finally:
            for s in servers:
                s.stop()
    finally:
        emulator.stop()
    return {"results": results, "shadow": counts, "version": version, "settings": _settings(prod), "load": load}


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report(measured: dict, argv: list[str], seconds: int, rounds: int) -> str:
    """The section: settings, one row per level with both servers' p50 and p99 and the ratios, and the verdicts."""
    results, counts = measured["results"], measured["shadow"]
    rows, verdicts = [], []
    for c in LEVELS:
        plain, shadowed = results["plain"][c], results["shadowed"][c]
        ratios = {key: _median(shadowed, key) / _median(plain, key) for key in ("p50", "p99")}
        rows.append(f"| c{c} | {_median(plain, 'rps'):.0f} / {_median(shadowed, 'rps'):.0f} | "
                    f"{_median(plain, 'p50'):.3f} / {_median(shadowed, 'p50'):.3f} | {ratios['p50']:.3f} | "
                    f"{_median(plain, 'p99'):.3f} / {_median(shadowed, 'p99'):.3f} | {ratios['p99']:.3f} |")
        verdicts += [f"- c{c} {key}: {ratio:.3f} x, {'PASS' if ratio <= LIMIT else 'FAIL'} (<= {LIMIT:g})"
                     for key, ratio in ratios.items()]
    errors = sum(r["errors"] for runs in results.values() for level in runs.values() for r in level)
    command = " ".join(["python -m bench.shadow", *argv])
    return "\n".join([
        SECTION, "",
        f"Command: `{command}`. Two servers of our function at the production settings ({measured['settings']}, "
        f"the model from the GCS emulator), serving the shipped {MODEL} model; the second's pointer also names a "
        f"shadow (`{measured['version']}`: the same trees under another version) at 100 % of requests. wrk "
        f"(bench/run.py's settings) sends both the same one-penguin body, {seconds} s per run, levels interleaved "
        f"across the two servers, {rounds} rounds, medians shown. Non-2xx responses: {errors}. The 1-minute load "
        f"average as it started: {measured['load']:.1f} ({os.cpu_count()} cores: above that, other work shared "
        "them and the figures are noisier).", "",
        "| level | req/s plain / shadowed | p50 (ms) plain / shadowed | p50 ratio | p99 (ms) plain / shadowed | "
        "p99 ratio |",
        "|---|---|---|---|---|---|",
        *rows, "",
        *verdicts, "",
        f"The shadow's counts in /health after the runs: {counts['scored']:,} requests scored, {counts['dropped']:,} "
        f"dropped (queue full), {counts['failed']:,} failed; state {counts['state']}.",
    ]) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m bench.shadow", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-results", action="store_true", help="print the section, leave bench/RESULTS.md alone")
    args = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    measured = measure(args.seconds, args.rounds)
    (OUT / "shadow.json").write_text(json.dumps(measured, indent=1))
    section = report(measured, argv, args.seconds, args.rounds)
    print(section)
    if not args.no_results:
        write_section(section, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
