"""Batch scoring benchmark: `score` from Parquet to Parquet against XGBoost's inplace_predict alone, and its memory.

Usage: python -m bench.score [--rows 1000000] [--big-rows 10000000] [--rounds 3] [--models penguins co2]
       (part of `make bench`)

For each model: a fresh local store holding the shipped bundle (function/shipped_model), and a Parquet file of
`--rows` rows drawn at random from the spec's base data (its request fields, as `retrain_job.data.labelled` loads
them), written by pyarrow with its default row groups. Then, interleaved `--rounds` times so that both see the
same machine:
- `score` end to end in this process (`retrain_job.score.run.score`, one task): the model loaded and verified, the
  file read, every row validated, predicted and written with its id, the shard committed and the manifest written;
- XGBoost's `inplace_predict` alone on the same rows' model matrices, built beforehand (a regressor's members each
  on the rows routed to it), with the booster as the predictor sets it up;
and the best of each is reported, with the ratio of their rates (score's rows/s over inplace_predict's).
Then peak RSS (VmHWM) of `python -m retrain_job.score` as its own process at `--rows` and
`--big-rows` rows (the big file written row group by row group). Prints a table and writes the section
"## Batch scoring (make score)" of bench/RESULTS.md, leaving its other sections as they are.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.results import RESULTS, write_section
from bench.scale import job_env, summary_of
from retrain_job.data.labelled import load_base, request_fields
from retrain_job.publish import copy_stable
from retrain_job.score.columns import Fields, judge
from retrain_job.score.run import ScoreOptions, load_served, score
from shared.predictor import RegressionPredictor
from shared.spec import load_spec
from shared.store import LocalStore

REPO = Path(__file__).resolve().parent.parent
SECTION = "## Batch scoring (make score)"
SHIPPED = REPO / "function" / "shipped_model"
# The targets on this machine: rows/s per model, or this share of inplace_predict's rate
TARGET_ROWS_PER_S = {"penguins": 1_000_000, "co2": 300_000}
TARGET_RATIO = 0.7
TARGET_RSS_MB = 1024
BIG_GROUP_ROWS = 1_000_000  # rows written per row group of the big file


def log(message: str) -> None:
    print(f"[score {time.strftime('%H:%M:%S')}] {message}", flush=True)


def make_input(model: str, rows: int, path: Path, seed: int = 0) -> None:
    """`rows` rows of the spec's base data (its request fields), drawn with replacement, as one Parquet file."""
    spec = load_spec(model)
    base = load_base(spec)[request_fields(spec)]
    rng = np.random.default_rng(seed)
    with pq.ParquetWriter(path, pa.Schema.from_pandas(base, preserve_index=False)) as writer:
        for start in range(0, rows, BIG_GROUP_ROWS):
            drawn = base.iloc[rng.integers(0, len(base), min(BIG_GROUP_ROWS, rows - start))]
            writer.write_table(pa.Table.from_pandas(drawn, preserve_index=False))


def model_matrices(store: Path, model: str, path: Path) -> list[tuple[object, np.ndarray]]:
    """(booster, matrix) pairs whose inplace_predict is the XGBoost work of scoring the file: the rows' model matrix
    for a classifier, each regression member's rows for a regressor (the predictor's routing)."""
    served = load_served(str(store), model, None)
    fields = Fields(served.contract)
    parts = []
    for batch in pq.ParquetFile(path, read_dictionary=list(fields.text_fields)).iter_batches(batch_size=1 << 17):
        judged = judge(fields, batch)
        parts.append(judged.batch.matrix)
    x = np.concatenate(parts)
    predictor = served.predictor
    if not isinstance(predictor, RegressionPredictor):
        return [(predictor.booster._load(), x)]
    chosen = np.full(len(x), len(predictor.members) - 1)
    for i in reversed(range(len(predictor.members) - 1)):
        chosen[~np.isnan(x[:, list(predictor.members[i].needs)]).any(axis=1)] = i
    return [(m.predictor.booster._load(), np.ascontiguousarray(x[chosen == i]))
            for i, m in enumerate(predictor.members)]


