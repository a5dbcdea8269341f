"""checkov on terraform/ (built-in checks plus ours), run from its own virtualenv as `make infra-check` does.

Each model is an instance of terraform/modules/model (module.model["NAME"]): our checks must run, and catch
regressions, on every instance."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib

import pytest

from testbed.servers import REPO

CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
OURS = {"CKV_TABULAR_1", "CKV_TABULAR_2", "CKV_TABULAR_3", "CKV2_TABULAR_4"}
# Our checks that look at the per-model resources (the third, primitive roles, at the shared grants too).
PER_MODEL = {"CKV_TABULAR_1", "CKV_TABULAR_2", "CKV_TABULAR_3", "CKV2_TABULAR_4"}
MODELS = sorted(tomllib.loads(p.read_text())["name"] for p in (REPO / "specs").glob("*/spec.toml"))


def _checkov(directory) -> dict:
    assert CHECKOV.exists(), "checkov's virtualenv is made by `make test` / `make infra-check`"
    result = subprocess.run([str(CHECKOV), "-d", ".", "--framework", "terraform", "--external-checks-dir",
                             "policies", "--compact", "-o", "json"], cwd=directory, capture_output=True,
                            text=True, timeout=300, check=False, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    return json.loads(result.stdout)


def _by_model(checks: list[dict]) -> dict[str, set[str]]:
    """Check ids per model instance (module.model["NAME"].…), from checkov's results."""
    found: dict[str, set[str]] = {}
    for check in checks:
        instance = re.match(r'module\.model\["([^"]+)"\]\.', check["resource"])
        if instance:
            found.setdefault(instance.group(1), set()).add(check["check_id"])
    return found


def test_checkov_passes_with_every_skip_justified():
    report = _checkov(REPO / "terraform")
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert not failed, failed
    ran = {c["check_id"] for c in report["results"]["passed_checks"]}
    assert OURS <= ran, OURS - ran
    per_model = _by_model(report["results"]["passed_checks"])
    assert MODELS, "no specs/*/spec.toml"
    for model in MODELS:
        assert PER_MODEL <= per_model.get(model, set()), (model, PER_MODEL - per_model.get(model, set()))
    for skipped in report["results"]["skipped_checks"]:
        assert len(skipped["check_result"].get("suppress_comment", "")) > 40, skipped["check_id"]
    text = "\n".join(p.read_text() for p in (REPO / "terraform").rglob("*.tf"))
    for skip in re.findall(r"checkov:skip=([A-Z0-9_]+):(.*)", text):
        assert len(skip[1]) > 40, skip


@pytest.fixture
def broken_terraform(tmp_path):
    """A copy of terraform/ with each thing our policies guard broken."""
    copy = tmp_path / "terraform"
    shutil.copytree(REPO / "terraform", copy)

    def edit(name: str, old: str, new: str) -> None:
        path = copy / name
        text = path.read_text()
        assert old in text, (name, old)
        path.write_text(text.replace(old, new))

    edit("variables.tf", 'Private by default."\n  type        = bool\n  default     = false',
         'Private by default."\n  type        = bool\n  default     = true')
    edit("modules/model/main.tf", "percent  = 100 - var.candidate_percent", "percent  = 90 - var.candidate_percent")
    edit("iam.tf", 'role    = "roles/monitoring.metricWriter"', 'role    = "roles/editor"')
    (copy / "modules" / "model" / "monitoring.tf").unlink()
    return copy


def test_our_policies_catch_regressions(broken_terraform):
    report = _checkov(broken_terraform)
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert OURS <= failed, OURS - failed
    per_model = _by_model(report["results"]["failed_checks"])
    for model in MODELS:  # the shared grant (CKV_TABULAR_3) is outside the instances
        expected = PER_MODEL - {"CKV_TABULAR_3"}
        assert expected <= per_model.get(model, set()), (model, expected - per_model.get(model, set()))
