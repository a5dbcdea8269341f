"""The Terraform contract, read with python-hcl2: resources, least privilege, metrics that really exist.

The root module (terraform/*.tf) holds what the models share: the bucket, the log sink, the log-based metrics
and the service accounts. Everything per model (service, job, schedule, alerts, dashboard) is in
terraform/modules/model, instantiated once per model (`for_each = var.models`): the assertions on it hold for
every instance, and the tests check that the instances are exactly the models of specs/, with their own names.
"""
from __future__ import annotations

import json
import re
import tomllib

import hcl2
import pytest

from retrain_job.metrics import METRIC_NAMES, METRIC_PREFIX
from testbed.servers import REPO

TF = REPO / "terraform"
MODULE = TF / "modules" / "model"
DASHBOARD = MODULE / "dashboards" / "model.json"
MODELS = sorted(tomllib.loads(p.read_text())["name"] for p in (REPO / "specs").glob("*/spec.toml"))
# Cloud Run's built-in metrics that alerts and charts may use.
CLOUD_RUN_METRICS = {"run.googleapis.com/request_count", "run.googleapis.com/request_latencies",
                     "run.googleapis.com/container/instance_count",
                     "run.googleapis.com/container/memory/utilizations",
                     "run.googleapis.com/job/completed_execution_count"}
PER_MODEL_TYPES = ("google_cloud_run_v2_service", "google_cloud_run_v2_job", "google_cloud_scheduler_job",
                   "google_monitoring_alert_policy", "google_monitoring_dashboard",
                   "google_cloud_run_v2_service_iam_member", "google_cloud_run_v2_job_iam_member")
SHARED_TYPES = ("google_storage_bucket", "google_logging_project_sink", "google_logging_metric",
                "google_service_account", "google_project_iam_member", "google_storage_bucket_iam_member")


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


def _merged(directory) -> dict:
    """Resources, variables, outputs, locals and module calls of one Terraform directory."""
    merged: dict = {"resource": {}, "variable": {}, "output": {}, "locals": {}, "module": {}}
    for path in sorted(directory.glob("*.tf")):
        doc = _load(path)
        for block in doc.get("resource", []):
            for rtype, named in block.items():
                merged["resource"].setdefault(rtype, {}).update(named)
        for kind in ("variable", "output", "locals", "module"):
            for block in doc.get(kind, []):
                merged[kind].update(block)
    return merged


@pytest.fixture(scope="module")
def tf() -> dict:
    """The root module: what the models share, and the call of modules/model."""
    return _merged(TF)


@pytest.fixture(scope="module")
def mod() -> dict:
    """terraform/modules/model: one model's resources."""
    return _merged(MODULE)


@pytest.fixture(scope="module")
def call(tf) -> dict:
    """The arguments the root module passes to each instance of modules/model."""
    return tf["module"]["model"]


def _one(tf, rtype: str) -> dict:
    resources = tf["resource"].get(rtype, {})
    assert len(resources) == 1, f"expected one {rtype}, found {list(resources)}"
    return next(iter(resources.values()))


def _passed(call: dict, expression: str) -> str:
    """What the root passes for a module variable named in `${var.NAME}` (the expression itself otherwise)."""
    found = re.fullmatch(r"\$\{var\.(\w+)\}", expression)
    return call[found.group(1)] if found else expression


def _name_template(tf, local: str) -> str:
    """The per-model name a root local builds, e.g. fn-${m}-${var.environment}."""
    found = re.search(r'=>\s*"([^"]+)"', tf["locals"][local])
    assert found, tf["locals"][local]
    return found.group(1)


def _name(tf, local: str, model: str, environment: str = "dev") -> str:
    template = _name_template(tf, local)
    loop_var = re.search(r"for (\w+) in keys\(var\.models\)", tf["locals"][local]).group(1)
    return template.replace(f"${{{loop_var}}}", model).replace("${var.environment}", environment)


