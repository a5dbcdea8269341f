"""One retraining run: data, search share, candidate, gate, publish, drift report, metrics, summary."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from retrain_job import train
from retrain_job.data import LABELLED_PREFIX, load_base, load_labelled, load_serving_inputs
from retrain_job.drift import DriftThresholds
from retrain_job.gate import Tolerances, judge
from retrain_job.metrics import MetricPoint, MetricsTarget, write_metrics
from retrain_job.publish import KEEP_FALLBACKS, PointerRace, apply_retention, promote, stage
from retrain_job.report import build_report, render_html
from retrain_job.tasks import Task, report_scores, share
from shared.bundle import CorruptBundle, read_bundle
from shared.pointer import read_pointer
from shared.store import NotFound, Store

log = logging.getLogger(__name__)
REPORTS_PREFIX = "reports/drift/"


@dataclass(frozen=True)
class JobOptions:
    """Everything a run can be told (flags and environment map onto these)."""

    model_name: str = "penguins"
    data_prefix: str = LABELLED_PREFIX
    log_prefix: str = "logs"
    log_days: int = 7
    canary_percent: float = 0.0
    dry_run: bool = False
    if_no_model: bool = False
    keep: int = KEEP_FALLBACKS
    min_labelled_for_review: int = 30
    tolerances: Tolerances = field(default_factory=Tolerances)
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    task: Task = field(default_factory=Task)
    metrics: MetricsTarget = field(default_factory=lambda: MetricsTarget(project=None))

    def __post_init__(self) -> None:
        if not 0.0 <= self.canary_percent < 100.0:
            raise ValueError("canary percent must be at least 0 and below 100")


class _Clock:
    def __init__(self) -> None:
        self.durations: dict[str, float] = {}

    def __call__(self, name: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.durations[name] = round(time.perf_counter() - t0, 3)


def run(store: Store, opts: JobOptions) -> dict:
    """Train, gate, publish and report; the returned summary is the job's last output line."""
    started = time.perf_counter()
    timed = _Clock()
    summary: dict = {"store": store.uri, "model": opts.model_name, "task": vars(opts.task),
                     "durations_s": timed.durations}
    pointer, _ = read_pointer(store, opts.model_name)
    if opts.if_no_model and pointer is not None:
        return {**summary, "decision": "kept", "reason": "a model is already published", "stable": pointer.stable}

    base = timed("data", load_base)
    islands = tuple(sorted(base["island"].unique()))
    labelled = timed("labelled", load_labelled, store, opts.data_prefix, islands)
    data = base if labelled.rows.empty else pd.concat([base, labelled.rows], ignore_index=True)
    split = train.split_with_frozen_holdout(base, labelled.rows)
    labels = tuple(sorted(data["species"].unique()))
    contract = train.build_contract(split.train, labels)
    x, y = train.encode(split.train, contract, labels)
    mine = share(train.grid(), opts.task)
    scores = timed("search", lambda: [train.cv_score(x, y, p, len(labels)) for p in mine])
    summary["data"] = {"base_rows": int(len(base)), "labelled_rows": int(len(labelled.rows)),
                       "labelled_files": labelled.files, "rejected_rows": labelled.rejected_count,
                       "rejected_sample": labelled.rejected[:20], "train_rows": int(len(split.train)),
                       "holdout_rows": int(len(split.holdout))}
    merged = report_scores(store, opts.task, scores)
    if merged is None:
        summary.update(decision="search-share-done", scored=len(scores))
        return _finish(summary, started, opts, [])

    params = train.best_params(merged)
    sources = [{"name": "palmerpenguins", "rows": int(len(base))},
               *[{"name": f["key"], "sha256": f["sha256"], "rows": f["rows"]} for f in labelled.files if f["rows"]]]
    candidate = timed("train", train.build_candidate, data, split, params, merged, sources)
    stable = None
    if pointer is not None:
        try:
            stable = read_bundle(store, opts.model_name, pointer.stable)
        except (NotFound, CorruptBundle) as exc:
            log.warning("stable version unreadable, gating on sanity only: %s", exc)
    verdict = timed("gate", judge, candidate, stable, split.holdout, opts.tolerances)
    summary.update(candidate=candidate.version, stable_before=pointer.stable if pointer else None, params=params,
                   metrics={"candidate": verdict.candidate, "stable": verdict.stable},
                   gate={"passed": verdict.passed, "reasons": verdict.reasons})

    report = timed("drift", _drift_report, store, opts, split.train, labelled.rows)
    review = report["status"] == "drift" and len(labelled.rows) >= opts.min_labelled_for_review
    summary["drift"] = {"status": report["status"], "share_drifted": report["share_drifted"],
                        "drifted_features": report["drifted_features"], "report": report["location"],
                        "policy": _policy(report["status"], len(labelled.rows), opts)}
    canary_percent = opts.canary_percent or (10.0 if review else 0.0)

    if not verdict.passed:
        summary["decision"] = "rejected"
    elif opts.dry_run:
        summary["decision"] = "dry-run"
    else:
        try:
            timed("stage", stage, store, opts.model_name, candidate)
            published = promote(store, opts.model_name, candidate.version, canary_percent, opts.keep)
        except PointerRace as exc:
            summary.update(decision="lost-race", reason=str(exc))
        else:
            after = published.after
            summary["decision"] = "canary" if after.canary == candidate.version else "promoted"
            summary["pointer"] = {"stable": after.stable, "previous": list(after.previous), "canary": after.canary,
                                  "canary_percent": after.canary_percent}
            summary["retention_deleted"] = apply_retention(store, opts.model_name)
    return _finish(summary, started, opts, _points(summary, report, verdict, len(split.train), labelled))


