"""scripts/rollout.py, the steps cloudbuild.yaml calls: against a local function and a local Monitoring server."""
from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest
import yaml

from scripts import rollout
from testbed.servers import REPO
from tests.support.bundles import publish

SCRIPT = [sys.executable, "-m", "scripts.rollout"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SCRIPT, *args], capture_output=True, text=True, timeout=120, check=False)


def test_smoke_passes_against_a_healthy_local_function(serve, local_store, trained_bundle):
    publish(local_store, trained_bundle, "20260101T000000Z-smoke")
    server = serve({"MODEL_STORE": str(local_store.root)})
    result = _run("smoke", "--url", server.url)
    assert result.returncode == 0 and '"smoke": "pass"' in result.stdout


def test_smoke_fails_and_untags_when_no_model_answers(serve, tmp_path):
    server = serve({"MODEL_STORE": str(tmp_path / "empty"), "SHIPPED_MODEL_DIR": str(tmp_path / "none")})
    result = _run("smoke", "--url", server.url, "--rollback-service", "penguins-fn-dev", "--region", "r",
                  "--dry-run")
    assert result.returncode == 1 and '"smoke": "fail"' in result.stdout
    assert "gcloud run services update-traffic penguins-fn-dev --region=r --remove-tags=candidate" in result.stdout


def test_build_source_bundles_code_lock_and_current_stable_model(local_store, trained_bundle, tmp_path):
    publish(local_store, trained_bundle, "20260101T000000Z-ship")
    archive = rollout.build_source(str(local_store.root), tmp_path / "function-source")
    names = set(zipfile.ZipFile(archive).namelist())
    assert {"main.py", "function/serving/app.py", "shared/validation/fast.py", "specs/co2/spec.toml",
            "requirements.txt",
            "function/shipped_model/models/penguins/serving.json",
            "function/shipped_model/models/penguins/20260101T000000Z-ship/model.ubj"} <= names
    assert "--hash=sha256:" in (tmp_path / "function-source" / "requirements.txt").read_text()
    assert not any("pandas" in n or "__pycache__" in n for n in names)


@pytest.mark.parametrize(("counts", "expected_code", "action"), [
    ({"2xx": 990, "4xx": 20, "5xx": 2}, 0, "--to-tags=candidate=100"),
    ({"2xx": 900, "5xx": 100}, 1, "--to-revisions=penguins-fn-dev-stable=100"),
    ({"2xx": 10}, 1, "--to-revisions=penguins-fn-dev-stable=100"),  # too little traffic proves nothing
])
def test_canary_promotes_or_rolls_back_on_error_ratio(monitoring, counts, expected_code, action):
    monitoring.add_request_counts("penguins-fn-dev-abc123", counts)
    monitoring.add_request_counts("penguins-fn-dev-stable", {"5xx": 5000})  # another revision: ignored
    result = _run("canary", "--service", "penguins-fn-dev", "--region", "europe-west1", "--project", "demo",
                  "--revision", "penguins-fn-dev-abc123", "--percent", "10", "--wait-s", "0",
                  "--to-revision", "penguins-fn-dev-stable", "--endpoint", monitoring.endpoint, "--dry-run")
    lines = result.stdout.splitlines()
    assert result.returncode == expected_code, result.stderr[-1500:]
    assert lines[0].endswith("--to-tags=candidate=10")
    assert lines[-1].endswith(action)
    assert 'revision_name="penguins-fn-dev-abc123"' in monitoring.list_requests[0].filter


def test_deploy_candidate_gets_no_traffic_and_a_tag():
    result = _run("deploy-candidate", "--service", "s", "--region", "r", "--source", "dist/src",
                  "--revision-suffix", "abc123", "--dry-run")
    command = result.stdout.strip()
    assert result.returncode == 0
    for part in ("gcloud run deploy s", "--no-traffic", "--tag=candidate", "--function=predict",
                 "--revision-suffix=abc123", "--source=dist/src"):
        assert part in command


def test_cloudbuild_steps_call_tested_scripts():
    build = yaml.safe_load((REPO / "cloudbuild.yaml").read_text())
    ids = [step["id"] for step in build["steps"]]
    assert ids.index("test") < ids.index("deploy-candidate") < ids.index("smoke-test-candidate") \
        < ids.index("canary-then-full-traffic")
    text = (REPO / "cloudbuild.yaml").read_text()
    assert "--cache-from" in text and "--no-traffic" not in text  # flags live in the script, not inline
    commands = {"build-source", "deploy-candidate", "smoke", "canary"}
    for step in build["steps"]:
        joined = " ".join(step.get("args", []))
        for script in ("scripts/rollout.py", "scripts/ci_test.sh"):
            if script in joined or script.removesuffix(".py").replace("/", ".") in joined:
                assert (REPO / script).exists()
        if "scripts.rollout" in joined:
            assert any(f"scripts.rollout {c}" in joined or f'"{c}"' in joined or f" {c} " in f" {joined} "
                       for c in commands)
    tested = (REPO / "tests" / "infra" / "test_rollout.py").read_text()
    for command in commands:
        assert command in tested
