"""Metrics through the real Cloud Monitoring client, against a local server of the real protocol."""
from __future__ import annotations

import pytest

from retrain_job.metrics import MetricPoint, MetricsTarget, write_metrics
from testbed.monitoring import FakeMetricService


@pytest.fixture
def monitoring():
    fake = FakeMetricService().start()
    yield fake
    fake.stop()


def test_points_arrive_as_valid_time_series(monitoring):
    target = MetricsTarget(project="demo-project", endpoint=monitoring.endpoint, job="retrain", task="0")
    sink = write_metrics([MetricPoint("drift_share", 0.5), MetricPoint("feature_drift_score", 0.4,
                                                                       {"feature": "body_mass_g"})], target)
    assert sink == "monitoring" and not monitoring.rejected
    request = monitoring.requests[0]
    assert request.name == "projects/demo-project"
    by_type = {ts.metric.type: ts for ts in request.time_series}
    drift = by_type["custom.googleapis.com/penguins/drift_share"]
    assert drift.points[0].value.double_value == 0.5 and drift.resource.type == "generic_task"
    assert drift.resource.labels["job"] == "retrain" and drift.resource.labels["project_id"] == "demo-project"
    assert by_type["custom.googleapis.com/penguins/feature_drift_score"].metric.labels["feature"] == "body_mass_g"


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
    assert write_metrics([MetricPoint("job_success", 1.0)], MetricsTarget(project=None)) == "log"
    assert "custom.googleapis.com/penguins/job_success" in caplog.text


def test_unknown_metric_name_is_a_bug():
    with pytest.raises(ValueError):
        write_metrics([MetricPoint("made_up", 1.0)], MetricsTarget(project=None))
