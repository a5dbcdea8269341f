"""One retraining run of one model as named steps: gather data, search, train, gate, drift report, publish, summary.

Everything model-specific comes from the model's spec (`specs/<name>/spec.toml`): its data, holdout, search
space, gate and examples. Besides the labelled CSV files, the truth fed back for served predictions (of the
last `feedback_days`, about predictions up to `FEEDBACK_PREDICTION_DAYS` older) is read as labelled rows: the
logged request's fields with the truth, judged by the same rules, one per prediction id. Bundles go under
`models/<name>/`, drift reports under `reports/<name>/drift/`, and the tasks of one execution meet under
`runs/<name>/<execution>/`.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import ParamSpec, TypeVar

import pandas as pd

from retrain_job.card.store import refresh_cards
from retrain_job.data.engine import LogEngine, open_engine
from retrain_job.data.feedback import Joined
from retrain_job.data.labelled import (
    FEEDBACK_ID,
    FEEDBACK_KEY,
    LABELLED_PREFIX,
    LabelledData,
    load_labelled,
    read_base,
    request_fields,
)
from retrain_job.data.logs import Served, join_feedback, labelled_rows, served_sample
from retrain_job.drift.attribution import ATTRIBUTION_ROWS, attribution_drift, mean_abs_attribution
from retrain_job.drift.stats import DriftThresholds
from retrain_job.metrics import MetricPoint, MetricsTarget, write_metrics
from retrain_job.monitor.keys import latest_report_key
from retrain_job.publish import KEEP_FALLBACKS, PointerRace, apply_retention, promote, stage
from retrain_job.report import build_report, render_html
from retrain_job.train import fit as train
from retrain_job.train.evaluate import serving_model
from retrain_job.train.fit import TrainingData
from retrain_job.train.gate import Tolerances, Verdict, judge
from retrain_job.train.tasks import Task, report_scores, share
from shared.bundle import Bundle, CorruptBundle, read_bundle
from shared.logline import spec_hash_key
from shared.pointer import DEFAULT_SHADOW_PERCENT, ServingPointer, read_pointer
from shared.spec import ModelSpec, default_model, load_spec
from shared.store import NotFound, Store

log = logging.getLogger(__name__)
REVIEW_CANARY_PERCENT = 10.0  # drift with enough new labels: a small canary, promoted after review
REJECTED_SAMPLE = 20  # rejected rows listed in the summary (all are counted)
FEEDBACK_PREDICTION_DAYS = 7  # feedback joins predictions logged up to this long before its window
# DuckDB's memory for the feedback intake: the retrain's peak is set by training on the joined rows anyway (make
# scale: 2.8 GB at 5 M logged predictions), and with the window's rows held in memory the intake takes a third
# less time than at the monitor's (retrain_job/data/engine.py)
FEEDBACK_MEMORY_LIMIT = "1GB"
DRIFT_SAMPLE_ROWS = 50_000  # served rows the drift report compares (a hashed sample of the window's)

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class JobOptions:
    """Everything a run can be told (flags and environment map onto these)."""

    model_name: str = field(default_factory=default_model)
    data_prefix: str = LABELLED_PREFIX
    log_prefix: str = "logs"
    log_engine: str = "duckdb"  # or "bigquery", reading log_table
    log_table: str | None = None
    log_days: int = 7
    feedback_days: int | None = None  # days of feedback read as labelled rows; None: log_days; 0: none
    canary_percent: float = 0.0
    shadow: bool = False  # publish a passing candidate as the shadow instead of stable or canary
    shadow_if_close: bool = False  # publish a rejected but close candidate (Verdict.close) as the shadow
    shadow_percent: float = DEFAULT_SHADOW_PERCENT
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
        if not 0.0 < self.shadow_percent <= 100.0:
            raise ValueError("shadow percent must be above 0 and at most 100")
        if self.feedback_days is None:
            object.__setattr__(self, "feedback_days", self.log_days)
        if self.feedback_days < 0:
            raise ValueError("feedback days must be at least 0")


def reports_prefix(model: str) -> str:
    """Where a model's drift reports go in the store."""
    return f"reports/{model}/drift/"


class Clock:
    """How long each named part of a run took, and the run so far."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.durations: dict[str, float] = {}

    def __call__(self, name: str, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Call `fn`, recording its duration under `name` (added to the name's earlier ones) even when it raises."""
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.durations[name] = round(self.durations.get(name, 0.0) + time.perf_counter() - t0, 3)

    def total(self) -> float:
        """Seconds since the run started."""
        return round(time.perf_counter() - self.started, 3)


