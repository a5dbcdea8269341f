"""One monitor run of one model: live quality from the truth fed back, the canary judged on it, report and metrics.

`python -m retrain_job monitor [--model NAME | --all-models]`, run hourly by its own Cloud Scheduler trigger of
the job (`make monitor` locally):

1. **Join**: the model's feedback of the last `MONITOR_FEEDBACK_HOURS` (`POST /feedback` log lines) joined by
   prediction id to its prediction log lines up to `MONITOR_PREDICTION_DAYS` older, in SQL by the log engine
   (`retrain_job.data.logs`: DuckDB over the sink's files, or BigQuery), which also keeps the per-segment sums
   and a hashed sample of the stable version's served rows.
2. **Quality** per (model version, role) with 95% intervals (`retrain_job.monitor.quality.monitor`): accuracy,
   macro F1 and log loss of a classifier with its CBPE estimate beside them, and for a binary one ROC AUC,
   PR AUC, the Brier score, and precision, recall and F1 of the positive class at the version's threshold
   (its manifest's `threshold.value`, 0.5 without one, as the function decides; the logged answers for a
   version whose manifest is gone); RMSE, MAE and interval coverage of a regressor. Each version is held to
   what its own manifest promised (its holdout metrics, a binary classifier's ROC AUC among them; for a
   regressor, the per-regime holdout errors weighted by the regimes of its labelled rows). No verdict below
   `MONITOR_MIN_LABELS` labelled rows.
3. **Canary judged on live labels**: with a canary in the pointer, its realised quality against stable's by
   `compare_versions`, the tolerances from the spec's `[gate]` (a `--tol-*` flag or TOL_* setting overrides
   them, as for a run): a classifier's accuracy and macro F1 tolerances (a binary one's also its ROC AUC by
   `roc_auc_tolerance`); a regressor's RMSE tolerance (scaled,
   as the gate scales it per regime, by stable's expected RMSE on the regimes of its labelled rows over its
   first regime's) and a coverage tolerance of the interval level minus `coverage_min`. "rollback" drops the
   canary, "promote" makes it stable, "undecided" (too few labels on either side) leaves it serving;
   `--no-canary-decision` or `--dry-run` only report.
4. **Shadow judged on the same requests**: with a shadow in the pointer, its answers beside stable's under the
   same prediction ids (`retrain_job.monitor.shadow`): agreement, the paired quality difference where a truth
   came back, the drift of its answers, and a verdict (better, not-worse, undecided, worse) that
   `promote-shadow` respects. It only reports: the pointer moves by `promote-shadow` or `drop-shadow`.
5. **Report** `reports/<model>/monitor/<UTC stamp>.json|.html` and `latest.json|.html` in the store, with the
   quality per segment value (`retrain_job.monitor.segments`) and the stable version's feature, prediction and
   attribution drift against its manifest's reference (`retrain_job.monitor.drift`).
6. **Metrics** (`custom.googleapis.com/tabular/live_*`, labels `model`, `model_version`, `role`).

Alerting: the realised-quality metrics (`live_accuracy`, `live_coverage`, and also `live_macro_f1`,
`live_log_loss`, `live_rmse`, `live_mae`, and a binary classifier's `live_roc_auc`, `live_pr_auc`, `live_brier`,
`live_precision`, `live_recall`, `live_f1`) are written ONLY for a version with at least `MONITOR_MIN_LABELS`
labelled rows in the window, so an alert on `live_accuracy` or `live_coverage` needs no second condition on the
label count: a missing point means "not enough evidence yet", never a low value. `live_labelled`,
`live_predictions` and `live_accuracy_estimated` (CBPE, which needs no labels) are written for every version
seen; `feedback_unknown_ids` once per model, labelled `model_version="none"`, `role="none"` (an unknown id
names no version).
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from retrain_job.card.store import refresh_cards
from retrain_job.data.engine import open_engine
from retrain_job.data.feedback import Joined, JoinedRow
from retrain_job.data.labelled import request_fields
from retrain_job.data.logs import (
    SAMPLE_ROWS,
    join_feedback,
    segment_stats,
    served_of,
    shadow_pairs,
    shadow_predictions,
)
from retrain_job.drift.stats import DriftThresholds
from retrain_job.metrics import MetricPoint, MetricsTarget, write_metrics
from retrain_job.monitor.drift import SERVED_ROWS, monitor_drift
from retrain_job.monitor.keys import LATEST, latest_report_key, monitor_prefix
from retrain_job.monitor.quality import Comparison, MonitorReport, VersionQuality, compare_versions, monitor
from retrain_job.monitor.segments import segment_quality
from retrain_job.monitor.shadow import SHADOW_SAMPLE_ROWS, shadow_points, shadow_section
from retrain_job.publish import PointerRace, resolve_canary
from retrain_job.report import render_monitor_html
from retrain_job.train.evaluate import serving_model
from retrain_job.train.gate import GatePolicy, Tolerances
from shared.bundle import CorruptBundle, read_bundle
from shared.logline import spec_hash_key
from shared.model import ServingModel, decision_threshold
from shared.pointer import ServingPointer, read_pointer
from shared.spec import ModelSpec, default_model, load_spec
from shared.store import NotFound, Store

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CONFIDENCE = 0.9  # a prediction this sure of itself, contradicted by its truth, counts against the feedback source
NO_VERSION = "none"  # the model_version and role labels of feedback_unknown_ids
# realised-quality metrics, written only with enough labels: (live_quality metric, Cloud Monitoring metric)
REALISED_METRICS = (("accuracy", "live_accuracy"), ("macro_f1", "live_macro_f1"), ("log_loss", "live_log_loss"),
                    ("rmse", "live_rmse"), ("mae", "live_mae"), ("coverage", "live_coverage"),
                    ("roc_auc", "live_roc_auc"), ("pr_auc", "live_pr_auc"), ("brier", "live_brier"),  # binary
                    ("precision", "live_precision"), ("recall", "live_recall"), ("f1", "live_f1"))
CLASSIFIER_PROMISE = ("accuracy", "macro_f1", "log_loss")
BINARY_PROMISE = (*CLASSIFIER_PROMISE, "roc_auc", "pr_auc", "brier", "threshold", "precision", "recall", "f1")


@dataclass(frozen=True)
class MonitorOptions:
    """Everything a monitor run can be told (flags and environment map onto these)."""

    model_name: str = field(default_factory=default_model)
    log_prefix: str = "logs"
    log_engine: str = "duckdb"  # or "bigquery", reading log_table
    log_table: str | None = None
    feedback_hours: float = 24.0
    prediction_days: float = 7.0
    min_labels: int = 30
    canary_decision: bool = True  # --no-canary-decision: judge and report only
    dry_run: bool = False  # --dry-run: the same, for the monitor
    tolerances: Tolerances = field(default_factory=Tolerances)
    confidence: float = CONFIDENCE
    resamples: int = 1000
    drift_thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    metrics: MetricsTarget = field(default_factory=lambda: MetricsTarget(project=None))

    def __post_init__(self) -> None:
        if not self.feedback_hours > 0 or self.prediction_days < 0 or self.min_labels < 1:
            raise ValueError("feedback hours must be > 0, prediction days >= 0 and the minimum labels >= 1")


# ---- what each version promised ----------------------------------------------------------------------------

def _regime(instance: Mapping, members: Sequence[Mapping]) -> str:
    """The regime that answered a logged row: the first member whose needed inputs it has (as the predictor routes)."""
    for member in members:
        if all(_present(instance.get(name)) for name in member.get("needs", ())):
            return member["name"]
    return members[-1]["name"]


def _present(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def expected_metrics(manifest: Mapping, rows: Sequence[JoinedRow]) -> dict | None:
    """What a version's manifest promised for the rows it was judged on (None without holdout metrics).

    A classifier: its holdout accuracy, macro F1 and log loss; a binary one also its ROC AUC, PR AUC, Brier
    score, threshold, and precision, recall and F1 at that threshold. A regressor: per-regime holdout errors weighted
    by the regimes its labelled rows went to (RMSE as the root of the weighted mean square, MAE and coverage as
    weighted means), with the weights; without labelled rows, only the per-regime figures.
    """
    holdout = (manifest.get("metrics") or {}).get("holdout")
    if not isinstance(holdout, Mapping):
        return None
    regimes = holdout.get("regimes")
    if not isinstance(regimes, Mapping):  # a classifier
        return {k: holdout[k] for k in (*BINARY_PROMISE, "rows") if k in holdout}  # a multiclass one has 3
    members = [m for m in manifest.get("members") or () if m.get("name") in regimes]
    out: dict = {"regimes": {name: {k: m.get(k) for k in ("rmse", "mae", "coverage", "rows")}
                             for name, m in regimes.items()}}
    counts = Counter(_regime(r.instance, members) for r in rows) if members else Counter()
    if not counts:
        return out
    n = sum(counts.values())
    share = {name: count / n for name, count in counts.items()}
    out["regime_mix"] = {name: round(s, 4) for name, s in share.items()}
    out["rmse"] = math.sqrt(sum(s * regimes[name]["rmse"] ** 2 for name, s in share.items()))
    out["mae"] = sum(s * regimes[name]["mae"] for name, s in share.items())
    out["coverage"] = sum(s * regimes[name]["coverage"] for name, s in share.items())
    return out


def _verdict_reference(expected: Mapping | None, classifier: bool, binary: bool = False) -> dict:
    """The numbers a verdict holds a version to (a regressor's coverage is held to its nominal level instead).

    A binary classifier's also its ROC AUC (its other figures at a threshold, or of P(positive) averaged over
    the rows, move with the share of positives in the traffic: shown, not judged)."""
    keys = (*CLASSIFIER_PROMISE, "roc_auc") if binary else CLASSIFIER_PROMISE if classifier else ("rmse", "mae")
    return {k: float(expected[k]) for k in keys if expected and isinstance(expected.get(k), int | float)
            and not isinstance(expected.get(k), bool)}


def _read_manifests(store: Store, model: str, versions: set[str]) -> tuple[dict[str, dict], dict[str, str]]:
    """The manifest of each version still in the store, and why the others have none."""
    manifests, missing = {}, {}
    for version in sorted(versions):
        try:
            manifests[version] = read_bundle(store, model, version).manifest
        except NotFound:
            missing[version] = "not in the store (the shipped model, or deleted by retention)"
        except CorruptBundle as exc:
            missing[version] = f"unreadable: {exc}"
    return manifests, missing


# ---- the canary ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CanaryOutcome:
    """The canary judged on live labels: the decision, its evidence, and what was done about it."""

    canary: str | None
    stable: str | None
    percent: float = 0.0
    decision: str = "none"  # "none" (no canary), "promote", "rollback" or "undecided"
    evidence: str = "no canary in the serving pointer"
    labels: Mapping[str, int] = field(default_factory=dict)
    tolerance: Mapping[str, float] = field(default_factory=dict)
    action: str = "none"  # "promoted", "rolled back", "left serving", "not applied: ...", "lost-race", "none"
    pointer: ServingPointer | None = None  # after the action, when it moved

    def to_dict(self) -> dict:
        """JSON-ready outcome, naming what it was judged on."""
        out = {"canary": self.canary, "stable": self.stable, "percent": self.percent, "decision": self.decision,
               "judged_on": "live labels", "evidence": self.evidence, "labels": dict(self.labels),
               "tolerance": {k: float(f"{v:.4g}") for k, v in self.tolerance.items()}, "action": self.action}
        if self.pointer is not None:
            p = self.pointer
            out["pointer"] = {"stable": p.stable, "previous": list(p.previous), "canary": p.canary,
                              "canary_percent": p.canary_percent}
        return out


def canary_tolerance(spec: ModelSpec, policy: GatePolicy, stable_expected: Mapping | None) -> dict[str, float]:
    """How much worse than stable a canary may be on live labels, from the gate's policy.

    A classifier: accuracy and macro F1 by their tolerances; a binary one also ROC AUC by `roc_auc_tolerance`
    (the gate's default of 1 never fails it: only shown as evidence). A regressor: RMSE by the gate's tolerance scaled
    by stable's expected RMSE on its labelled rows' regimes over its first regime's (the gate's own scaling per
    regime), coverage by the interval level minus `coverage_min`.
    """
    if spec.is_classifier:
        tolerance = {"accuracy": policy.accuracy_tolerance, "macro_f1": policy.macro_f1_tolerance}
        if spec.is_binary:
            tolerance["roc_auc"] = policy.roc_auc_tolerance
        return tolerance
    scale = 1.0
    if stable_expected and isinstance(stable_expected.get("rmse"), int | float):
        first = next(iter(stable_expected["regimes"].values()), {}).get("rmse")
        if isinstance(first, int | float) and first > 0:
            scale = stable_expected["rmse"] / first
    level = spec.target.interval or 0.9
    return {"rmse": policy.tolerance * scale, "coverage": max(0.0, level - policy.coverage_min)}


def judge_canary(store: Store, spec: ModelSpec, pointer: ServingPointer | None, report: MonitorReport, *,
                 expected: Mapping[str, Mapping], opts: MonitorOptions) -> CanaryOutcome:
    """Compare the pointer's canary with its stable on live labels and, unless told not to, act on the decision."""
    if pointer is None or pointer.canary is None:
        return CanaryOutcome(None, pointer.stable if pointer else None)
    canary_q: VersionQuality | None = report.version(pointer.canary, "canary")
    stable_q: VersionQuality | None = report.version(pointer.stable, "stable")
    tolerance = canary_tolerance(spec, GatePolicy.of(spec, opts.tolerances), expected.get(pointer.stable))
    comparison: Comparison = compare_versions(canary_q, stable_q, tolerance, opts.min_labels)
    base = dict(canary=pointer.canary, stable=pointer.stable, percent=pointer.canary_percent,
                decision=comparison.decision, evidence=comparison.evidence, tolerance=tolerance,
                labels={"canary": canary_q.labels if canary_q else 0, "stable": stable_q.labels if stable_q else 0,
                        "min_labels": opts.min_labels})
    if comparison.decision == "undecided":
        return CanaryOutcome(**base, action="left serving")
    if opts.dry_run or not opts.canary_decision:
        return CanaryOutcome(**base, action="not applied: " + ("--dry-run" if opts.dry_run else "--no-canary-decision"))
    try:  # only the canary judged: if a run has published another since, the pointer is left alone
        published = resolve_canary(store, spec.name, accept=comparison.decision == "promote",
                                   expected_canary=pointer.canary)
    except PointerRace as exc:
        return CanaryOutcome(**base, action=f"lost-race: {exc}")
    action = "promoted" if comparison.decision == "promote" else "rolled back"
    log.warning("%s canary %s %s on live labels: %s", spec.name, pointer.canary, action, comparison.evidence)
    return CanaryOutcome(**base, action=action, pointer=published.after)