def _policy(status: str, labelled_rows: int, opts: JobOptions) -> str:
    if status != "drift":
        return "none"
    if labelled_rows >= opts.min_labelled_for_review:
        return "review: drift with enough new labels; the candidate goes out as a canary for promotion review"
    return "alert: drift without enough new labels; reported and alerted, serving inputs are never trained on"


def _drift_report(store: Store, opts: JobOptions, reference: pd.DataFrame, labelled: pd.DataFrame) -> dict:
    serving, window = load_serving_inputs(store, opts.log_prefix, opts.log_days)
    report = build_report(reference, serving, labelled, opts.thresholds, window)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    body_json = json.dumps(report, indent=1).encode()
    body_html = render_html(report).encode()
    for folder in (f"{REPORTS_PREFIX}{stamp}/", f"{REPORTS_PREFIX}latest/"):
        store.write(folder + "report.json", body_json)
        store.write(folder + "report.html", body_html)
    report["location"] = f"{REPORTS_PREFIX}{stamp}/"
    return report


def _points(summary: dict, report: dict, verdict, train_rows: int, labelled) -> list[MetricPoint]:
    points = [
        MetricPoint("drift_share", report["share_drifted"]),
        MetricPoint("candidate_accuracy", verdict.candidate["accuracy"]),
        MetricPoint("candidate_log_loss", verdict.candidate["log_loss"]),
        MetricPoint("promoted", 1.0 if summary.get("decision") in ("promoted", "canary") else 0.0),
        MetricPoint("training_rows", train_rows),
        MetricPoint("labelled_rows_rejected", labelled.rejected_count),
    ]
    if verdict.stable:
        points.append(MetricPoint("stable_accuracy", verdict.stable["accuracy"]))
    points += [MetricPoint("feature_drift_score", f["statistic"], {"feature": f["feature"]})
               for f in report["features"]]
    if report.get("prediction_drift"):
        points.append(MetricPoint("prediction_drift_score", report["prediction_drift"]["statistic"]))
    return points


def _finish(summary: dict, started: float, opts: JobOptions, points: list[MetricPoint]) -> dict:
    total = round(time.perf_counter() - started, 3)
    summary["durations_s"]["total"] = total
    points = [*points, MetricPoint("job_duration_s", total), MetricPoint("job_success", 1.0)]
    summary["metrics_sink"] = write_metrics(points, opts.metrics)
    return summary