# ---- step results ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SearchResult:
    """This task's share of the CV grid; everyone's scores and the chosen parameters if this task merges."""

    scored: int
    merged: list[dict] | None = None
    params: dict | None = None


@dataclass(frozen=True)
class Candidate:
    """The trained bundle and the parameters the search chose for it."""

    bundle: Bundle
    params: dict

    @property
    def version(self) -> str:
        """The bundle's version id."""
        return self.bundle.version


@dataclass(frozen=True)
class DriftOutcome:
    """The drift report as written, where it was written, and whether drift sends the candidate to review."""

    report: dict
    location: str
    review: bool

    @property
    def policy(self) -> str:
        """What the job does about the report's verdict, in words."""
        if self.report["status"] != "drift":
            return "none"
        if self.review:
            return "review: drift with enough new labels; the candidate goes out as a canary for promotion review"
        return "alert: drift without enough new labels; reported and alerted, serving inputs are never trained on"

    def to_dict(self) -> dict:
        """The summary's drift section."""
        return {"status": self.report["status"], "share_drifted": self.report["share_drifted"],
                "drifted_features": self.report["drifted_features"], "report": self.location,
                "policy": self.policy}


@dataclass(frozen=True)
class PublishOutcome:
    """What publishing did: rejected, dry-run, lost-race, or promoted/canary/shadow with the pointer it wrote."""

    decision: str
    reason: str | None = None
    pointer: ServingPointer | None = None
    retention_deleted: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The summary's decision and what goes with it."""
        out: dict = {"decision": self.decision}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.pointer is not None:
            p = self.pointer
            out["pointer"] = {"stable": p.stable, "previous": list(p.previous), "canary": p.canary,
                              "canary_percent": p.canary_percent, "shadow": p.shadow,
                              "shadow_percent": p.shadow_percent}
            out["retention_deleted"] = self.retention_deleted
        return out


@dataclass(frozen=True)
class RunSummary:
    """Everything a run reports; `to_dict` is the job's last output line."""

    store: str
    model: str
    task: Task
    before: ServingPointer | None
    kept: bool = False
    durations: dict[str, float] = field(default_factory=dict)
    spec: ModelSpec | None = None
    data: TrainingData | None = None
    search: SearchResult | None = None
    candidate: Candidate | None = None
    verdict: Verdict | None = None
    drift: DriftOutcome | None = None
    published: PublishOutcome | None = None
    metrics_sink: str | None = None

    def to_dict(self) -> dict:
        """The JSON summary: identity and durations, then what each step that ran found, then the decision."""
        out: dict = {"store": self.store, "model": self.model, "task": asdict(self.task),
                     "durations_s": self.durations}
        if self.kept:
            return {**out, "decision": "kept", "reason": "a model is already published", "stable": self.before.stable}
        out["model_task"] = self.spec.task
        out["data"] = _describe(self.data)
        if self.candidate is None:
            out.update(decision="search-share-done", scored=self.search.scored)
        else:
            out.update(candidate=self.candidate.version, stable_before=self.before.stable if self.before else None,
                       params=self.candidate.params,
                       metrics={"candidate": self.verdict.candidate, "stable": self.verdict.stable},
                       gate={"passed": self.verdict.passed, "reasons": self.verdict.reasons,
                             "policy": self.verdict.policy, "close": self.verdict.close},
                       drift=self.drift.to_dict(), **self.published.to_dict())
            if self.spec.is_binary:
                out["threshold"] = self.candidate.bundle.manifest.get("threshold")
            if self.spec.is_classifier:
                out["calibration"] = self.candidate.bundle.manifest["metrics"].get("calibration")
            else:
                out["regression"] = _regression_summary(self.verdict.candidate)
        out["metrics_sink"] = self.metrics_sink
        return out

    def metric_points(self) -> list[MetricPoint]:
        """The run's monitoring points (none when this task only scored its share of the search)."""
        if self.candidate is None:
            return []
        report, verdict = self.drift.report, self.verdict
        points = [
            MetricPoint("drift_share", report["share_drifted"]),
            MetricPoint("promoted", 1.0 if self.published.decision in ("promoted", "canary") else 0.0),
            MetricPoint("training_rows", len(self.data.split.train)),
            MetricPoint("labelled_rows_rejected", self.data.labelled.rejected_count),
        ]
        if self.spec.is_classifier:
            points += [MetricPoint("candidate_accuracy", verdict.candidate["accuracy"]),
                       MetricPoint("candidate_log_loss", verdict.candidate["log_loss"])]
            if verdict.stable:
                points.append(MetricPoint("stable_accuracy", verdict.stable["accuracy"]))
            for name, metrics in (("candidate_roc_auc", verdict.candidate), ("stable_roc_auc", verdict.stable)):
                if self.spec.is_binary and metrics and metrics.get("roc_auc") is not None:  # both classes held out
                    points.append(MetricPoint(name, metrics["roc_auc"]))
        else:
            for name, m in verdict.candidate["regimes"].items():
                points += [MetricPoint("candidate_rmse", m["rmse"], {"regime": name}),
                           MetricPoint("candidate_coverage", m["coverage"], {"regime": name})]
            for name, m in (verdict.stable or {}).get("regimes", {}).items():
                points.append(MetricPoint("stable_rmse", m["rmse"], {"regime": name}))
        points += [MetricPoint("feature_drift_score", f["statistic"], {"feature": f["feature"]})
                   for f in report["features"]]
        if report.get("prediction_drift"):
            points.append(MetricPoint("prediction_drift_score", report["prediction_drift"]["statistic"]))
        return points