def test_one_module_instance_per_model(tf, mod, call):
    assert MODELS == sorted(tf["variable"]["models"]["default"]), "models' default must be the specs/ folders"
    assert call["source"] == "./modules/model" and call["for_each"] == "${var.models}"
    assert call["model"] == "${each.key}"
    assert call["service_name"] == "${local.service_names[each.key]}"
    assert call["job_name"] == "${local.job_names[each.key]}"
    # every module variable without a default is passed, and nothing undeclared is
    passed = set(call) - {"source", "for_each"}
    required = {n for n, spec in mod["variable"].items() if "default" not in spec}
    assert required <= passed, required - passed
    assert passed <= set(mod["variable"]), passed - set(mod["variable"])
    # each instance gets its own service and job, named after its model (Cloud Run: revisions add -SUFFIX)
    for env in ("dev", "prod"):
        services = [_name(tf, "service_names", m, env) for m in MODELS]
        jobs = [_name(tf, "job_names", m, env) for m in MODELS]
        assert len(set(services)) == len(set(jobs)) == len(MODELS)
        for model, service, job in zip(MODELS, services, jobs, strict=True):
            assert model in service and model in job and env in service and env in job
            assert re.fullmatch(r"[a-z][a-z0-9-]{0,40}[a-z0-9]", service), service
            assert re.fullmatch(r"[a-z][a-z0-9-]{0,50}[a-z0-9]", job), job
    # a per-model setting overrides the project-wide variable for that model only
    settings = re.findall(r"(\w+)\s*=\s*optional\(", tf["variable"]["models"]["type"])
    assert {"min_instances", "max_instances", "retrain_schedule", "alert_p95_latency_ms"} <= set(settings)
    arguments = json.dumps(call)
    for setting in settings:
        assert re.search(rf"coalesce\(each\.value\.{setting}, var\.\w+\)", arguments), setting
    # rollout state is per model: a candidate in one model's service leaves the others alone
    for field in ("stable_revision", "candidate_revision", "candidate_percent"):
        assert call[field] == f"${{lookup(var.traffic, each.key, local.no_candidate).{field}}}"


def test_required_resources_exist(tf, mod):
    r, m = tf["resource"], mod["resource"]
    for rtype in ("google_storage_bucket", "google_logging_project_sink"):
        assert r.get(rtype), rtype
    for rtype in ("google_cloud_run_v2_service", "google_cloud_run_v2_job", "google_cloud_scheduler_job",
                  "google_monitoring_dashboard"):
        assert len(m.get(rtype, {})) == 1, rtype  # one per model instance
    assert len(r["google_service_account"]) == 3
    assert len(r["google_logging_metric"]) >= 4
    assert len(m["google_monitoring_alert_policy"]) >= 6
    # per model in the module only; shared in the root only
    assert not set(PER_MODEL_TYPES) & set(r), set(PER_MODEL_TYPES) & set(r)
    assert not set(SHARED_TYPES) & set(m), set(SHARED_TYPES) & set(m)


def test_bucket_is_private_versioned_and_lifecycled(tf):
    bucket = _one(tf, "google_storage_bucket")
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["versioning"][0]["enabled"] is True
    prefixes = [p for rule in bucket["lifecycle_rule"] for p in rule["condition"][0].get("matches_prefix", [])]
    assert any(p.startswith("reports/") for p in prefixes) and "${local.sink_log_prefix}" in prefixes
    assert any("days_since_noncurrent_time" in rule["condition"][0] for rule in bucket["lifecycle_rule"])


