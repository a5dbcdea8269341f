"""`python -m retrain_job [run | promote-canary | rollback-canary | rollback]`: the Cloud Run Job's command.

`run` (the default) trains, gates, publishes and reports; the last output line is a JSON summary.
Exit 0 on success or when there is nothing to promote, 1 on failure.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import uuid

from retrain_job.drift import DriftThresholds
from retrain_job.gate import Tolerances
from retrain_job.job import JobOptions, run
from retrain_job.metrics import MetricPoint, MetricsTarget, write_metrics
from retrain_job.publish import PointerRace, resolve_canary, rollback
from retrain_job.tasks import Task
from shared.settings import Settings
from shared.store import open_store


def parse_args(argv: list[str]) -> argparse.Namespace:
    settings = Settings.from_env()
    env = os.environ
    p = argparse.ArgumentParser(prog="python -m retrain_job", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", default="run",
                   choices=["run", "promote-canary", "rollback-canary", "rollback"])
    p.add_argument("--store", default=settings.model_store,
                   help="gs://bucket/prefix or a local directory (MODEL_STORE)")
    p.add_argument("--model-name", default=settings.model_name)
    p.add_argument("--data-prefix", default=env.get("DATA_PREFIX", "data/labelled/"),
                   help="where new labelled CSV files are read from (DATA_PREFIX)")
    p.add_argument("--log-prefix", default=settings.log_prefix,
                   help="where the prediction log sink writes (LOG_PREFIX; empty for a sink at the bucket root)")
    p.add_argument("--log-days", type=int, default=int(env.get("LOG_DAYS", 7)))
    p.add_argument("--canary-percent", type=float, default=float(env.get("CANARY_PERCENT", 0)),
                   help="publish as a canary taking this share of traffic (0: straight to stable)")
    p.add_argument("--dry-run", action="store_true", default=env.get("DRY_RUN") == "1",
                   help="train, gate and report; publish nothing")
    p.add_argument("--if-no-model", action="store_true", help="do nothing if a model is already published")
    p.add_argument("--tol-accuracy", type=float, default=float(env.get("TOL_ACCURACY", Tolerances.accuracy)))
    p.add_argument("--tol-macro-f1", type=float, default=float(env.get("TOL_MACRO_F1", Tolerances.macro_f1)))
    p.add_argument("--tol-log-loss", type=float, default=float(env.get("TOL_LOG_LOSS", Tolerances.log_loss)))
    p.add_argument("--drift-share", type=float, default=float(env.get("DRIFT_SHARE", DriftThresholds.share)))
    p.add_argument("--drift-min-rows", type=int, default=int(env.get("DRIFT_MIN_ROWS", DriftThresholds.min_rows)))
    p.add_argument("--min-labelled-for-review", type=int, default=int(env.get("MIN_LABELLED_FOR_REVIEW", 30)))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    store = open_store(args.store)
    target = MetricsTarget.from_env()
    try:
        if args.command == "run":
            opts = JobOptions(
                model_name=args.model_name, data_prefix=args.data_prefix, log_prefix=args.log_prefix,
                log_days=args.log_days, canary_percent=args.canary_percent, dry_run=args.dry_run,
                if_no_model=args.if_no_model, min_labelled_for_review=args.min_labelled_for_review,
                tolerances=Tolerances(args.tol_accuracy, args.tol_macro_f1, args.tol_log_loss),
                thresholds=DriftThresholds(share=args.drift_share, min_rows=args.drift_min_rows),
                task=Task.from_env(default_run_id=uuid.uuid4().hex[:12]), metrics=target)
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