# ---- metrics -------------------------------------------------------------------------------------------

def metric_points(report: MonitorReport, min_labels: int) -> list[MetricPoint]:
    """The run's points: realised metrics only for versions with at least `min_labels` labels (see the docstring)."""
    points = [MetricPoint("feedback_unknown_ids", report.counts.unknown_ids,
                          {"model_version": NO_VERSION, "role": NO_VERSION})]
    for v in report.versions:
        labels = {"model_version": v.model_version, "role": v.role}
        points += [MetricPoint("live_labelled", v.labels, labels),
                   MetricPoint("live_predictions", v.predictions, labels)]
        if v.estimated_accuracy is not None and v.estimated_accuracy.value is not None:
            points.append(MetricPoint("live_accuracy_estimated", v.estimated_accuracy.value, labels))
        if v.labels < min_labels:
            continue
        for name, metric_name in REALISED_METRICS:
            metric = v.metrics.get(name)
            if metric is not None and metric.value is not None and metric.n > 0:
                points.append(MetricPoint(metric_name, metric.value, labels))
    return points


SEGMENT_METRICS = (("accuracy", "live_segment_accuracy"), ("rmse", "live_segment_rmse"),
                   ("coverage", "live_segment_coverage"))


def segment_points(segments: Sequence[dict], min_labels: int) -> list[MetricPoint]:
    """Per segment value and version: its labels, and its realised accuracy, RMSE or coverage with enough of them;
    labelled `segment` = `field=value` (at most SEGMENT_VALUES values per field)."""
    points = []
    for part in segments:
        for v in part["versions"]:
            labels = {"model_version": v["model_version"], "role": v["role"], "segment": part["segment"]}
            points.append(MetricPoint("live_segment_labelled", v["labels"], labels))
            if v["labels"] < min_labels:
                continue
            for name, metric_name in SEGMENT_METRICS:
                metric = v["metrics"].get(name)
                if metric is not None and metric["value"] is not None:
                    points.append(MetricPoint(metric_name, metric["value"], labels))
    return points