def test_function_is_a_cloud_run_function_with_traffic_split(mod, call):
    svc = _one(mod, "google_cloud_run_v2_service")
    assert svc["name"] == "${var.service_name}"
    assert svc["build_config"][0]["function_target"] == "predict"
    assert "google_storage_bucket.models.name" in _passed(call, svc["build_config"][0]["source_location"])
    template = svc["template"][0]
    assert _passed(call, template["service_account"]) == "${google_service_account.function.email}"
    for field in ("max_instance_request_concurrency", "timeout"):
        assert "var." in str(template[field])
    assert "var.function_min_instances" in str(template["scaling"])
    assert "var.function_min_instances" in call["function_min_instances"]
    limits = template["containers"][0]["resources"][0]["limits"]
    assert limits == {"cpu": "${var.function_cpu}", "memory": "${var.function_memory}"}
    stable = svc["traffic"][0]
    candidate = svc["dynamic"][0]["traffic"]["content"][0]
    assert stable["percent"] == "${100 - var.candidate_percent}"
    assert candidate["percent"] == "${var.candidate_percent}" and candidate["tag"] == "${var.candidate_tag}"
    # each model's service serves that model alone
    env = {e["name"]: e["value"] for e in template["containers"][0]["env"]}
    assert env["MODELS"] == env["DEFAULT_MODEL"] == "${var.model}"
    assert "google_storage_bucket.models.name" in _passed(call, env["MODEL_STORE"])


def test_invoker_is_private_unless_a_variable_allows(tf, mod, call):
    assert tf["variable"]["allow_public_invoker"]["default"] is False
    assert mod["variable"]["allow_public_invoker"]["default"] is False
    assert call["allow_public_invoker"] == "${var.allow_public_invoker}"
    assert call["invoker_members"] == "${var.invoker_members}"
    invokers = mod["resource"]["google_cloud_run_v2_service_iam_member"]["invokers"]
    assert invokers["for_each"] == '${toset(concat(var.invoker_members, var.allow_public_invoker ? ["allUsers"] : []))}'
    assert invokers["name"] == "${google_cloud_run_v2_service.function.name}"
    for directory, count in ((TF, 1), (MODULE, 2)):
        text = "\n".join(p.read_text() for p in directory.glob("*.tf"))
        # the only allUsers in the configuration is the one guarded by the variable
        assert text.count('"allUsers"') == count  # the guarded grant (module) and the invoker_members validations
        assert "allAuthenticatedUsers" not in text.replace('"allUsers", "allAuthenticatedUsers"', "")


def test_least_privilege_and_no_primitive_roles(tf, mod, call):
    roles: dict[str, set] = {}
    for config, in_module in ((tf, False), (mod, True)):
        for rtype, named in config["resource"].items():
            if rtype.endswith("_iam_member"):
                for body in named.values():
                    assert body["role"] not in ("roles/owner", "roles/editor", "roles/viewer"), body
                    member = str(body["member"])
                    if in_module:  # the module is handed the shared accounts' emails
                        member = re.sub(r"\$\{var\.(\w+)\}", lambda m: call.get(m.group(1), m.group(0)), member)
                    who = next((sa for sa in ("function", "job", "scheduler")
                                if f"google_service_account.{sa}." in member), member)
                    roles.setdefault(who, set()).add(body["role"])
    assert roles["function"] == {"roles/storage.objectViewer", "roles/logging.logWriter"}
    assert roles["scheduler"] == {"roles/run.invoker"}
    assert roles["job"] == {"roles/storage.objectUser", "roles/monitoring.metricWriter", "roles/logging.logWriter"}
    # the scheduler may run each model's job, nothing project-wide
    grant = mod["resource"]["google_cloud_run_v2_job_iam_member"]["scheduler_runs_job"]
    assert grant["name"] == "${google_cloud_run_v2_job.retrain.name}"


