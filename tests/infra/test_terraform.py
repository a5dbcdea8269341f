"""The Terraform contract, read with python-hcl2: resources, least privilege, metrics that really exist."""
from __future__ import annotations

import json
import re

import hcl2
import pytest

from retrain_job.metrics import METRIC_NAMES
from tests.conftest import REPO

TF = REPO / "terraform"
# Cloud Run's built-in metrics that alerts and charts may use.
CLOUD_RUN_METRICS = {"run.googleapis.com/request_count", "run.googleapis.com/request_latencies",
                     "run.googleapis.com/container/instance_count",
                     "run.googleapis.com/container/memory/utilizations",
                     "run.googleapis.com/job/completed_execution_count"}


def _clean(value):
    """python-hcl2 keeps string quotes and block markers; strip both."""
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items() if k != "__is_block__"}
    return value


def _load(path) -> dict:
    with open(path) as f:
        return _clean(hcl2.load(f))


@pytest.fixture(scope="module")
def tf() -> dict:
    merged: dict = {"resource": {}, "variable": {}, "output": {}, "locals": {}}
    for path in sorted(TF.glob("*.tf")):
        doc = _load(path)
        for block in doc.get("resource", []):
            for rtype, named in block.items():
                merged["resource"].setdefault(rtype, {}).update(named)
        for block in doc.get("variable", []):
            merged["variable"].update(block)
        for block in doc.get("output", []):
            merged["output"].update(block)
        for block in doc.get("locals", []):
            merged["locals"].update(block)
    return merged


def _one(tf, rtype: str) -> dict:
    resources = tf["resource"].get(rtype, {})
    assert len(resources) == 1, f"expected one {rtype}, found {list(resources)}"
    return next(iter(resources.values()))


def test_required_resources_exist(tf):
    r = tf["resource"]
    for rtype in ("google_storage_bucket", "google_cloud_run_v2_service", "google_cloud_run_v2_job",
                  "google_cloud_scheduler_job", "google_logging_project_sink", "google_monitoring_dashboard"):
        assert r.get(rtype), rtype
    assert len(r["google_service_account"]) == 3
    assert len(r["google_logging_metric"]) >= 4
    assert len(r["google_monitoring_alert_policy"]) >= 6


def test_bucket_is_private_versioned_and_lifecycled(tf):
    bucket = _one(tf, "google_storage_bucket")
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["versioning"][0]["enabled"] is True
    prefixes = [p for rule in bucket["lifecycle_rule"] for p in rule["condition"][0].get("matches_prefix", [])]
    assert any(p.startswith("reports/") for p in prefixes) and "${local.sink_log_prefix}" in prefixes
    assert any("days_since_noncurrent_time" in rule["condition"][0] for rule in bucket["lifecycle_rule"])


def test_function_is_a_cloud_run_function_with_traffic_split(tf):
    svc = _one(tf, "google_cloud_run_v2_service")
    assert svc["build_config"][0]["function_target"] == "predict"
    template = svc["template"][0]
    assert template["service_account"] == "${google_service_account.function.email}"
    for field in ("max_instance_request_concurrency", "timeout"):
        assert "var." in str(template[field])
    assert "var.function_min_instances" in str(template["scaling"])
    limits = template["containers"][0]["resources"][0]["limits"]
    assert limits == {"cpu": "${var.function_cpu}", "memory": "${var.function_memory}"}
    stable = svc["traffic"][0]
    candidate = svc["dynamic"][0]["traffic"]["content"][0]
    assert stable["percent"] == "${100 - var.candidate_percent}"
    assert candidate["percent"] == "${var.candidate_percent}" and candidate["tag"] == "${var.candidate_tag}"


def test_invoker_is_private_unless_a_variable_allows(tf):
    assert tf["variable"]["allow_public_invoker"]["default"] is False
    invokers = tf["resource"]["google_cloud_run_v2_service_iam_member"]["invokers"]
    assert invokers["for_each"] == '${toset(concat(var.invoker_members, var.allow_public_invoker ? ["allUsers"] : []))}'
    text = "\n".join(p.read_text() for p in TF.glob("*.tf"))
    # the only allUsers in the configuration is the one guarded by the variable
    assert text.count('"allUsers"') == 2  # the guarded grant and the invoker_members validation
    assert "allAuthenticatedUsers" not in text.replace('"allUsers", "allAuthenticatedUsers"', "")


