"""The prediction and feedback log lines in BigQuery: dataset, sink, grants and the job's settings, from the HCL.

A Cloud Logging sink (google_logging_project_sink.predictions_bigquery) routes the function's three events into a
dataset, where it creates run_googleapis_com_stdout partitioned by day; the partitions expire after
log_retention_days, the same variable as the bucket's archive. The sink's writer identity may write that dataset only;
the job's account may read it and run queries; the job is told where (LOG_ENGINE, LOG_TABLE).
"""
from __future__ import annotations

import json
import re

import pytest

from shared.logline import BIGQUERY_TABLE, ROUTED_FIELDS, SINK_EVENTS
from tests.infra.test_terraform import TF, _terraform_eval, _unquoted

DATASET = "${google_bigquery_dataset.logs.dataset_id}"
WRITER = "${google_logging_project_sink.predictions_bigquery.writer_identity}"
JOB_SA = "serviceAccount:${google_service_account.job.email}"




def _grants(tf) -> list[tuple[str, str, dict]]:
    """Every IAM grant of the root module: (resource type, name, body)."""
    return [(rtype, name, body) for rtype, named in tf["resource"].items() if rtype.endswith("_iam_member")
            for name, body in named.items()]


def test_dataset_keeps_its_tables_and_lives_in_the_region(tf):
    (name,) = tf["resource"]["google_bigquery_dataset"]
    dataset = tf["resource"]["google_bigquery_dataset"][name]
    assert name == "logs"
    assert dataset["location"] == "${var.region}"
    assert dataset["delete_contents_on_destroy"] is False
    assert dataset["dataset_id"] == "${local.log_dataset_id}"
    assert "access" not in dataset  # grants are the non-authoritative dataset IAM members below
    assert "default_table_expiration_ms" not in dataset  # that would drop the whole table, not old days


@pytest.mark.parametrize(("prefix", "environment"), [("tabular", "dev"), ("my-app-2", "prod")])
def test_dataset_id_is_a_valid_bigquery_name(tf, tmp_path, prefix, environment):
    """Dataset ids allow letters, digits and underscores only; name_prefix may hold dashes."""
    expression = tf["locals"]["log_dataset_id"]
    assert expression.startswith('${replace(var.name_prefix, "-", "_")}'), expression
    rendered = expression.replace("var.name_prefix", json.dumps(prefix)).replace("${var.environment}", environment)
    dataset_id = _terraform_eval(f'"{rendered}"', tmp_path)
    assert re.fullmatch(r"[A-Za-z0-9_]{1,1024}", dataset_id), dataset_id
    assert environment in dataset_id


def test_retention_variable_drives_partition_expiration_and_the_archive(tf, tmp_path):
    """One retention for both copies: the table's daily partitions and the bucket's sink files."""
    variable = tf["variable"]["log_retention_days"]
    assert variable["default"] == 30 and variable["type"] == "number"
    dataset = tf["resource"]["google_bigquery_dataset"]["logs"]
    expression = dataset["default_partition_expiration_ms"]
    assert expression == "${var.log_retention_days * 24 * 60 * 60 * 1000}", expression
    for days in (1, 30, 3650):
        assert _terraform_eval(expression[2:-1].replace("var.log_retention_days", str(days)), tmp_path) == \
            days * 86_400_000
    # the bucket's lifecycle rule for the sink's files reads the same variable
    bucket = tf["resource"]["google_storage_bucket"]["models"]
    ages = {json.dumps(rule["condition"][0].get("matches_prefix")): rule["condition"][0].get("age")
            for rule in bucket["lifecycle_rule"]}
    assert ages[json.dumps(["${local.sink_log_prefix}"])] == "${var.log_retention_days}"
    # the validation accepts whole days from 1 to 3650 and nothing else
    (validation,) = variable["validation"]
    condition = validation["condition"]
    for days, valid in ((0, False), (1, True), (30, True), (3650, True), (3651, False), (1.5, False), (-3, False)):
        assert _terraform_eval(condition[2:-1].replace("var.log_retention_days", str(days)), tmp_path) is valid, days


def test_sink_writes_partitioned_tables_with_its_own_identity(tf):
    sink = tf["resource"]["google_logging_project_sink"]["predictions_bigquery"]
    assert sink["destination"] == f"bigquery.googleapis.com/projects/${{var.project_id}}/datasets/{DATASET}"
    assert sink["bigquery_options"] == [{"use_partitioned_tables": True}]
    assert sink["unique_writer_identity"] is True
    assert "exclusions" not in sink and sink.get("disabled") in (None, False)