def drift_points(drift: Mapping) -> list[MetricPoint]:
    """The stable version's drift figures: share of drifted features, prediction drift and attribution drift."""
    if drift.get("status") in (None, "no_reference", "not_enough_data"):
        return []
    labels = {"model_version": drift["version"], "role": "stable"}
    points = [MetricPoint("live_feature_drift_share", drift["share_drifted"], labels)]
    if drift.get("prediction_drift"):
        points.append(MetricPoint("live_prediction_drift", drift["prediction_drift"]["statistic"], labels))
    if drift.get("attribution_drift"):
        points.append(MetricPoint("live_attribution_drift", drift["attribution_drift"]["score"], labels))
    return points


def _loaded(spec: ModelSpec, manifests: Mapping[str, dict], version: str | None, store: Store) -> ServingModel | None:
    """The version's model as served (for its attributions), or None when its bundle is not in the store."""
    if version is None or version not in manifests:
        return None
    try:
        return serving_model(spec, read_bundle(store, spec.name, version))
    except (NotFound, CorruptBundle):
        return None


# ---- the report ----------------------------------------------------------------------------------------

def build_monitor_report(spec: ModelSpec, report: MonitorReport, *, expected: Mapping[str, Mapping],
                         missing: Mapping[str, str], pointer: ServingPointer | None, canary: CanaryOutcome,
                         generated_at: datetime) -> dict:
    """The JSON report: live_quality's report with each version's promise, the pointer and the canary outcome."""
    out = report.to_dict()
    versions = []
    for v in out["versions"]:
        version = v["model_version"]
        promise = expected.get(version)
        entry = {**v, "expected": _rounded(promise) if promise is not None else None,
                 "expected_note": ("holdout metrics of the version's manifest" if promise is not None
                                   else missing.get(version, "no holdout metrics in its manifest"))}
        if spec.is_binary and "threshold" in v:
            entry["threshold_note"] = (f"{v['positive']} when P({v['positive']}) >= {v['threshold']:g} (the "
                                       f"version's manifest)" if v["threshold"] is not None else
                                       f"its logged answers ({missing.get(version, 'no usable threshold')})")
        versions.append(entry)
    document = {
        "schema_version": SCHEMA_VERSION,
        "kind": "monitor",
        "generated_at": generated_at.isoformat(timespec="seconds"),
        "model": spec.name,
        "title": spec.title,
        "task": "classifier" if spec.is_classifier else "regressor",
        "target": {"name": spec.target.name, "unit": spec.target.unit, "interval": spec.target.interval},
        "window": out["window"],
        "min_labels": out["min_labels"],
        "confidence": out["confidence"],
        "pointer": None if pointer is None else {"stable": pointer.stable, "previous": list(pointer.previous),
                                                 "canary": pointer.canary, "canary_percent": pointer.canary_percent},
        "feedback": out["feedback"],
        "versions": versions,
        "guards": out["guards"],
        "canary": canary.to_dict(),
    }
    if spec.is_binary:
        document["positive"] = spec.target.positive
    return document