def time_inplace(pairs: list[tuple[object, np.ndarray]]) -> tuple[float, float]:
    """Wall and CPU seconds (every thread of this process) of XGBoost alone."""
    started, cpu = time.perf_counter(), time.process_time()
    for booster, x in pairs:
        booster.inplace_predict(x)
    return time.perf_counter() - started, time.process_time() - cpu


def time_score(store: Path, model: str, path: Path, out: Path) -> tuple[float, float, dict]:
    """Wall and CPU seconds of one whole scoring task in this process, and its summary."""
    shutil.rmtree(out, ignore_errors=True)
    started, cpu = time.perf_counter(), time.process_time()
    summary = score(ScoreOptions(model=model, inputs=str(path), output=str(out), store=str(store)))
    return time.perf_counter() - started, time.process_time() - cpu, summary


def peak_rss(store: Path, model: str, path: Path, out: Path, log_file: Path) -> dict:
    """`python -m retrain_job.score` as its own process: its wall time and its peak RSS (VmHWM, polled: wait4's
    ru_maxrss would count this process's memory too, which the child shared until it ran)."""
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    with log_file.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "retrain_job.score", "--model", model, "--input", str(path),
                                 "--output", str(out), "--store", str(store)], stdout=sink, stderr=subprocess.STDOUT,
                                cwd=REPO, env=job_env())
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, _hwm_mb(proc.pid))
            time.sleep(0.01)
    seconds = time.perf_counter() - started
    lines = [ln for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()]
    summary = summary_of(lines[-1] if lines else "")
    return {"seconds": seconds, "rss_mb": peak, "exit": proc.returncode, "rows_in": summary.get("rows_in"),
            "rows_scored": summary.get("rows_scored")}


def _hwm_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measure(model: str, work: Path, rows: int, big_rows: int, rounds: int) -> dict:
    store = work / "store"
    if not (store / "models" / model).is_dir():
        copy_stable(LocalStore(SHIPPED), LocalStore(store), model)
    path = work / f"{model}-{rows}.parquet"
    if not path.exists():
        log(f"writing {rows:,} {model} rows to {path}")
        make_input(model, rows, path)
    pairs = model_matrices(store, model, path)
    time_inplace(pairs)  # the first call sets XGBoost up
    inplace, scored, inplace_cpu, scored_cpu, summary, loads = [], [], [], [], {}, []
    for r in range(rounds):
        seconds, cpu = time_inplace(pairs)
        inplace.append(seconds)
        inplace_cpu.append(cpu)
        seconds, cpu, summary = time_score(store, model, path, work / "out")
        scored.append(seconds)
        scored_cpu.append(cpu)
        loads.append(os.getloadavg()[0])
        log(f"{model} round {r + 1}: score {rows / seconds:,.0f} rows/s ({cpu:.2f} CPU s), inplace_predict "
            f"{rows / inplace[-1]:,.0f} rows/s ({inplace_cpu[-1]:.2f} CPU s) (load {loads[-1]:.1f})")
    del pairs
    result = {"model": model, "rows": rows, "score_s": min(scored), "inplace_s": min(inplace),
              "score_cpu_s": min(scored_cpu), "inplace_cpu_s": min(inplace_cpu), "loads": loads,
              "score_runs": scored, "inplace_runs": inplace, "summary": summary,
              "file_mb": path.stat().st_size / 2**20}
    result["ratio"] = result["inplace_s"] / result["score_s"]
    result["cpu_ratio"] = result["inplace_cpu_s"] / result["score_cpu_s"]
    result["rss"] = {rows: peak_rss(store, model, path, work / "out", work / f"{model}-{rows}.log")}
    if big_rows:
        big = work / f"{model}-{big_rows}.parquet"
        if not big.exists():
            log(f"writing {big_rows:,} {model} rows to {big}")
            make_input(model, big_rows, big, seed=1)
        result["rss"][big_rows] = peak_rss(store, model, big, work / "out", work / f"{model}-{big_rows}.log")
        big.unlink()
    shutil.rmtree(work / "out", ignore_errors=True)
    return result