def _regression_summary(candidate: dict) -> dict:
    """A regressor's key figures on the holdout: RMSE, coverage and mean width per regime, and the baseline's."""
    return {"regimes": {name: {k: m[k] for k in ("rmse", "mae", "coverage", "mean_width", "rows")}
                        for name, m in candidate["regimes"].items()},
            "baseline": candidate["baseline"]}


# ---- the run --------------------------------------------------------------------------------------------

def run(store: Store, opts: JobOptions) -> dict:
    """Train, gate, publish and report one model; the returned summary is the job's last output line."""
    clock = Clock()
    spec = load_spec(opts.model_name)
    before, _ = read_pointer(store, opts.model_name)
    summary = RunSummary(store.uri, opts.model_name, opts.task, before, durations=clock.durations, spec=spec)
    if opts.if_no_model and before is not None:
        return replace(summary, kept=True).to_dict()
    data = gather_data(store, spec, opts, clock=clock)
    found = search(store, data, opts, clock=clock)
    if found.params is None:
        return _finish(replace(summary, data=data, search=found), clock, opts)
    candidate = train_candidate(data, found, clock=clock)
    verdict = gate_candidate(store, opts, before, candidate, data, clock=clock)
    candidate = with_gate(candidate, verdict, before)
    drift = check_drift(store, opts, data, clock=clock)
    published = publish_candidate(store, opts, candidate, verdict, drift, clock=clock)
    if published.pointer is not None:  # the pointer moved: every kept version's card says its new role
        clock("cards", refresh_cards, store, spec, monitor_key=latest_report_key(spec.name))
    return _finish(replace(summary, data=data, search=found, candidate=candidate, verdict=verdict, drift=drift,
                           published=published), clock, opts)


def gather_data(store: Store, spec: ModelSpec, opts: JobOptions, *, clock: Clock) -> TrainingData:
    """The spec's base data and the new labelled rows (files and feedback), split with the frozen holdout and
    encoded once."""
    base = clock("data", read_base, spec)
    joined = served = None
    if opts.feedback_days and spec.retrain.from_feedback:
        now = datetime.now(UTC)
        engine = clock("feedback", feedback_engine, store, spec, opts, now)  # the logs' one parse
        try:
            joined = clock("feedback", read_feedback, engine, spec, opts, now)
            served = clock("served", read_served, engine, spec, opts, now)
        finally:
            engine.close()
    records = None if joined is None else labelled_rows(joined, spec.target.name, id_name=FEEDBACK_ID)
    labelled = clock("labelled", load_labelled, store, spec, base.frame, opts.data_prefix, records)
    if joined is not None:
        labelled = replace(labelled, feedback=feedback_summary(joined, labelled, opts.feedback_days))
    data = clock("prepare", train.prepare, spec, base.frame, labelled)
    return replace(data, intake=base.intake, served=served)


def feedback_engine(store: Store, spec: ModelSpec, opts: JobOptions, now: datetime) -> LogEngine:
    """The log engine over the feedback of the last `feedback_days` and the predictions it may be about."""
    feedback_from = now - timedelta(days=opts.feedback_days)
    return open_engine(store, opts.log_prefix, feedback_from - timedelta(days=FEEDBACK_PREDICTION_DAYS), now,
                       engine=opts.log_engine, table=opts.log_table, model=spec.name,
                       memory_limit=FEEDBACK_MEMORY_LIMIT)