def _rounded(value):
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, Mapping):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def write_report(store: Store, model: str, document: dict, stamp: str) -> str:
    """Write the report as JSON and HTML under its timestamp and as `latest`; returns the stamped JSON's key."""
    prefix = monitor_prefix(model)
    body_json = json.dumps(document, indent=1).encode()
    body_html = render_monitor_html(document).encode()
    for name in (stamp, LATEST):
        store.write(f"{prefix}{name}.json", body_json)
        store.write(f"{prefix}{name}.html", body_html)
    return f"{prefix}{stamp}.json"


# ---- the run -------------------------------------------------------------------------------------------

def _summary_version(v: dict) -> dict:
    metrics = {k: {f: m[f] for f in ("value", "low", "high", "n")} for k, m in v["metrics"].items()}
    estimate = v["estimated_accuracy"]
    out = {"model_version": v["model_version"], "role": v["role"], "labels": v["labels"],
           "predictions": v["predictions"], "verdict": v["verdict"], "reasons": v["reasons"], "realised": metrics,
           "estimated_accuracy": None if estimate is None else {f: estimate[f] for f in ("value", "low", "high", "n")},
           "expected": v["expected"]}
    if "threshold" in v:  # a binary classifier: the threshold its precision and recall were measured at
        out["threshold"] = v["threshold"]
    return out


