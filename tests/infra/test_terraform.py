"""The Terraform contract, read with python-hcl2: resources, least privilege, metrics that really exist.

The root module (terraform/*.tf) holds what the models share: the bucket, the log sink, the log-based metrics
and the service accounts. Everything per model (service, job, schedule, alerts, dashboard) is in
terraform/modules/model, instantiated once per model (`for_each = var.models`): the assertions on it hold for
every instance, and the tests check that the instances are exactly the models of specs/, with their own names.
"""
from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib

import hcl2
import pytest

from retrain_job.metrics import METRIC_NAMES, METRIC_PREFIX
from testbed.servers import REPO

TF = REPO / "terraform"
MODULE = TF / "modules" / "model"
DASHBOARD = MODULE / "dashboards" / "model.json"
SPECS = {spec["name"]: spec for spec in (tomllib.loads(p.read_text()) for p in (REPO / "specs").glob("*/spec.toml"))}
MODELS = sorted(SPECS)
# Per-model settings of var.models with no project-wide variable behind them: passed as they are.
PER_MODEL_ONLY = {"live_accuracy_floor", "live_coverage_floor"}
# The live metric each kind of model's monitor writes, the models field holding its floor, and the spec's [gate]
# value that floor must be (retrain_job monitor: only when MONITOR_MIN_LABELS labelled rows back it).
LIVE_FLOORS = {"classifier": ("live_accuracy", "live_accuracy_floor", "accuracy_floor"),
               "regressor": ("live_coverage", "live_coverage_floor", "coverage_min")}
# Cloud Run's built-in metrics that alerts and charts may use.
CLOUD_RUN_METRICS = {"run.googleapis.com/request_count", "run.googleapis.com/request_latencies",
                     "run.googleapis.com/container/instance_count",
                     "run.googleapis.com/container/memory/utilizations",
                     "run.googleapis.com/job/completed_execution_count"}
PER_MODEL_TYPES = ("google_cloud_run_v2_service", "google_cloud_run_v2_job", "google_cloud_scheduler_job",
                   "google_monitoring_alert_policy", "google_monitoring_dashboard",
                   "google_cloud_run_v2_service_iam_member", "google_cloud_run_v2_job_iam_member")
SHARED_TYPES = ("google_storage_bucket", "google_logging_project_sink", "google_logging_metric",
                "google_service_account", "google_project_iam_member", "google_storage_bucket_iam_member",
                "google_bigquery_dataset", "google_bigquery_dataset_iam_member")


def _clean(value):
    """python-hcl2 keeps string quotes, block markers and comments inside blocks; strip them."""
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
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
        if setting in PER_MODEL_ONLY:
            assert call[setting] == f"${{each.value.{setting}}}", setting
        else:
            assert re.search(rf"coalesce\(each\.value\.{setting}, var\.\w+\)", arguments), setting
    assert PER_MODEL_ONLY <= set(settings)
    # rollout state is per model: a candidate in one model's service leaves the others alone
    for field in ("stable_revision", "candidate_revision", "candidate_percent"):
        assert call[field] == f"${{lookup(var.traffic, each.key, local.no_candidate).{field}}}"


def test_required_resources_exist(tf, mod):
    r, m = tf["resource"], mod["resource"]
    for rtype in ("google_storage_bucket", "google_logging_project_sink"):
        assert r.get(rtype), rtype
    for rtype in ("google_cloud_run_v2_service", "google_cloud_run_v2_job", "google_monitoring_dashboard"):
        assert len(m.get(rtype, {})) == 1, rtype  # one per model instance
    assert set(m["google_cloud_scheduler_job"]) == {"retrain", "monitor"}  # two schedules of the one job
    assert len(r["google_service_account"]) == 3
    assert len(r["google_logging_metric"]) >= 4
    assert len(m["google_monitoring_alert_policy"]) >= 8  # six, and one of the two live-quality policies
    # per model in the module only; shared in the root only
    assert not set(PER_MODEL_TYPES) & set(r), set(PER_MODEL_TYPES) & set(r)
    assert not set(SHARED_TYPES) & set(m), set(SHARED_TYPES) & set(m)