def read_feedback(engine: LogEngine, spec: ModelSpec, opts: JobOptions, now: datetime) -> Joined:
    """The model's feedback of the last `feedback_days` joined to its logged predictions (every joined row: they
    become training rows)."""
    return join_feedback(engine, spec.name, now - timedelta(days=opts.feedback_days), fields=request_fields(spec),
                         sample_rows=None, outputs=False)


def read_served(engine: LogEngine, spec: ModelSpec, opts: JobOptions, now: datetime) -> Served | None:
    """The drift report's served rows of the last `log_days` from the feedback's engine, when its window covers
    them (the logs are then parsed once per run); None when it does not."""
    served_from = now - timedelta(days=opts.log_days)
    if engine.since > served_from:
        return None
    return served_sample(engine, spec.name, request_fields(spec), DRIFT_SAMPLE_ROWS, since=served_from)


def feedback_summary(joined: Joined, labelled: LabelledData, days: int) -> dict:
    """The summary's account of the feedback: every item in exactly one of malformed, unknown_ids, invalid_truths,
    duplicates and read (joined to its prediction, the last truth per prediction id); every read row either
    accepted as a labelled row or rejected by the labelled rows' rules; per source, the same."""
    c = joined.counts
    rejected = {r["id"] for r in labelled.rejected if r.get("file") == FEEDBACK_KEY}
    sources = {name: {"items": n, "read": 0, "accepted": 0} for name, n in c.by_source.items()}
    for row in joined.rows:
        counts = sources.setdefault(row.source, {"items": 0, "read": 0, "accepted": 0})
        counts["read"] += 1
        counts["accepted"] += row.id not in rejected
    return {"days": days, "window": joined.window.to_dict(), "items": c.items, "read": c.joined,
            "accepted": c.joined - len(rejected), "rejected": len(rejected), "malformed": c.malformed,
            "unknown_ids": c.unknown_ids, "invalid_truths": c.invalid_truths, "duplicates": c.duplicates,
            "late": c.late, "other_model_lines": c.other_model_lines, "sources": dict(sorted(sources.items()))}


def search(store: Store, data: TrainingData, opts: JobOptions, *, clock: Clock) -> SearchResult:
    """Score this task's share of the grid; the task that finishes last merges everyone's and picks parameters."""
    mine = share(train.search_items(data.spec), opts.task)
    scores = clock("search", train.score_items, data, mine)
    merged = report_scores(store, opts.task, scores, opts.model_name)
    return SearchResult(len(scores), merged, None if merged is None else train.best_params(data.spec, merged))


def train_candidate(data: TrainingData, found: SearchResult, *, clock: Clock) -> Candidate:
    """Fit the chosen parameters on the training rows and assemble a verified bundle."""
    bundle = clock("train", train.build_candidate, data, found.params, found.merged)
    return Candidate(bundle, found.params)


def gate_candidate(store: Store, opts: JobOptions, before: ServingPointer | None, candidate: Candidate,
                   data: TrainingData, *, clock: Clock) -> Verdict:
    """Judge the candidate against the published stable on the frozen holdout (sanity checks only if none)."""
    stable = _stable_bundle(store, opts.model_name, before)
    return clock("gate", judge, data.spec, candidate.bundle, stable, data.split.holdout, opts.tolerances)


def with_gate(candidate: Candidate, verdict: Verdict, before: ServingPointer | None) -> Candidate:
    """The candidate with the gate's decision in its manifest (its model card shows it): passed or not, why, the
    policy, and the stable version it was compared with (None when there was none to score) and its metrics."""
    gate = {"passed": verdict.passed, "close": verdict.close, "reasons": verdict.reasons, "policy": verdict.policy,
            "compared_with": before.stable if before is not None and verdict.stable is not None else None,
            "stable_metrics": verdict.stable}
    bundle = candidate.bundle
    return replace(candidate, bundle=Bundle({**bundle.manifest, "gate": gate}, bundle.files))


def check_drift(store: Store, opts: JobOptions, data: TrainingData, *, clock: Clock) -> DriftOutcome:
    """Write the drift report (training rows against recent serving inputs and new labels) and apply the policy."""
    report, location = clock("drift", _write_drift_report, store, opts, data)
    review = report["status"] == "drift" and len(data.labelled.rows) >= opts.min_labelled_for_review
    return DriftOutcome(report, location, review)