def test_least_privilege_and_no_primitive_roles(tf):
    roles: dict[str, set] = {}
    for rtype, named in tf["resource"].items():
        if rtype.endswith("_iam_member"):
            for body in named.values():
                assert body["role"] not in ("roles/owner", "roles/editor", "roles/viewer"), body
                member = str(body["member"])
                who = next((sa for sa in ("function", "job", "scheduler") if f"google_service_account.{sa}." in member),
                           member)
                roles.setdefault(who, set()).add(body["role"])
    assert roles["function"] == {"roles/storage.objectViewer", "roles/logging.logWriter"}
    assert roles["scheduler"] == {"roles/run.invoker"}
    assert roles["job"] == {"roles/storage.objectUser", "roles/monitoring.metricWriter", "roles/logging.logWriter"}


def test_scheduler_runs_the_job_with_oauth(tf):
    sched = _one(tf, "google_cloud_scheduler_job")
    target = sched["http_target"][0]
    assert target["uri"].endswith(":run") and target["http_method"] == "POST"
    assert "google_service_account.scheduler.email" in target["oauth_token"][0]["service_account_email"]
    assert sched["schedule"] == "${var.retrain_schedule}" and sched["time_zone"] == "${var.retrain_time_zone}"
    job = _one(tf, "google_cloud_run_v2_job")
    container = job["template"][0]["template"][0]["containers"][0]
    assert container["command"] == ["python", "-m", "retrain_job"]


def test_every_variable_is_documented_and_tfvars_set_only_declared_ones(tf):
    for name, spec in tf["variable"].items():
        assert spec.get("description"), f"variable {name} has no description"
    required = {n for n, spec in tf["variable"].items() if "default" not in spec}
    for env in ("dev", "prod"):
        values = _load(TF / "environments" / f"{env}.tfvars")
        assert set(values) <= set(tf["variable"]), set(values) - set(tf["variable"])
        assert required <= set(values), required - set(values)
        assert values["environment"] == env


def _referenced_metrics() -> set[str]:
    text = (TF / "monitoring.tf").read_text() + (TF / "dashboards" / "penguins.json").read_text()
    found = set(re.findall(r'metric\.type=\\?"([^"\\]+)', text))
    found |= set(re.findall(r'\\"__name__\\"=\\"([^"\\]+)', text))
    return found


def test_alerts_and_dashboard_refer_to_metrics_that_exist(tf):
    log_metrics = {body["name"].replace("${var.environment}", "${environment}")
                   for body in tf["resource"]["google_logging_metric"].values()}
    referenced = _referenced_metrics()
    assert len(referenced) >= 8
    for metric in referenced:
        if metric.startswith("custom.googleapis.com/penguins/"):
            assert metric.rsplit("/", 1)[1] in METRIC_NAMES, metric
        elif metric.startswith("logging.googleapis.com/user/"):
            name = metric.rsplit("/", 1)[1]
            name = re.sub(r"\$\{google_logging_metric\.(\w+)\.name\}",
                          lambda m: tf["resource"]["google_logging_metric"][m.group(1)]["name"], name)
            assert name.replace("${var.environment}", "${environment}") in log_metrics, metric
        else:
            assert metric in CLOUD_RUN_METRICS, metric


def test_log_metrics_read_fields_the_function_really_logs(tf, client, capfd):
    from shared.examples import SEED_EXAMPLES
    client.post("/predict", json=SEED_EXAMPLES[0][0])
    client.post("/predict", json={"bill_length_mm": -1})
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    logged = set().union(*(line.keys() for line in lines))
    bodies = [*tf["resource"]["google_logging_metric"].values(), _one(tf, "google_logging_project_sink")]
    fields = set()
    for body in bodies:
        fields |= set(re.findall(r"jsonPayload\.(\w+)", json.dumps(body)))
    assert fields >= {"latency_ms", "status", "model_version", "species", "event", "fallback"}
    assert fields <= logged, fields - logged


def test_dashboard_json_renders_and_has_the_charts():
    text = (TF / "dashboards" / "penguins.json").read_text()
    rendered = json.loads(text.replace("${environment}", "dev").replace("${service_name}", "penguins-fn-dev"))
    titles = " | ".join(t["widget"]["title"] for t in rendered["mosaicLayout"]["tiles"])
    for needle in ("p50", "p95", "p99", "response code", "Instances", "Memory", "class mix", "drifted",
                   "Model version"):
        assert needle in titles, needle