def report(results: list[dict], argv: list[str]) -> str:
    cores = os.cpu_count()
    lines = [
        SECTION, "",
        f"`python -m bench.score {' '.join(argv)}`".replace("  ", " ").replace(" `", "`") + f" on {cores} cores "
        f"({platform.processor() or platform.machine()}, Python {platform.python_version()}), "
        f"{time.strftime('%Y-%m-%d %H:%M')}. Each model's shipped bundle; a Parquet file of its base data's rows "
        "drawn at random (pyarrow's default row groups). `score` is the whole task in process (model loaded and "
        "verified, the file read, every row validated by the function's validator, predicted, written with its id "
        "and warnings, the shard committed, the manifest written); `inplace_predict` is XGBoost alone on the same "
        "rows' model matrices, built beforehand (a regressor's members each on their rows). Best of the rounds, "
        "interleaved; the ratio is score's rate over inplace_predict's. Peak RSS is `python -m retrain_job.score` "
        "as its own process (its VmHWM), imports and all.", "",
        "| model | rows | score rows/s | inplace_predict rows/s | ratio | target | CPU s: score / inplace (ratio) "
        "| peak RSS | runs (s): score / inplace |",
        "|---|---:|---:|---:|---:|---|---|---|---|",
    ]
    for r in results:
        rate, bare = r["rows"] / r["score_s"], r["rows"] / r["inplace_s"]
        target = TARGET_ROWS_PER_S[r["model"]]
        verdict = "PASS" if rate >= target or r["ratio"] >= TARGET_RATIO else "FAIL"
        runs = ", ".join(f"{s:.2f}" for s in r["score_runs"]) + " / " + ", ".join(f"{s:.2f}" for s in r["inplace_runs"])
        rss = ", ".join(f"{m['rss_mb']:.0f} MB at {n / 1e6:g} M" for n, m in r["rss"].items())
        cpu = f"{r['score_cpu_s']:.2f} / {r['inplace_cpu_s']:.2f} ({r['cpu_ratio']:.2f})"
        lines.append(f"| {r['model']} | {r['rows']:,} | {rate:,.0f} | {bare:,.0f} | {r['ratio']:.2f} | "
                     f"{verdict}: {target / 1e6:g} M rows/s or {TARGET_RATIO}x | {cpu} | {rss} | {runs} |")
    lines += ["", "The CPU seconds are every thread of the process (`time.process_time`): what the work costs whatever "
              f"else runs on the machine. The 1-minute load average after each round ({cores} cores: above that, "
              "other processes shared them and the wall times are inflated): "
              + "; ".join(f"{r['model']} " + ", ".join(f"{v:.1f}" for v in r["loads"]) for r in results) + ".", ""]
    for r in results:
        for n, m in r["rss"].items():
            ok = m["exit"] == 0 and m["rows_scored"] == n and m["rss_mb"] <= TARGET_RSS_MB
            lines.append(f"- {r['model']} at {n:,} rows: {m['rss_mb']:.0f} MB peak RSS, {m['seconds']:.1f} s as a "
                         f"process ({m['rows_scored']} rows scored, exit {m['exit']}): "
                         f"{'PASS' if ok else 'FAIL'} (at most {TARGET_RSS_MB} MB)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m bench.score", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--big-rows", type=int, default=10_000_000, help="the memory check's rows (0: none)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--models", nargs="+", default=["penguins", "co2"])
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "score")
    p.add_argument("--no-results", action="store_true", help="print the table, leave bench/RESULTS.md alone")
    args = p.parse_args(argv)
    os.environ["LOG_LEVEL"] = "WARNING"
    results = []
    for model in args.models:
        work = args.out.resolve() / model
        work.mkdir(parents=True, exist_ok=True)
        results.append(measure(model, work, args.rows, args.big_rows, args.rounds))
        (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    section = report(results, argv)
    print("\n" + section)
    if not args.no_results:
        write_section(section, SECTION)
        log(f"wrote the section {SECTION!r} of {RESULTS}")
    failed = any(r["rows"] / r["score_s"] < TARGET_ROWS_PER_S[r["model"]] and r["ratio"] < TARGET_RATIO
                 or any(m["exit"] != 0 or m["rss_mb"] > TARGET_RSS_MB for m in r["rss"].values()) for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