def publish_candidate(store: Store, opts: JobOptions, candidate: Candidate, verdict: Verdict,
                      drift: DriftOutcome, *, clock: Clock) -> PublishOutcome:
    """Stage and promote a candidate that passed (as a canary when asked or under review, as the shadow when
    asked), or shadow a rejected but close one when asked; then apply retention."""
    shadowed = opts.shadow if verdict.passed else opts.shadow_if_close and verdict.close
    if not verdict.passed and not shadowed:
        return PublishOutcome("rejected")
    if opts.dry_run:
        return PublishOutcome("dry-run")
    canary_percent = opts.canary_percent or (REVIEW_CANARY_PERCENT if drift.review else 0.0)
    try:
        clock("stage", stage, store, opts.model_name, candidate.bundle)
        after = promote(store, opts.model_name, candidate.version, canary_percent, opts.keep,
                        shadow_percent=opts.shadow_percent if shadowed else None).after
    except PointerRace as exc:
        return PublishOutcome("lost-race", reason=str(exc))
    decision = "shadow" if after.shadow == candidate.version else "canary" if after.canary == candidate.version \
        else "promoted"
    return PublishOutcome(decision, pointer=after, retention_deleted=apply_retention(store, opts.model_name))


def _stable_bundle(store: Store, name: str, before: ServingPointer | None) -> Bundle | None:
    if before is None:
        return None
    try:
        return read_bundle(store, name, before.stable)
    except (NotFound, CorruptBundle) as exc:
        log.warning("stable version unreadable, gating on sanity only: %s", exc)
        return None


def _write_drift_report(store: Store, opts: JobOptions, data: TrainingData) -> tuple[dict, str]:
    spec, contract = data.spec, data.contract
    served = data.served
    if served is None:  # no feedback read, or over a shorter window than the report's
        now = datetime.now(UTC)
        engine = open_engine(store, opts.log_prefix, now - timedelta(days=opts.log_days), now,
                             engine=opts.log_engine, table=opts.log_table, model=spec.name)
        try:
            served = served_sample(engine, spec.name, contract.field_names, DRIFT_SAMPLE_ROWS)
        finally:
            engine.close()
    serving, window = pd.DataFrame(served.rows, columns=[*contract.field_names, "predicted"]), served.window
    reference_predictions, attribution = _stable_reference(store, spec, served.rows, opts.thresholds)
    report = build_report(spec, contract, data.split.train, serving, data.labelled.from_files,
                          thresholds=opts.thresholds, window=window, reference_predictions=reference_predictions,
                          attribution=attribution, hash_key=spec_hash_key(spec, store.uri))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    body_json = json.dumps(report, indent=1).encode()
    body_html = render_html(report).encode()
    prefix = reports_prefix(spec.name)
    for folder in (f"{prefix}{stamp}/", f"{prefix}latest/"):
        store.write(folder + "report.json", body_json)
        store.write(folder + "report.html", body_html)
    return report, f"{prefix}{stamp}/"


def _stable_reference(store: Store, spec: ModelSpec, served: list[dict],
                      thresholds: DriftThresholds) -> tuple[list | None, dict | None]:
    """What the serving (stable) version answered on its holdout, and its attribution drift on the served rows,
    from the reference in its manifest; (None, None) without one."""
    pointer, _ = read_pointer(store, spec.name)
    bundle = _stable_bundle(store, spec.name, pointer)
    reference = bundle.manifest.get("reference") if bundle is not None else None
    if not isinstance(reference, dict):
        return None, None
    attribution = None
    if served and isinstance(reference.get("attribution"), dict):
        model = serving_model(spec, bundle)
        rows = [{name: row.get(name) for name in model.contract.field_names} for row in served[:ATTRIBUTION_ROWS]]
        attribution = attribution_drift(reference["attribution"], mean_abs_attribution(model, rows),
                                        thresholds.distance)
    return reference.get("predictions"), attribution


def _describe(data: TrainingData) -> dict:
    labelled = data.labelled
    return {"base_rows": int(len(data.base)), "base_intake": data.intake, "labelled_rows": int(len(labelled.rows)),
            "labelled_files": labelled.files, "feedback": labelled.feedback, "rejected_rows": labelled.rejected_count,
            "rejected_sample": labelled.rejected[:REJECTED_SAMPLE], "train_rows": int(len(data.split.train)),
            "holdout_rows": int(len(data.split.holdout)), "holdout": data.split.info}


def _finish(summary: RunSummary, clock: Clock, opts: JobOptions) -> dict:
    total = clock.total()
    points = [*summary.metric_points(), MetricPoint("job_duration_s", total), MetricPoint("job_success", 1.0)]
    sink = write_metrics(points, replace(opts.metrics, model=opts.model_name))
    return replace(summary, durations={**clock.durations, "total": total}, metrics_sink=sink).to_dict()