def test_bucket_is_private_versioned_and_lifecycled(tf):
    bucket = _one(tf, "google_storage_bucket")
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["versioning"][0]["enabled"] is True
    prefixes = [rule["condition"][0].get("matches_prefix", []) for rule in bucket["lifecycle_rule"]]
    assert ["${local.sink_log_prefix}"] in prefixes
    # every model's stamped reports (retrain_job: reports/MODEL/drift/STAMP/, reports/MODEL/monitor/STAMP.json)
    from retrain_job.monitor.run import monitor_prefix
    from retrain_job.train.run import reports_prefix
    reports = next(p for p in prefixes if isinstance(p, str) and "reports/" in p)
    found = re.fullmatch(r'\$\{flatten\(\[for (\w+) in keys\(var\.models\) : \[(.*)\]\]\)\}', reports)
    assert found, reports
    written = [s.replace(f"${{{found.group(1)}}}", "MODEL") for s in re.findall(r'"([^"]+)"', found.group(2))]
    assert sorted(written) == sorted(f"{prefix}2" for prefix in (reports_prefix("MODEL"), monitor_prefix("MODEL")))
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


def test_cpu_stays_allocated_for_the_shadow_scorer_by_default(mod):
    """Cloud Run throttles CPU outside requests when cpu_idle is true; the shadow's thread needs it between them."""
    resources = _one(mod, "google_cloud_run_v2_service")["template"][0]["containers"][0]["resources"][0]
    assert resources["cpu_idle"] == "${!var.cpu_always_allocated}"
    assert mod["variable"]["cpu_always_allocated"]["default"] is True


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
    assert roles["scheduler"] == {"roles/run.jobsExecutorWithOverrides"}  # see test_scheduler_may_override_args
    assert roles["job"] == {"roles/storage.objectUser", "roles/monitoring.metricWriter", "roles/logging.logWriter",
                            "roles/bigquery.dataViewer", "roles/bigquery.jobUser"}  # see test_bigquery_sink.py
    # the scheduler may run each model's job, nothing project-wide
    grant = mod["resource"]["google_cloud_run_v2_job_iam_member"]["scheduler_runs_job"]
    assert grant["name"] == "${google_cloud_run_v2_job.retrain.name}"


def test_scheduler_runs_the_job_with_oauth(mod, call):
    sched = mod["resource"]["google_cloud_scheduler_job"]["retrain"]
    assert "body" not in sched["http_target"][0]  # the job as defined: run --model MODEL
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