def test_sink_filter_names_the_three_events_on_the_services_stdout(tf):
    sinks = tf["resource"]["google_logging_project_sink"]
    # the same filter as the bucket's archive, kept once in a local
    assert sinks["predictions_bigquery"]["filter"] == sinks["predictions"]["filter"] == "${local.routed_log_filter}"
    routed = _unquoted(tf["locals"]["routed_log_filter"])
    found = re.fullmatch(r'\(\(\$\{local\.function_log_filter\}\) OR \(\$\{local\.job_log_filter\}\)\) '
                         r'AND jsonPayload\.event=\(("\w+"(?: OR "\w+")*)\)', routed)
    assert found, routed
    assert {event.strip('"') for event in found.group(1).split(" OR ")} == set(SINK_EVENTS) == \
        {"prediction", "prediction_rows", "feedback"}
    services = _unquoted(tf["locals"]["function_log_filter"])
    assert 'resource.type="cloud_run_revision"' in services and "values(local.service_names)" in services
    assert "logs/run.googleapis.com%2Fstdout" in services  # the log the table is named after
    jobs = _unquoted(tf["locals"]["job_log_filter"])  # batch scoring's --log lines with LOG_ENGINE=bigquery
    assert 'resource.type="cloud_run_job"' in jobs and "values(local.job_names)" in jobs
    assert "logs/run.googleapis.com%2Fstdout" in jobs


def test_writer_identity_may_only_edit_the_log_dataset(tf):
    writer = [(rtype, body) for rtype, _name, body in _grants(tf) if body["member"] == WRITER]
    assert writer == [("google_bigquery_dataset_iam_member",
                       {"dataset_id": DATASET, "role": "roles/bigquery.dataEditor", "member": WRITER})], writer
    # the archive sink's identity keeps its one bucket grant, and neither identity holds a project role
    archive = "${google_logging_project_sink.predictions.writer_identity}"
    archive_roles = [body["role"] for _t, _n, body in _grants(tf) if body["member"] == archive]
    assert archive_roles == ["roles/storage.objectCreator"]
    project = tf["resource"]["google_project_iam_member"].values()
    assert not any("google_logging_project_sink" in body["member"] for body in project)


def test_job_may_read_the_log_dataset_and_run_queries_only(tf):
    bigquery = sorted((rtype, body.get("dataset_id", body.get("project")), body["role"])
                      for rtype, _name, body in _grants(tf)
                      if body["member"] == JOB_SA and "bigquery" in body["role"])
    assert bigquery == [("google_bigquery_dataset_iam_member", DATASET, "roles/bigquery.dataViewer"),
                        ("google_project_iam_member", "${var.project_id}", "roles/bigquery.jobUser")], bigquery
    # no one else holds a BigQuery role: the function never reads the table
    others = {(body["member"], body["role"]) for _t, _n, body in _grants(tf)
              if "bigquery" in body["role"] and body["member"] not in (JOB_SA, WRITER)}
    assert not others, others
    # and every dataset grant is on this dataset
    for body in tf["resource"]["google_bigquery_dataset_iam_member"].values():
        assert body["dataset_id"] == DATASET, body


def test_job_is_told_to_read_the_sink_table(tf, mod):
    call = tf["module"]["model"]
    assert call["log_table"] == "${local.log_table}"
    assert tf["locals"]["log_table"] == f"${{var.project_id}}.${{local.log_dataset_id}}.{BIGQUERY_TABLE}"
    assert tf["output"]["log_table"]["value"] == "${local.log_table}"
    job = mod["resource"]["google_cloud_run_v2_job"]["retrain"]
    env = {e["name"]: e["value"] for e in job["template"][0]["template"][0]["containers"][0]["env"]}
    assert env["LOG_ENGINE"] == "bigquery"
    assert env["LOG_TABLE"] == "${var.log_table}"
    # the service does not get them: it writes lines, it never reads the table
    service = mod["resource"]["google_cloud_run_v2_service"]["function"]
    service_env = {e["name"] for e in service["template"][0]["containers"][0]["env"]}
    assert not {"LOG_ENGINE", "LOG_TABLE"} & service_env


def test_job_settings_accept_what_terraform_sets():
    """Once shared/settings.py declares LOG_ENGINE and LOG_TABLE, the job must accept the values set here."""
    from shared.settings import Settings, declared
    names = {setting.env for setting, _default in declared()}
    if not {"LOG_ENGINE", "LOG_TABLE"} <= names:
        pytest.skip("LOG_ENGINE / LOG_TABLE not declared in shared/settings.py yet")
    Settings.from_env({"LOG_ENGINE": "bigquery", "LOG_TABLE": f"tabular-dev-000000.tabular_logs_dev.{BIGQUERY_TABLE}"},
                      reader="job")


def test_readme_lists_the_routed_fields_with_their_one_type():
    """terraform/README.md's table of the payload columns is shared/logline.py's ROUTED_FIELDS."""
    text = (TF / "README.md").read_text()
    section = text.split("## Logs in BigQuery", 1)[1].split("\n## ", 1)[0]
    documented = {name: kind for kind, names in re.findall(r"^\| ([A-Z][A-Z ]*[A-Z]) \| (`.*`) \|$", section, re.M)
                  for name in re.findall(r"`(\w+)`", names)}
    assert documented == ROUTED_FIELDS, set(documented.items()) ^ set(ROUTED_FIELDS.items())
    for needed in (BIGQUERY_TABLE, "log_retention_days", "roles/bigquery.dataEditor", "roles/bigquery.dataViewer",
                   "roles/bigquery.jobUser", "JSON_VALUE", "JSON_QUERY_ARRAY", "LOG_TABLE", "LOG_ENGINE"):
        assert needed in section, needed