def test_scheduler_runs_the_job_with_oauth(mod, call):
    sched = _one(mod, "google_cloud_scheduler_job")
    target = sched["http_target"][0]
    assert target["uri"].endswith(":run") and target["http_method"] == "POST"
    assert "google_cloud_run_v2_job.retrain.name" in target["uri"]
    email = _passed(call, target["oauth_token"][0]["service_account_email"])
    assert "google_service_account.scheduler.email" in email
    assert sched["schedule"] == "${var.retrain_schedule}" and sched["time_zone"] == "${var.retrain_time_zone}"
    assert "var.retrain_schedule" in call["retrain_schedule"]
    assert call["retrain_time_zone"] == "${var.retrain_time_zone}"
    job = _one(mod, "google_cloud_run_v2_job")
    assert job["name"] == "${var.job_name}"
    container = job["template"][0]["template"][0]["containers"][0]
    assert container["command"] == ["python", "-m", "retrain_job"]
    assert container["args"] == ["run", "--model", "${var.model}"]  # each model's job retrains that model
    assert _passed(call, job["template"][0]["template"][0]["service_account"]) == \
        "${google_service_account.job.email}"


def test_every_variable_is_documented_and_tfvars_set_only_declared_ones(tf, mod):
    for config in (tf, mod):
        for name, spec in config["variable"].items():
            assert spec.get("description"), f"variable {name} has no description"
        for name, spec in config["output"].items():
            assert spec.get("description"), f"output {name} has no description"
    required = {n for n, spec in tf["variable"].items() if "default" not in spec}
    for env in ("dev", "prod"):
        values = _load(TF / "environments" / f"{env}.tfvars")
        assert set(values) <= set(tf["variable"]), set(values) - set(tf["variable"])
        assert required <= set(values), required - set(values)
        assert values["environment"] == env
        assert set(values.get("models", MODELS)) <= set(MODELS)


def test_nothing_but_the_models_variable_names_a_model():
    """Resource names are generic (fn-MODEL-ENV, NAME_PREFIX-...): a model is named once, in var.models."""
    files = [p for p in TF.rglob("*") if p.is_file() and p.suffix in {".tf", ".json", ".tfvars", ".hcl", ".yaml", ".py"}
             and "schema" not in p.relative_to(TF).parts]
    default = re.compile(r'(variable "models" \{.*?\n  default = \{\n)(.*?)(\n  \})', re.S)
    for path in files:
        text = path.read_text()
        if path == TF / "variables.tf":
            found = default.search(text)
            assert found and set(re.findall(r"^\s*([\w-]+)\s*=", found.group(2), re.M)) == set(MODELS)
            text = default.sub(r"\1\3", text)
        for model in MODELS:
            assert not re.search(rf"\b{re.escape(model)}\b", text, re.I), (path, model)


def _strings(value) -> list[str]:
    """Every string in a parsed HCL value."""
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _referenced_metrics() -> set[str]:
    text = (MODULE / "monitoring.tf").read_text() + DASHBOARD.read_text()
    found = set(re.findall(r'metric\.type=\\?"([^"\\]+)', text))
    found |= set(re.findall(r'\\"__name__\\"=\\"([^"\\]+)', text))
    return found


def _dashboard_vars(mod) -> dict[str, str]:
    """The variables modules/model passes to the dashboard template, with the expressions it passes."""
    call = mod["resource"]["google_monitoring_dashboard"]["model"]["dashboard_json"]
    return dict(re.findall(r"(\w+) = ([\w.]+)", call.split("{", 1)[1]))