def _load_validate():
    spec = importlib.util.spec_from_file_location("tf_schema_validate", TF / "schema" / "validate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _terraform_eval(expression: str, tmp_path) -> object:
    """What Terraform itself makes of an expression (`terraform console` in an empty directory: no provider)."""
    validate = _load_validate()
    try:
        terraform = validate.terraform_command()
    except validate.ToolMissing as missing:
        pytest.fail(str(missing), pytrace=False)
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_INPUT": "0",
           "TF_CLI_CONFIG_FILE": os.devnull, "TF_DATA_DIR": str(tmp_path / ".terraform")}
    result = subprocess.run([*terraform, "console"], input=expression + "\n", cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_monitor_schedule_runs_the_same_job_with_monitor_args(tf, mod, call, tmp_path):
    """Hourly, the retraining job's own :run with overrides: args monitor --model MODEL, the command untouched."""
    retrain = mod["resource"]["google_cloud_scheduler_job"]["retrain"]
    monitor = mod["resource"]["google_cloud_scheduler_job"]["monitor"]
    target = monitor["http_target"][0]
    # the same job, the same way: POST to its :run URI with the scheduler account's OAuth token
    assert target["uri"] == retrain["http_target"][0]["uri"] and target["uri"].endswith(":run")
    assert target["http_method"] == "POST"
    assert target["oauth_token"] == retrain["http_target"][0]["oauth_token"]
    assert target["headers"] == {"Content-Type": "application/json"}
    assert monitor["name"] != retrain["name"] and "${var.job_name}" in monitor["name"]
    # hourly by default, overridable per model like the retrain schedule
    assert monitor["schedule"] == "${var.monitor_schedule}" and monitor["time_zone"] == "${var.retrain_time_zone}"
    assert mod["variable"]["monitor_schedule"]["default"] == tf["variable"]["monitor_schedule"]["default"] == \
        "17 * * * *"
    assert call["monitor_schedule"] == "${coalesce(each.value.monitor_schedule, var.monitor_schedule)}"
    # the body, base64 of the JSON RunJobRequest, as Terraform renders it for each model
    body = target["body"]
    assert body.startswith("${base64encode(jsonencode(") and body.count("var.") == 1, body
    for model in MODELS:
        encoded = _terraform_eval(body[2:-1].replace("var.model", json.dumps(model)), tmp_path)
        request = json.loads(base64.b64decode(encoded, validate=True))
        assert request == {"overrides": {"containerOverrides": [{"args": ["monitor", "--model", model]}],
                                         "taskCount": 1}}, request
    # the override replaces the args only: the job's command runs the module, its args choose the mode
    container = _one(mod, "google_cloud_run_v2_job")["template"][0]["template"][0]["containers"][0]
    assert container["command"] == ["python", "-m", "retrain_job"] and container["args"][0] == "run"
    assert container["args"][1:] == ["--model", "${var.model}"]


def test_scheduler_may_override_args(mod):
    """run.invoker cannot run a job with overrides; the narrowest role that can, on this job only."""
    grants = mod["resource"]["google_cloud_run_v2_job_iam_member"]
    assert set(grants) == {"scheduler_runs_job"}
    grant = grants["scheduler_runs_job"]
    assert grant["role"] == "roles/run.jobsExecutorWithOverrides"
    assert grant["name"] == "${google_cloud_run_v2_job.retrain.name}"
    assert grant["member"] == "serviceAccount:${var.scheduler_service_account}"
    for sched in mod["resource"]["google_cloud_scheduler_job"].values():
        assert sched["http_target"][0]["oauth_token"][0]["service_account_email"] == \
            "${var.scheduler_service_account}"


def _unquoted(text: str) -> str:
    """A filter as Cloud Logging and Monitoring read it: python-hcl2 keeps the HCL string's \" escapes."""
    return text.replace('\\"', '"')


def test_sink_routes_predictions_their_later_rows_and_feedback(tf):
    """The monitor joins served rows with fed-back truth: the sinks route the function's three sink events."""
    from function.serving.logs import SINK_EVENTS
    sinks = tf["resource"]["google_logging_project_sink"]
    assert set(sinks) == {"predictions", "predictions_bigquery"}  # the bucket's archive, BigQuery
    assert all(sink["filter"] == "${local.routed_log_filter}" for sink in sinks.values()), sinks
    routed = tf["locals"]["routed_log_filter"]
    found = re.fullmatch(r'\(\(\$\{local\.function_log_filter\}\) OR \(\$\{local\.job_log_filter\}\)\) '
                         r'AND jsonPayload\.event=\((.*)\)', _unquoted(routed))
    assert found, routed
    alternatives = found.group(1).split(" OR ")
    assert all(re.fullmatch(r'"\w+"', a) for a in alternatives), alternatives
    assert {a.strip('"') for a in alternatives} == set(SINK_EVENTS) == {"prediction", "prediction_rows", "feedback"}
    # the metrics that count requests count a request's first entry only (see also test_log_metrics_...)
    metrics = {name: _unquoted(body["filter"]) for name, body in tf["resource"]["google_logging_metric"].items()}
    for name in ("predictions", "fallback_served"):
        assert re.search(r'jsonPayload\.event="prediction"( AND |$)', metrics[name]), name
        assert "prediction_rows" not in metrics[name] and "feedback" not in metrics[name], name
    assert "jsonPayload.latency_ms>=0" in metrics["request_latency"]


def _kind(spec: dict) -> str:
    return "regressor" if spec["task"] == "regression" else "classifier"


def test_live_quality_alert_per_model_at_its_spec_floor(tf, mod, call):
    """One policy per model on the live metric its kind writes, below its floor from var.models (the spec's gate)."""
    alerts = mod["resource"]["google_monitoring_alert_policy"]
    for metric, field, _gate in LIVE_FLOORS.values():
        policy = alerts[metric]
        assert policy["count"] == f"${{var.{field} == null ? 0 : 1}}", policy["count"]
        (condition,) = policy["conditions"]
        threshold = condition["condition_threshold"][0]
        assert f'metric.type="{METRIC_PREFIX}{metric}"' in _unquoted(threshold["filter"])
        assert 'resource.type="generic_task"' in _unquoted(threshold["filter"])
        assert threshold["comparison"] == "COMPARISON_LT"
        assert threshold["threshold_value"] == f"${{var.{field}}}"
        assert threshold["evaluation_missing_data"] == "EVALUATION_MISSING_DATA_NO_OP"  # no point: too few labels
        assert "cross_series_reducer" not in threshold["aggregations"][0]  # each version and role on its own
        assert f"${{var.{field}}}" in policy["display_name"]
        docs = policy["documentation"][0]["content"]
        for needed in ("POST /feedback", "MONITOR_MIN_LABELS", "rollback-canary --model ${var.model}",
                       "rollback --model ${var.model}", "$${metric.label.model_version}", "$${metric.label.role}",
                       "${local.runbook}"):
            assert needed in docs, (metric, needed)
        # the floor is per model, from the models map, validated there and in the module
        assert call[field] == f"${{each.value.{field}}}"
        assert mod["variable"][field]["default"] is None
        assert f"var.{field}" in json.dumps(mod["variable"][field]["validation"])
    validations = json.dumps(tf["variable"]["models"]["validation"])
    assert "(m.live_accuracy_floor == null) != (m.live_coverage_floor == null)" in validations
    assert "f > 0 && f <= 1" in validations
    # every model in the default sets exactly its kind's floor, and that floor is its spec's gate
    defaults = tf["variable"]["models"]["default"]
    for model, spec in SPECS.items():
        metric, field, gate = LIVE_FLOORS[_kind(spec)]
        floors = {f: v for f, v in defaults[model].items() if f.startswith("live_")}
        assert floors == {field: spec["gate"][gate]}, (model, floors)


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
    # the monitor's live metrics, which the live-quality policies watch
    assert {METRIC_PREFIX + "live_accuracy", METRIC_PREFIX + "live_coverage"} <= referenced, referenced
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
    assert {"error_rate", "latency", "fallback", "drift", "retrain_failed", "no_recent_retrain", "live_accuracy",
            "live_coverage"} <= set(alerts)
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
    bodies = [*tf["resource"]["google_logging_metric"].values(), tf["locals"]["routed_log_filter"]]
    fields = set()
    for body in bodies:
        fields |= set(re.findall(r"jsonPayload\.(\w+)", json.dumps(body)))
    assert fields >= {"latency_ms", "status", "model_version", "model", "prediction", "event", "fallback"}
    assert fields <= logged, fields - logged
    # series are told apart by model wherever the metric has labels
    for name, body in tf["resource"]["google_logging_metric"].items():
        assert body.get("label_extractors", {}).get("model") == "EXTRACT(jsonPayload.model)", name


def test_each_request_counts_once_however_many_entries_it_logs(tf, client, capfd):
    """A large batch or feedback request logs several entries: the sink takes them all, the request metrics one."""
    from function.serving import logs
    from tests.support.examples import SEED_EXAMPLES
    rows = 2 * logs.ROWS_PER_ENTRY + 1
    assert client.post("/predict", json=SEED_EXAMPLES[0][0]).status_code == 200
    assert client.post("/predict", json={"instances": [SEED_EXAMPLES[0][0]] * rows}).status_code == 200
    items = [{"id": f"req{i}-0", "truth": SEED_EXAMPLES[0][1]} for i in range(logs.ROWS_PER_ENTRY + 1)]
    assert client.post("/feedback", json={"instances": items}).status_code == 202
    logs.flush()
    entries = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    entries = [e for e in entries if "event" in e]
    events = [e["event"] for e in entries]
    assert set(events) == set(logs.SINK_EVENTS), events  # the three the sink routes, and nothing else here
    assert events.count("prediction") == 2 and events.count("prediction_rows") >= 2 and events.count("feedback") >= 2
    # what the log-based metrics match, filter by filter: latency_ms>=0, event="prediction", status=400
    assert sum("latency_ms" in e for e in entries) == 3  # one per request
    later = [e for e in entries if e["event"] == "prediction_rows" or (e["event"] == "feedback" and "first_row" in e
                                                                      and e["first_row"] > 0)]
    # later entries repeat model, version, role and fallback (the monitor needs them) but no latency or status
    assert later and not any("latency_ms" in e or "status" in e for e in later), later[0].keys()
    assert all(e["model"] == "penguins" for e in entries)  # every entry reaches its model's job by its `model`
    filters = {name: body["filter"] for name, body in tf["resource"]["google_logging_metric"].items()}
    assert "latency_ms>=0" in filters["request_latency"] and "status=400" in filters["validation_errors"]


def _render_dashboard(text: str, values: dict[str, object]) -> dict:
    """The dashboard template as templatefile renders it: `%{ if name }...%{ else }...%{ endif }` on booleans,
    `${name}` placeholders, `$${` escapes (Cloud Monitoring's own legend placeholders)."""
    directive = re.compile(r"%\{ if (\w+) \}(.*?)(?:%\{ else \}(.*?))?%\{ endif \}", re.DOTALL)
    text = directive.sub(lambda m: m.group(2) if values[m.group(1)] else (m.group(3) or ""), text)
    text = re.sub(r"(?<!\$)\$\{(\w+)\}", lambda m: str(values[m.group(1)]), text)
    return json.loads(text.replace("$${", "${"))


def test_dashboard_json_renders_and_has_the_charts(mod, tmp_path):
    text = DASHBOARD.read_text()
    placeholders = set(re.findall(r"(?<!\$)\$\{(\w+)\}", text)) | set(re.findall(r"%\{ if (\w+) \}", text))
    assert placeholders == set(_dashboard_vars(mod)), placeholders ^ set(_dashboard_vars(mod))
    for model in MODELS:
        classifier = SPECS[model]["task"] != "regression"
        values = {name: f"{name}-{model}" for name in placeholders} | {"model": model, "classifier": classifier}
        rendered = _render_dashboard(text, values)
        arguments = ", ".join(f"{k} = {json.dumps(v)}" for k, v in values.items())
        by_terraform = _terraform_eval(f'jsonencode(jsondecode(templatefile("{DASHBOARD}", {{ {arguments} }})))',
                                       tmp_path)
        assert json.loads(by_terraform) == rendered  # what Terraform renders: valid JSON, as read here
        assert model in rendered["displayName"]
        tiles = rendered["mosaicLayout"]["tiles"]
        titles = " | ".join(t["widget"]["title"] for t in tiles)
        for needle in ("p50", "p95", "p99", "response code", "Instances", "Memory", "drifted", "Model version",
                       "fed-back truths"):
            assert needle in titles, needle
        # the quality charts are the model's task's: a regressor has no class mix and no accuracy
        metrics = " ".join(re.findall(r"tabular/(\w+)", json.dumps(rendered)))
        wanted = ("class mix", "accuracy", "live_accuracy_estimated") if classifier else ("RMSE", "coverage",
                                                                                          "live_rmse")
        unwanted = ("RMSE", "live_rmse", "coverage") if classifier else ("class mix", "accuracy")
        for needle in wanted:
            assert needle in titles + metrics, (model, needle)
        for needle in unwanted:
            assert needle not in titles + metrics, (model, needle)
        assert len({(t["xPos"], t["yPos"]) for t in tiles}) == len(tiles)  # no tile on top of another
