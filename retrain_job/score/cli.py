"""`python -m retrain_job score`: score files of rows with a model as the function serves it.

    python -m retrain_job score --model NAME --input PATH_OR_GLOB --output DIR [--version V] [--id-columns a,b] [--log]

The input is a Parquet or CSV file, a folder of them, or a glob (local or gs://); the output folder (local or gs://)
receives per task `part-i-of-n.parquet` (the answers), `errors-i-of-n.parquet` (every refused row's file, row,
field and message) and a marker, and `_SUCCESS` once every task's shard is in. On Cloud Run Jobs each task takes its
share of the input (CLOUD_RUN_TASK_INDEX of CLOUD_RUN_TASK_COUNT). Progress goes to the log (stderr); the last
output line is the JSON summary: rows in, scored and rejected. Exit 0 when the shard is committed, 1 on failure,
2 on a bad flag or environment setting.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from retrain_job.score.run import CHUNK_ROWS, ScoreError, ScoreOptions, score
from shared.settings import JOB, configure_logging, exit_on_bad_settings

PROG = "python -m retrain_job score"


def parse_args(argv: list[str], settings) -> argparse.Namespace:
    """The flags; --store, --model and --log-prefix default to their settings (shared/settings.py)."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "--model-name", dest="model", default=settings.model_name,
                   help="the model to score with (MODEL_NAME)")
    p.add_argument("--input", required=True, help="a Parquet or CSV file, a folder of them, or a glob; local or gs://")
    p.add_argument("--output", required=True, help="the folder of the answers (local or gs://)")
    p.add_argument("--version", help="score with this version (default: the serving pointer's stable)")
    p.add_argument("--id-columns", default="", type=_names,
                   help="input columns copied into the output beside each answer, comma-separated")
    p.add_argument("--log", action="store_true",
                   help="also log the scored rows as prediction log lines (source \"batch\") for the monitor: "
                        "beside the sink's files, or on stdout for Cloud Logging's sinks with LOG_ENGINE=bigquery")
    p.add_argument("--store", default=settings.model_store, help="where the bundles are (MODEL_STORE)")
    p.add_argument("--log-prefix", default=settings.log_prefix,
                   help="where the prediction log lines go in the store (LOG_PREFIX)")
    p.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.chunk_rows < 1:
        p.error("--chunk-rows must be at least 1")
    return args


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError("a column is named twice")
    return names


def main(argv: list[str] | None = None) -> int:
    """Score this task's shard; the summary is the last output line."""
    settings = exit_on_bad_settings(PROG, JOB)
    args = parse_args(sys.argv[1:] if argv is None else argv, settings)
    configure_logging(settings.log_level)
    opts = ScoreOptions(model=args.model, inputs=args.input, output=args.output, store=args.store,
                        version=args.version, id_columns=args.id_columns, log=args.log, log_prefix=args.log_prefix,
                        log_engine=settings.log_engine,
                        task_index=settings.task_index, task_count=settings.task_count, job=settings.job_name,
                        chunk_rows=args.chunk_rows)
    failed = {"command": "score", "decision": "failed", "model": args.model, "task": settings.task_index,
              "tasks": settings.task_count}
    try:
        summary = score(opts)
    except ScoreError as exc:  # the user's to fix: the message says what, no traceback
        logging.error("scoring with %s failed: %s", args.model, exc)
        print(json.dumps({**failed, "error": str(exc)}))
        return 1
    except Exception as exc:
        logging.exception("scoring with %s failed", args.model)
        print(json.dumps({**failed, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
