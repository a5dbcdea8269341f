"""`python -m retrain_job [run | monitor | promote-canary | rollback-canary | rollback | promote-shadow |
drop-shadow | init | score | card]`: the Cloud Run Job's command, and the new model's first step.

`run` (the default) trains, gates, publishes and reports one model (`--model`, default the MODEL_NAME
setting), or every model with a spec (`--all-models`, one summary line each, then one line naming every
model's decision); the last output line is a JSON summary. The gate's tolerances are the spec's `[gate]`
unless a `--tol-*` flag or its TOL_* setting says otherwise. `--shadow` publishes a passing candidate as the
shadow (scored beside stable on `--shadow-percent` of live requests, never answering); `--shadow-if-close`
shadows a rejected candidate the gate finds close (retrain_job/train/gate.py, CLOSE_FACTOR).
`promote-shadow` makes the shadow stable unless the monitor's latest report measured it worse (`--force`
promotes it anyway); `drop-shadow` stops shadowing. `promote-canary`, `rollback-canary` and `rollback` move
the canary and the stable version.
`monitor` measures each served version's quality from the truth fed back for its predictions, judges a canary
on those live labels (promote, roll back, or leave it: `--no-canary-decision` and `--dry-run` only report),
writes the monitor report and the `live_*` metrics (retrain_job/monitor/run.py); `--model` or `--all-models` alike.
`init --csv PATH --target COLUMN` writes specs/<name>/ from a CSV for review (retrain_job/init.py).
`score ...` scores files in batch; its flags are its own (`python -m retrain_job score --help`, retrain_job/score/).
`erase --model M --field F --value V` removes one person's rows and feedback from the logs (retrain_job/erase.py).
`card [--model NAME | --all-models] [--version V]` writes or refreshes the model cards of the published versions
(retrain_job/card/cli.py); a run writes them after each publish, the monitor after each report.
A spec or data problem is reported as its own message (the key, field, rows and what to fix), never as a raw
library error.
Exit 0 on success or when there is nothing to promote, 1 on failure, 2 on a bad flag or environment setting
(shared/settings.py: one line per bad variable).
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from retrain_job.card.cli import main as card_main
from retrain_job.data.labelled import DataError
from retrain_job.drift.stats import DriftThresholds
from retrain_job.init import run_init
from retrain_job.metrics import MetricPoint, MetricsTarget, write_metrics
from retrain_job.monitor.run import MonitorOptions, run_monitor
from retrain_job.publish import (
    PointerRace,
    Published,
    ShadowRefused,
    drop_shadow,
    promote_shadow,
    resolve_canary,
    rollback,
)
from retrain_job.train.gate import Tolerances
from retrain_job.train.tasks import Task
from shared.settings import JOB, Settings, configure_logging, exit_on_bad_settings
from shared.spec import SpecError, spec_names
from shared.store import Store, open_store

if TYPE_CHECKING:  # training (scikit-learn, the search) is imported by the commands that train, not by the others
    from retrain_job.train.run import JobOptions

PROG = "python -m retrain_job"
SCORE = "score"  # batch scoring: its own command line (retrain_job/score/cli.py)
# the commands that only move the serving pointer, each: store, model, --force -> what the pointer said
POINTER_COMMANDS: dict[str, Callable[[Store, str, bool], Published]] = {
    "promote-canary": lambda store, name, force: resolve_canary(store, name, accept=True),
    "rollback-canary": lambda store, name, force: resolve_canary(store, name, accept=False),
    "rollback": lambda store, name, force: rollback(store, name),
    "promote-shadow": lambda store, name, force: promote_shadow(store, name, force=force),
    "drop-shadow": lambda store, name, force: drop_shadow(store, name),
}
# the gate's tolerance flags: set neither a flag nor its setting, and the spec's [gate] value applies
TOLERANCE_FLAGS = {"tol_accuracy": "TOL_ACCURACY", "tol_macro_f1": "TOL_MACRO_F1", "tol_log_loss": "TOL_LOG_LOSS",
                   "tol_rmse": "TOL_RMSE"}

# The cyclic collector's thresholds (CPython's: 700, 10, 10): a retrain holds a million joined feedback rows and
# their training records, none of them cyclic, and the default passes over them cost seconds (bench/RESULTS.md,
# make scale)
GC_THRESHOLDS = (50_000, 20, 20)


def parse_args(argv: list[str], settings: Settings | None = None) -> argparse.Namespace:
    """The command and its flags; each flag's default is its environment setting (see shared/settings.py)."""
    s = settings if settings is not None else Settings.from_env(reader=JOB)
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", default="run",
                   choices=["run", "monitor", *POINTER_COMMANDS, "init"])
    p.add_argument("--store", default=s.model_store,
                   help="gs://bucket/prefix or a local directory (MODEL_STORE)")
    p.add_argument("--model", "--model-name", dest="model", default=s.model_name, choices=spec_names(),
                   help="the model to train, by its spec's name (MODEL_NAME)")
    p.add_argument("--all-models", action="store_true",
                   help="run once per model with a spec, in name order (with --if-no-model: those without one)")
    p.add_argument("--data-prefix", default=s.data_prefix,
                   help="where new labelled CSV files are read from (DATA_PREFIX)")
    p.add_argument("--log-prefix", default=s.log_prefix,
                   help="where the prediction log sink writes (LOG_PREFIX; empty for a sink at the bucket root)")
    p.add_argument("--log-engine", choices=("duckdb", "bigquery"), type=str.lower, default=s.log_engine.lower(),
                   help="where the logs are queried: DuckDB over the sink's files, or BigQuery (LOG_ENGINE)")
    p.add_argument("--log-table", default=s.log_table,
                   help="the BigQuery sink table, project.dataset.run_googleapis_com_stdout (LOG_TABLE)")
    p.add_argument("--log-days", type=int, default=s.log_days)
    p.add_argument("--feedback-days", type=int, default=s.feedback_days,
                   help="days of feedback the run learns from (FEEDBACK_DAYS; 0: none; default: --log-days)")
    p.add_argument("--canary-percent", type=float, default=s.canary_percent,
                   help="publish as a canary taking this share of traffic (0: straight to stable)")
    p.add_argument("--shadow", action="store_true", default=s.shadow,
                   help="publish a candidate that passes the gate as the shadow, not stable or canary (SHADOW)")
    p.add_argument("--shadow-if-close", action="store_true", default=s.shadow_if_close,
                   help="publish a candidate the gate rejects but finds close as the shadow (SHADOW_IF_CLOSE)")
    p.add_argument("--shadow-percent", type=float, default=s.shadow_percent,
                   help="share of requests a published shadow scores (SHADOW_PERCENT)")
    p.add_argument("--force", action="store_true",
                   help="promote-shadow: promote even a shadow the monitor measured worse than stable")
    p.add_argument("--dry-run", action="store_true", default=s.dry_run,
                   help="train, gate and report; publish nothing")
    p.add_argument("--if-no-model", action="store_true", help="do nothing if a model is already published")
    for flag, env in TOLERANCE_FLAGS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", type=float, default=getattr(s, flag),
                       help=f"override the spec's gate tolerance ({env}; default: the spec's)")
    p.add_argument("--drift-share", type=float, default=s.drift_share)
    p.add_argument("--drift-min-rows", type=int, default=s.drift_min_rows)
    p.add_argument("--min-labelled-for-review", type=int, default=s.min_labelled_for_review)
    monitor = p.add_argument_group("monitor", "flags of `monitor` (with --model/--all-models, --store, "
                                              "--log-prefix, --dry-run and the --tol-* flags above)")
    monitor.add_argument("--feedback-hours", type=float, default=s.monitor_feedback_hours,
                         help="hours of feedback to join (MONITOR_FEEDBACK_HOURS)")
    monitor.add_argument("--prediction-days", type=float, default=s.monitor_prediction_days,
                         help="days before the feedback window its predictions may be (MONITOR_PREDICTION_DAYS)")
    monitor.add_argument("--min-labels", type=int, default=s.monitor_min_labels,
                         help="labels a version needs for a verdict, realised metrics and a canary decision "
                              "(MONITOR_MIN_LABELS)")
    monitor.add_argument("--no-canary-decision", dest="canary_decision", action="store_false",
                         help="judge the canary on live labels and report it, but leave the pointer alone")
    init = p.add_argument_group("init", "flags of `init`: write specs/<name>/ from a CSV for review (never "
                                        "overwriting; retrain_job/init.py)")
    init.add_argument("--csv", help="the CSV file of the new model's data (copied into its spec folder)")
    init.add_argument("--target", help="the column to predict (its header)")
    init.add_argument("--name", help="the new model's name (default: the CSV's stem, its words joined by '-')")
    init.add_argument("--task", choices=["binary", "multiclass", "regression"],
                      help="the task (default: inferred from the target)")
    init.add_argument("--specs-dir", type=Path, default=None,
                      help="where spec folders are written (default: the project's specs/, or SPECS_DIR)")
    return p.parse_args(argv)