def test_alerts_and_dashboard_refer_to_metrics_that_exist(tf, mod, call):
    log_metrics = {body["name"] for body in tf["resource"]["google_logging_metric"].values()}
    template_vars = _dashboard_vars(mod)

    def resolve(name: str) -> str:
        """A log metric name written in the module or its dashboard, as the root module names it."""
        name = re.sub(r"^\$\{(\w+)\}$", lambda m: "${" + template_vars[m.group(1)] + "}", name)
        found = re.fullmatch(r"\$\{var\.log_metric_names\.(\w+)\}", name)
        assert found, name
        root = re.fullmatch(r"\$\{google_logging_metric\.(\w+)\.name\}", call["log_metric_names"][found.group(1)])
        assert root, call["log_metric_names"]
        return tf["resource"]["google_logging_metric"][root.group(1)]["name"]

    referenced = _referenced_metrics()
    assert len(referenced) >= 8
    custom = {m for m in referenced if m.startswith("custom.googleapis.com/")}
    assert custom, referenced
    for metric in referenced:
        if metric in custom:
            # the job's metrics (retrain_job/metrics.py): the prefix it writes and a name it writes
            assert metric.startswith(METRIC_PREFIX), (metric, METRIC_PREFIX)
            assert metric.removeprefix(METRIC_PREFIX) in METRIC_NAMES, metric
        elif metric.startswith("logging.googleapis.com/user/"):
            assert resolve(metric.removeprefix("logging.googleapis.com/user/")) in log_metrics, metric
        else:
            assert metric in CLOUD_RUN_METRICS, metric


def test_each_alert_watches_its_own_model(mod):
    """Alerts filter on this model's service or job, and the job's custom metrics on their model label."""
    alerts = mod["resource"]["google_monitoring_alert_policy"]
    assert {"error_rate", "latency", "fallback", "drift", "retrain_failed", "no_recent_retrain"} <= set(alerts)
    for name, alert in alerts.items():
        text = json.dumps(alert["conditions"])
        assert "google_cloud_run_v2_service.function.name" in text or \
            "google_cloud_run_v2_job.retrain.name" in text, name
        # each selector of a job metric (a filter, or each series of a PromQL query) names the model
        model_label = r'metric\.labels\.model=\\"\$\{var\.model\}\\"|\\"model\\"=\\"\$\{var\.model\}\\"'
        for condition in _strings(alert["conditions"]):
            selectors = condition.count("custom.googleapis.com/")
            assert len(re.findall(model_label, condition)) == selectors, (name, condition)
        assert "${var.model}" in alert["display_name"], name
    dashboard = DASHBOARD.read_text()
    for line in re.findall(r'"filter": "(.*)"', dashboard):
        assert "${service_name}" in line or ("${job_name}" in line and "metric.labels.model" in line), line


def test_log_metrics_read_fields_the_function_really_logs(tf, client, capfd):
    from function.serving import logs
    from tests.support.examples import SEED_EXAMPLES
    client.post("/predict", json=SEED_EXAMPLES[0][0])
    client.post("/predict", json={"bill_length_mm": -1})
    logs.flush()  # request lines are written by a background flusher
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    logged = set().union(*(line.keys() for line in lines))
    bodies = [*tf["resource"]["google_logging_metric"].values(), _one(tf, "google_logging_project_sink")]
    fields = set()
    for body in bodies:
        fields |= set(re.findall(r"jsonPayload\.(\w+)", json.dumps(body)))
    assert fields >= {"latency_ms", "status", "model_version", "model", "prediction", "event", "fallback"}
    assert fields <= logged, fields - logged
    # series are told apart by model wherever the metric has labels
    for name, body in tf["resource"]["google_logging_metric"].items():
        assert body.get("label_extractors", {}).get("model") == "EXTRACT(jsonPayload.model)", name


def test_dashboard_json_renders_and_has_the_charts(mod):
    text = DASHBOARD.read_text()
    placeholders = set(re.findall(r"\$\{(\w+)\}", text))
    assert placeholders == set(_dashboard_vars(mod)), placeholders ^ set(_dashboard_vars(mod))
    for model in MODELS:
        rendered_text = text
        for name in placeholders:
            rendered_text = rendered_text.replace(f"${{{name}}}", model if name == "model" else f"{name}-{model}")
        rendered = json.loads(rendered_text)
        assert model in rendered["displayName"]
        titles = " | ".join(t["widget"]["title"] for t in rendered["mosaicLayout"]["tiles"])
        for needle in ("p50", "p95", "p99", "response code", "Instances", "Memory", "class mix", "drifted",
                       "Model version"):
            assert needle in titles, needle
