"""Personal data in the logs, in Terraform: each environment's retention, and the log hash key from Secret Manager.

Every environment's tfvars sets `log_retention_days` (the variable that drives both the bucket's lifecycle rule and
the BigQuery partitions' expiration, tests/infra/test_bigquery_sink.py), within its validation. The key fields are
hashed with reaches the function and the job as LOG_HASH_KEY through a secret reference (never a value), only when
`log_hash_key_secret` names a secret, and only that secret is readable by their service accounts.
"""
from __future__ import annotations

import re

import pytest

from tests.infra.test_terraform import TF

ENVIRONMENTS = sorted((TF / "environments").glob("*.tfvars"))




@pytest.mark.parametrize("tfvars", ENVIRONMENTS, ids=lambda p: p.stem)
def test_each_environment_sets_its_log_retention(tfvars):
    match = re.search(r"^log_retention_days\s*=\s*(\d+)", tfvars.read_text(), re.MULTILINE)
    assert match and 1 <= int(match.group(1)) <= 3650, tfvars


def _key_env(container: dict) -> dict:
    (block,) = [d for d in container["dynamic"] if "env" in d]
    return block["env"]


def test_the_function_and_the_job_read_the_key_from_secret_manager_only_when_named(tf, mod):
    service = mod["resource"]["google_cloud_run_v2_service"]["function"]["template"][0]["containers"][0]
    job = mod["resource"]["google_cloud_run_v2_job"]["retrain"]["template"][0]["template"][0]["containers"][0]
    for container in (service, job):
        env = _key_env(container)
        assert env["for_each"] == '${var.log_hash_key_secret == "" ? [] : [var.log_hash_key_secret]}'
        content = env["content"][0]
        assert content["name"] == "LOG_HASH_KEY" and "value" not in content
        assert content["value_source"][0]["secret_key_ref"][0] == {"secret": "${env.value}", "version": "latest"}
    assert tf["variable"]["log_hash_key_secret"]["default"] == ""
    grant = tf["resource"]["google_project_iam_member"]["reads_log_hash_key"]
    assert grant["role"] == "roles/secretmanager.secretAccessor"
    assert "secrets/${var.log_hash_key_secret}" in grant["condition"][0]["expression"]