def job_options(args: argparse.Namespace, settings: Settings, target: MetricsTarget) -> JobOptions:
    """The run's options from the parsed flags (the task and the metrics target from the settings)."""
    from retrain_job.train.run import JobOptions  # noqa: PLC0415 - see TYPE_CHECKING above

    return JobOptions(
        model_name=args.model, data_prefix=args.data_prefix, log_prefix=args.log_prefix, log_days=args.log_days,
        log_engine=args.log_engine, log_table=args.log_table,
        feedback_days=args.feedback_days,
        canary_percent=args.canary_percent, shadow=args.shadow, shadow_if_close=args.shadow_if_close,
        shadow_percent=args.shadow_percent, dry_run=args.dry_run, if_no_model=args.if_no_model,
        min_labelled_for_review=args.min_labelled_for_review,
        tolerances=Tolerances(args.tol_accuracy, args.tol_macro_f1, args.tol_log_loss, args.tol_rmse),
        thresholds=DriftThresholds(share=args.drift_share, min_rows=args.drift_min_rows),
        task=Task.from_env(uuid.uuid4().hex[:12], settings), metrics=replace(target, model=args.model))


def monitor_options(args: argparse.Namespace, target: MetricsTarget) -> MonitorOptions:
    """The monitor's options from the parsed flags."""
    return MonitorOptions(
        model_name=args.model, log_prefix=args.log_prefix, log_engine=args.log_engine, log_table=args.log_table,
        feedback_hours=args.feedback_hours,
        prediction_days=args.prediction_days, min_labels=args.min_labels, canary_decision=args.canary_decision,
        dry_run=args.dry_run, tolerances=Tolerances(args.tol_accuracy, args.tol_macro_f1, args.tol_log_loss,
                                                    args.tol_rmse),
        metrics=replace(target, model=args.model))


