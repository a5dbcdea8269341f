"""Metrics through the real Cloud Monitoring client, against a local server of the real protocol."""
from __future__ import annotations

import pytest

from retrain_job.metrics import METRIC_NAMES, METRIC_PREFIX, MetricPoint, MetricsTarget, write_metrics


def test_points_arrive_as_valid_time_series(monitoring):
    target = MetricsTarget(project="demo-project", endpoint=monitoring.endpoint, job="retrain", task="0", model="co2")
    sink = write_metrics([MetricPoint("drift_share", 0.5), MetricPoint("feature_drift_score", 0.4,
                                                                       {"feature": "body_mass_g"})], target)
    assert sink == "monitoring" and not monitoring.rejected
    request = monitoring.requests[0]
    assert request.name == "projects/demo-project"
    by_type = {ts.metric.type: ts for ts in request.time_series}
    drift = by_type["custom.googleapis.com/tabular/drift_share"]
    assert drift.points[0].value.double_value == 0.5 and drift.resource.type == "generic_task"
    assert drift.resource.labels["job"] == "retrain" and drift.resource.labels["project_id"] == "demo-project"
    assert dict(drift.metric.labels) == {"model": "co2"}  # every point names its model
    labels = by_type["custom.googleapis.com/tabular/feature_drift_score"].metric.labels
    assert dict(labels) == {"model": "co2", "feature": "body_mass_g"}


def test_more_than_200_series_are_chunked(monitoring):
    target = MetricsTarget(project="p", endpoint=monitoring.endpoint)
    points = [MetricPoint("feature_drift_score", i, {"feature": f"f{i}"}) for i in range(450)]
    assert write_metrics(points, target) == "monitoring"
    assert [len(r.time_series) for r in monitoring.requests] == [200, 200, 50]
    assert not monitoring.rejected


def test_fake_enforces_the_api_limits(monitoring):
    """The fake can fail: a request breaking a limit is rejected, and the job falls back to the log."""
    target = MetricsTarget(project="p", endpoint=monitoring.endpoint)
    sink = write_metrics([MetricPoint("drift_share", 1), MetricPoint("drift_share", 2)], target)  # same series twice
    assert sink.startswith("log (error") and monitoring.rejected


def test_no_project_logs_and_succeeds(caplog):
    caplog.set_level("INFO")
    assert write_metrics([MetricPoint("job_success", 1.0)], MetricsTarget(project=None, model="co2")) == "log"
    assert "custom.googleapis.com/tabular/job_success" in caplog.text and '"model": "co2"' in caplog.text


def test_metric_names_cover_both_kinds_of_model():
    assert METRIC_PREFIX == "custom.googleapis.com/tabular/"
    for name in ("candidate_accuracy", "stable_accuracy", "candidate_log_loss", "candidate_rmse", "stable_rmse",
                 "candidate_coverage", "drift_share", "feature_drift_score", "prediction_drift_score", "promoted",
                 "training_rows", "labelled_rows_rejected", "job_duration_s", "job_success"):
        assert name in METRIC_NAMES


def test_unknown_metric_name_is_a_bug():
    with pytest.raises(ValueError):
        write_metrics([MetricPoint("made_up", 1.0)], MetricsTarget(project=None))