def run_monitor(store: Store, opts: MonitorOptions, now: datetime | None = None) -> dict:
    """One monitor run of one model; the returned summary is the command's last output line."""
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    spec = load_spec(opts.model_name)
    pointer, _ = read_pointer(store, spec.name)
    feedback_from = now - timedelta(hours=opts.feedback_hours)
    engine = open_engine(store, opts.log_prefix, feedback_from - timedelta(days=opts.prediction_days), now,
                         engine=opts.log_engine, table=opts.log_table, model=spec.name)
    stable = pointer.stable if pointer is not None else None
    try:
        joined: Joined = join_feedback(engine, spec.name, feedback_from, fields=request_fields(spec),
                                       segments=spec.segments, served_rows=SERVED_ROWS)
        by_segment = {name: segment_stats(engine, i) for i, name in enumerate(spec.segments)}
        served = served_of(engine, stable, request_fields(spec), SERVED_ROWS) if stable else []
        pairs = shadow_pairs(engine, spec.name)
        shadow = pointer.shadow if pointer is not None else None
        shadowed = shadow_predictions(engine, spec.name, shadow, SHADOW_SAMPLE_ROWS) if shadow else []
    finally:
        engine.close()
    joined_s = time.perf_counter() - started
    seen = {p.model_version for p in joined.predictions} | {r.model_version for r in joined.rows}
    if pointer is not None:
        seen |= {pointer.stable, *([pointer.canary] if pointer.canary else [])}
    manifests, missing = _read_manifests(store, spec.name, seen)
    rows_of: dict[str, list[JoinedRow]] = {}
    for r in joined.rows:
        rows_of.setdefault(r.model_version, []).append(r)
    expected = {version: promise for version, manifest in manifests.items()
                if (promise := expected_metrics(manifest, rows_of.get(version, []))) is not None}
    thresholds = {v: decision_threshold(m) for v, m in manifests.items()} if spec.is_binary else None
    report = monitor(joined, min_labels=opts.min_labels, confidence=opts.confidence,
                     expected={v: _verdict_reference(e, spec.is_classifier, spec.is_binary)
                               for v, e in expected.items()},
                     interval_level=spec.target.interval or 0.9, resamples=opts.resamples, binary=spec.is_binary,
                     thresholds=thresholds)

    canary = judge_canary(store, spec, pointer, report, expected=expected, opts=opts)
    judging = dict(min_labels=opts.min_labels, confidence=opts.confidence,
                   expected={v: _verdict_reference(e, spec.is_classifier, spec.is_binary) for v, e in expected.items()},
                   interval_level=spec.target.interval or 0.9, resamples=opts.resamples, binary=spec.is_binary,
                   thresholds=thresholds)
    segments = [part for name, stats in by_segment.items() for part in segment_quality(joined, name, stats, **judging)]
    total = sum(s.predictions for s in joined.predictions if s.model_version == stable)
    drift = monitor_drift(spec, stable, manifest=manifests.get(stable), model=_loaded(spec, manifests, stable, store),
                          served=served, total=total, thresholds=opts.drift_thresholds,
                          hash_key=spec_hash_key(spec, store.uri))
    document = build_monitor_report(spec, report, expected=expected, missing=missing, pointer=pointer, canary=canary,
                                    generated_at=now)
    shadow_manifest = manifests.get(shadow) if shadow else None
    if shadow and shadow_manifest is None:
        shadow_manifest, _ = _read_manifests(store, spec.name, {shadow})
        shadow_manifest = shadow_manifest.get(shadow)
    shadow_report = shadow_section(
        pairs, shadow=shadow, stable=stable, percent=pointer.shadow_percent if shadow else None,
        tolerance=canary_tolerance(spec, GatePolicy.of(spec, opts.tolerances), expected.get(stable)),
        min_labels=opts.min_labels, predictions=shadowed,
        reference_predictions=((shadow_manifest or {}).get("reference") or {}).get("predictions"),
        classifier=spec.is_classifier, target=spec.target.name, thresholds=opts.drift_thresholds)
    document.update(segments=segments, drift=drift, shadow=shadow_report,
                    joined_rows={"used": len(joined.rows), "sampled": joined.sampled,
                                 "note": f"metrics from a hashed sample of at most {SAMPLE_ROWS} joined rows per "
                                         f"version and role" if joined.sampled else "metrics from every joined row"})
    location = write_report(store, spec.name, document, now.strftime("%Y%m%dT%H%M%SZ"))
    cards = refresh_cards(store, spec, sorted(manifests), monitor=document,
                          monitor_key=latest_report_key(spec.name))
    for v in report.versions:
        if v.verdict == "degraded":
            log.warning("%s %s (%s) degraded on live labels: %s", spec.name, v.model_version, v.role,
                        "; ".join(v.reasons))
    sink = write_metrics([*metric_points(report, opts.min_labels), *segment_points(segments, opts.min_labels),
                          *drift_points(drift), *shadow_points(shadow_report, opts.min_labels)], opts.metrics)
    return {"command": "monitor", "store": store.uri, "model": spec.name, "decision": "monitored",
            "window": document["window"], "min_labels": opts.min_labels, "feedback": document["feedback"],
            "versions": [_summary_version(v) for v in document["versions"]], "canary": document["canary"],
            "shadow": {k: shadow_report[k] for k in ("version", "verdict", "evidence")},
            "report": location, "report_html": location.removesuffix(".json") + ".html",
            "cards": sorted(cards["written"].values()),
            "metrics_sink": sink,
            "durations_s": {"join": round(joined_s, 3), "total": round(time.perf_counter() - started, 3)}}