def _monitor_one(store: Store, opts: MonitorOptions) -> tuple[int, dict]:
    """One model's monitor run as (exit status, summary line)."""
    try:
        return 0, run_monitor(store, opts)
    except Exception as exc:
        logging.exception("monitoring %s failed", opts.model_name)
        return 1, {"command": "monitor", "model": opts.model_name, "decision": "failed",
                   "error": f"{type(exc).__name__}: {exc}"}


def monitor_all(store: Store, opts: MonitorOptions) -> tuple[int, dict]:
    """The monitor for every model with a spec in turn, each summary printed as it ends; 1 if any failed."""
    def outcome(summary: dict) -> dict:
        kept = {k: summary[k] for k in ("decision", "error") if k in summary}
        if "canary" in summary:
            kept["canary"] = {k: summary["canary"][k] for k in ("canary", "decision", "action")}
        return kept

    status, outcomes = for_every_model(lambda name: _monitor_one(store, _for_model(opts, name)), outcome)
    return status, {"command": "monitor", "decision": "all-models", "models": outcomes}


def _monitor(store: Store, args: argparse.Namespace, settings: Settings, target: MetricsTarget) -> int:
    """The `monitor` command: one model or all; only task 0 of an execution acts."""
    if settings.task_index != 0:
        print(json.dumps({"command": "monitor", "decision": "skipped",
                          "reason": f"task {settings.task_index} of {settings.task_count}: the monitor runs in "
                                    f"task 0 only"}))
        return 0
    try:
        opts = monitor_options(args, target)
    except ValueError as exc:
        print(json.dumps({"command": "monitor", "model": args.model, "decision": "failed",
                          "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    code, summary = monitor_all(store, opts) if args.all_models else _monitor_one(store, opts)
    print(json.dumps(summary, default=str))
    return code


def _run_one(store: Store, opts: JobOptions) -> tuple[int, dict]:
    """One model's run as (exit status, summary line)."""
    from retrain_job.train.run import run  # noqa: PLC0415 - see TYPE_CHECKING above

    try:
        return 0, run(store, opts)
    except PointerRace as exc:
        return 0, {"model": opts.model_name, "decision": "lost-race", "reason": str(exc)}
    except (SpecError, DataError) as exc:  # the user's to fix: the message says what, no traceback
        logging.error("retraining %s failed: %s", opts.model_name, exc)
        write_metrics([MetricPoint("job_success", 0.0)], replace(opts.metrics, model=opts.model_name))
        return 1, {"model": opts.model_name, "decision": "failed", "error": str(exc)}
    except Exception as exc:
        logging.exception("retraining %s failed", opts.model_name)
        write_metrics([MetricPoint("job_success", 0.0)], replace(opts.metrics, model=opts.model_name))
        return 1, {"model": opts.model_name, "decision": "failed", "error": f"{type(exc).__name__}: {exc}"}


def run_all(store: Store, opts: JobOptions) -> tuple[int, dict]:
    """Every model with a spec in turn, each summary printed as it ends; the status is 1 if any failed."""
    status, decisions = for_every_model(
        lambda name: _run_one(store, _for_model(opts, name)),
        lambda summary: {k: summary[k] for k in ("decision", "candidate", "stable", "error") if k in summary})
    return status, {"decision": "all-models", "models": decisions}


def _for_model(opts, name: str):
    """Options (JobOptions or MonitorOptions) for model `name`, its metrics labelled with it."""
    return replace(opts, model_name=name, metrics=replace(opts.metrics, model=name))


def for_every_model(one: Callable[[str], tuple[int, dict]],
                    outcome: Callable[[dict], dict]) -> tuple[int, dict[str, dict]]:
    """Run `one` for every model with a spec, printing each summary as it ends: (worst status, outcomes)."""
    status, outcomes = 0, {}
    for name in spec_names():
        code, summary = one(name)
        print(json.dumps(summary, default=str), flush=True)
        status = max(status, code)
        outcomes[name] = outcome(summary)
    return status, outcomes


def main(argv: list[str] | None = None) -> int:
    """Run one command; a bad environment setting ends it at once (one line per variable, exit 2)."""
    argv = sys.argv[1:] if argv is None else argv
    settings = exit_on_bad_settings(PROG, JOB)
    gc.set_threshold(*GC_THRESHOLDS)
    if argv[:1] == [SCORE]:
        from retrain_job.score.cli import main as score  # noqa: PLC0415 - only the score command needs it

        return score(argv[1:])
    if argv[:1] == ["card"]:
        return card_main(argv[1:])
    if argv[:1] == ["erase"]:
        from retrain_job.erase import main as erase  # noqa: PLC0415 - only the erase command needs it

        return erase(argv[1:])
    args = parse_args(argv, settings)
    configure_logging(settings.log_level)
    if args.command == "init":
        return run_init(args)
    store = open_store(args.store)
    target = replace(MetricsTarget.from_env(settings), model=args.model)
    if args.command == "monitor":
        return _monitor(store, args, settings, target)
    if args.command == "run":
        try:
            opts = job_options(args, settings, target)
        except ValueError as exc:
            write_metrics([MetricPoint("job_success", 0.0)], target)
            print(json.dumps({"model": args.model, "decision": "failed", "error": f"{type(exc).__name__}: {exc}"}))
            return 1
        code, summary = run_all(store, opts) if args.all_models else _run_one(store, opts)
        print(json.dumps(summary, default=str))
        return code
    try:
        published = POINTER_COMMANDS[args.command](store, args.model, args.force)
    except PointerRace as exc:
        print(json.dumps({"decision": "lost-race", "reason": str(exc)}))
        return 0
    except ShadowRefused as exc:
        print(json.dumps({"model": args.model, "decision": "refused", "reason": str(exc)}))
        return 1
    except Exception as exc:
        logging.exception("%s failed", args.command)
        print(json.dumps({"decision": "failed", "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    summary = {"model": args.model, "decision": args.command, "before": vars(published.before),
               "after": vars(published.after)}
    if published.verdict is not None:
        summary["verdict"] = published.verdict
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
