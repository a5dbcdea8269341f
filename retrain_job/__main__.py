"""`python -m retrain_job`: the Cloud Run Job's command. The last output line is a JSON summary."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from retrain_job.gate import Tolerances
from retrain_job.job import JobOptions, run
from shared.settings import Settings
from shared.store import open_store


def parse_args(argv: list[str]) -> argparse.Namespace:
    settings = Settings.from_env()
    env = os.environ
    p = argparse.ArgumentParser(prog="python -m retrain_job", description=__doc__)
    p.add_argument("--store", default=settings.model_store,
                   help="gs://bucket/prefix or a local directory (MODEL_STORE)")
    p.add_argument("--model-name", default=settings.model_name)
    p.add_argument("--canary-percent", type=float, default=float(env.get("CANARY_PERCENT", 0)),
                   help="publish as a canary taking this share of traffic (0: straight to stable)")
    p.add_argument("--dry-run", action="store_true", default=env.get("DRY_RUN") == "1",
                   help="train and gate, publish nothing")
    p.add_argument("--if-no-model", action="store_true", help="do nothing if a model is already published")
    p.add_argument("--tol-accuracy", type=float, default=Tolerances.accuracy)
    p.add_argument("--tol-macro-f1", type=float, default=Tolerances.macro_f1)
    p.add_argument("--tol-log-loss", type=float, default=Tolerances.log_loss)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    opts = JobOptions(model_name=args.model_name, canary_percent=args.canary_percent, dry_run=args.dry_run,
                      if_no_model=args.if_no_model,
                      tolerances=Tolerances(args.tol_accuracy, args.tol_macro_f1, args.tol_log_loss))
    try:
        summary = run(open_store(args.store), opts)
    except Exception as exc:
        logging.exception("retraining failed")
        print(json.dumps({"decision": "failed", "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
