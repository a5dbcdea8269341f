"""`python -m retrain_job [run | promote-canary | rollback-canary | rollback]`: the Cloud Run Job's command.

`run` (the default) trains, gates, publishes and reports; the last output line is a JSON summary.
Exit 0 on success or when there is nothing to promote, 1 on failure, 2 on a bad flag or environment setting
(shared/settings.py: one line per bad variable).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid

from retrain_job.drift import DriftThresholds
from retrain_job.gate import Tolerances
from retrain_job.job import JobOptions, run
from retrain_job.metrics import MetricPoint, MetricsTarget, write_metrics
from retrain_job.publish import PointerRace, resolve_canary, rollback
from retrain_job.tasks import Task
from shared.settings import JOB, Settings, configure_logging, exit_on_bad_settings
from shared.store import open_store

PROG = "python -m retrain_job"


def parse_args(argv: list[str], settings: Settings | None = None) -> argparse.Namespace:
    """The command and its flags; each flag's default is its environment setting (see shared/settings.py)."""
    s = settings if settings is not None else Settings.from_env(reader=JOB)
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", default="run",
                   choices=["run", "promote-canary", "rollback-canary", "rollback"])
    p.add_argument("--store", default=s.model_store,
                   help="gs://bucket/prefix or a local directory (MODEL_STORE)")
    p.add_argument("--model-name", default=s.model_name)
    p.add_argument("--data-prefix", default=s.data_prefix,
                   help="where new labelled CSV files are read from (DATA_PREFIX)")
    p.add_argument("--log-prefix", default=s.log_prefix,
                   help="where the prediction log sink writes (LOG_PREFIX; empty for a sink at the bucket root)")
    p.add_argument("--log-days", type=int, default=s.log_days)
    p.add_argument("--canary-percent", type=float, default=s.canary_percent,
                   help="publish as a canary taking this share of traffic (0: straight to stable)")
    p.add_argument("--dry-run", action="store_true", default=s.dry_run,
                   help="train, gate and report; publish nothing")
    p.add_argument("--if-no-model", action="store_true", help="do nothing if a model is already published")
    p.add_argument("--tol-accuracy", type=float, default=s.tol_accuracy)
    p.add_argument("--tol-macro-f1", type=float, default=s.tol_macro_f1)
    p.add_argument("--tol-log-loss", type=float, default=s.tol_log_loss)
    p.add_argument("--drift-share", type=float, default=s.drift_share)
    p.add_argument("--drift-min-rows", type=int, default=s.drift_min_rows)
    p.add_argument("--min-labelled-for-review", type=int, default=s.min_labelled_for_review)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run one command; a bad environment setting ends it at once (one line per variable, exit 2)."""
    settings = exit_on_bad_settings(PROG, JOB)
    args = parse_args(sys.argv[1:] if argv is None else argv, settings)
    configure_logging(settings.log_level)
    store = open_store(args.store)
    target = MetricsTarget.from_env(settings)
    try:
        if args.command == "run":
            opts = JobOptions(
                model_name=args.model_name, data_prefix=args.data_prefix, log_prefix=args.log_prefix,
                log_days=args.log_days, canary_percent=args.canary_percent, dry_run=args.dry_run,
                if_no_model=args.if_no_model, min_labelled_for_review=args.min_labelled_for_review,
                tolerances=Tolerances(args.tol_accuracy, args.tol_macro_f1, args.tol_log_loss),
                thresholds=DriftThresholds(share=args.drift_share, min_rows=args.drift_min_rows),
                task=Task.from_env(uuid.uuid4().hex[:12], settings), metrics=target)
            summary = run(store, opts)
        else:
            if args.command == "rollback":
                published = rollback(store, args.model_name)
            else:
                published = resolve_canary(store, args.model_name, accept=args.command == "promote-canary")
            summary = {"decision": args.command, "before": vars(published.before), "after": vars(published.after)}
    except PointerRace as exc:
        print(json.dumps({"decision": "lost-race", "reason": str(exc)}))
        return 0
    except Exception as exc:
        logging.exception("retraining failed")
        write_metrics([MetricPoint("job_success", 0.0)], target)
        print(json.dumps({"decision": "failed", "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
