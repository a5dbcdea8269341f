"""Custom metrics in Cloud Monitoring, within the API's limits; to the log when there is no project.

Every series gets one point per request and a request carries at most 200 series. The monitored resource
is `generic_task`, the type meant for batch work: project, location, namespace, job and task id. Every
point carries the metric label `model` (the spec's name); regressors' per-regime series also `regime`; the
monitor's `live_*` series and `feedback_unknown_ids` also `model_version` and `role` (retrain_job/monitor/run.py).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

from shared.settings import JOB, Settings

log = logging.getLogger(__name__)

METRIC_PREFIX = "custom.googleapis.com/tabular/"
NAMESPACE = "tabular"  # the generic_task resource's namespace; the model is a metric label
MAX_SERIES_PER_REQUEST = 200
# Every metric the job writes; Terraform's alert policies and dashboard are checked against this list.
METRIC_NAMES = (
    "drift_share", "feature_drift_score", "prediction_drift_score",
    "candidate_accuracy", "stable_accuracy", "candidate_log_loss",  # classifiers
    "candidate_roc_auc", "stable_roc_auc",  # binary classifiers
    "candidate_rmse", "stable_rmse", "candidate_coverage",  # regressors, labelled by regime
    "promoted", "training_rows", "labelled_rows_rejected", "job_duration_s", "job_success",
    # the monitor (python -m retrain_job monitor), labelled model_version and role; live_accuracy, live_coverage and
    # the other realised metrics only for a version with at least MONITOR_MIN_LABELS labels
    "live_accuracy", "live_accuracy_estimated", "live_macro_f1", "live_log_loss",  # classifiers
    "live_roc_auc", "live_pr_auc", "live_brier", "live_precision", "live_recall", "live_f1",  # binary classifiers
    "live_rmse", "live_mae", "live_coverage",  # regressors
    "live_labelled", "live_predictions", "feedback_unknown_ids",
    # per segment value (label `segment` = field=value, at most 10 values per field), and the stable version's drift
    "live_segment_labelled", "live_segment_accuracy", "live_segment_rmse", "live_segment_coverage",
    "live_feature_drift_share", "live_prediction_drift", "live_attribution_drift",
    # the shadow version (label `version`) beside stable: agreement on the same requests, and the live quality
    # difference once labels exist
    "live_shadow_agreement", "live_shadow_quality_difference",
)


@dataclass(frozen=True)
class MetricPoint:
    """One value of one series (a metric name plus its labels)."""

    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricsTarget:
    """Where points go: a project (and optionally an endpoint, for the local fake server)."""

    project: str | None
    endpoint: str | None = None
    location: str = "global"
    job: str = "local"
    task: str = "0"
    model: str = ""  # the `model` label of every point

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> MetricsTarget:
        """The project, endpoint, location, job, task and model of this execution, from the job's settings."""
        s = settings if settings is not None else Settings.from_env(reader=JOB)
        return cls(project=s.metrics_project or s.google_cloud_project, endpoint=s.metrics_endpoint,
                   location=s.location, job=s.job_name, task=str(s.task_index), model=s.model_name)


def build_time_series(points: list[MetricPoint], target: MetricsTarget, now: float | None = None) -> list:
    """TimeSeries messages, one gauge point each, on the generic_task resource."""
    from google.cloud import monitoring_v3  # noqa: PLC0415

    now = time.time() if now is None else now
    seconds, nanos = int(now), int((now - int(now)) * 1e9)
    series = []
    for p in points:
        ts = monitoring_v3.TimeSeries()
        ts.metric.type = METRIC_PREFIX + p.name
        ts.metric.labels.update({"model": target.model, **p.labels})
        ts.resource.type = "generic_task"
        ts.resource.labels.update({"project_id": target.project or "local", "location": target.location,
                                   "namespace": NAMESPACE, "job": target.job, "task_id": target.task})
        ts.points = [monitoring_v3.Point({"interval": {"end_time": {"seconds": seconds, "nanos": nanos}},
                                          "value": {"double_value": float(p.value)}})]
        series.append(ts)
    return series


def monitoring_client(endpoint: str | None = None):
    """The real MetricServiceClient: default credentials, or plain gRPC to a local endpoint (tests)."""
    from google.cloud import monitoring_v3  # noqa: PLC0415

    if endpoint:
        import grpc  # noqa: PLC0415
        from google.cloud.monitoring_v3.services.metric_service.transports import (  # noqa: PLC0415
            MetricServiceGrpcTransport,
        )

        channel = grpc.insecure_channel(endpoint)
        return monitoring_v3.MetricServiceClient(transport=MetricServiceGrpcTransport(channel=channel))
    return monitoring_v3.MetricServiceClient()


def write_metrics(points: list[MetricPoint], target: MetricsTarget) -> str:
    """Send the points (chunks of 200 series); without a project, or on any API error, log them instead.

    Returns where they went: "monitoring", "log" or "log (error: ...)". Metrics never fail the job.
    """
    for p in points:
        if p.name not in METRIC_NAMES:
            raise ValueError(f"undeclared metric {p.name}")
    if not target.project:
        _log_points(points, target)
        return "log"
    try:
        client = monitoring_client(target.endpoint)
        series = build_time_series(points, target)
        for start in range(0, len(series), MAX_SERIES_PER_REQUEST):
            client.create_time_series(name=f"projects/{target.project}",
                                      time_series=series[start:start + MAX_SERIES_PER_REQUEST], timeout=10)
    except Exception as exc:  # credentials, network, quota: report and carry on
        log.warning("metrics not written to Cloud Monitoring (%s); logging them", type(exc).__name__)
        _log_points(points, target)
        return f"log (error: {type(exc).__name__})"
    return "monitoring"


def _log_points(points: list[MetricPoint], target: MetricsTarget) -> None:
    for p in points:
        log.info("metric %s", json.dumps({"metric": METRIC_PREFIX + p.name, "value": p.value,
                                          "labels": {"model": target.model, **p.labels}}))
