"""`terraform validate`, offline, against the real hashicorp/google schema: terraform/ is clean, breakage is caught."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
import textwrap

import pytest

from testbed.servers import REPO

TF = REPO / "terraform"
SCHEMA_DIR = TF / "schema"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"tf_schema_{name}", SCHEMA_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


validate = _load("validate")
extract = _load("extract")

# One resource per file, each broken in one way; (file, its text, the line and the message validate must report).
BROKEN = {
    "unknown_attribute": ('''
        resource "google_storage_bucket" "broken" {
          name               = "broken"
          location           = "EU"
          versioning_enabled = true
        }
        ''', 4, 'Unsupported argument: An argument named "versioning_enabled" is not expected here.'),
    "unknown_nested_attribute": ('''
        resource "google_cloud_scheduler_job" "broken" {
          name     = "broken"
          schedule = "0 3 * * *"
          http_target {
            uri    = "https://example.com"
            method = "POST"
          }
        }
        ''', 6, 'Unsupported argument: An argument named "method" is not expected here.'),
    "missing_required": ('''
        resource "google_service_account" "broken" {
          display_name = "no account_id"
        }
        ''', 1, 'Missing required argument: The argument "account_id" is required, but no definition was found.'),
    "missing_required_block": ('''
        resource "google_cloud_run_v2_job" "broken" {
          name     = "broken"
          location = "europe-west1"
        }
        ''', 1, 'Insufficient template blocks: At least 1 "template" blocks are required.'),
    "computed_only": ('''
        resource "google_service_account" "broken" {
          account_id = "broken"
          email      = "broken@example.iam.gserviceaccount.com"
        }
        ''', 3, 'Computed attributes cannot be set: Computed attributes cannot be set, but a value was set for '
                '"email"'),
    "computed_only_nested": ('''
        resource "google_monitoring_alert_policy" "broken" {
          display_name = "broken"
          combiner     = "OR"
          conditions {
            display_name = "c"
            name         = "projects/p/alertPolicies/1/conditions/2"
            condition_absent {
              duration = "300s"
              filter   = "resource.type = \\"cloud_run_revision\\""
            }
          }
        }
        ''', 6, 'Computed attributes cannot be set: Computed attributes cannot be set, but a value was set for '
                '"conditions[0].name"'),
    "block_at_wrong_level": ('''
        resource "google_cloud_run_v2_job" "broken" {
          name     = "broken"
          location = "europe-west1"
          template {
            template {
              containers {
                image = "us-docker.pkg.dev/cloudrun/container/job"
              }
              env {
                name  = "MISPLACED"
                value = "env belongs in containers"
              }
            }
          }
        }
        ''', 9, 'Unsupported block type: Blocks of type "env" are not expected here.'),
    "block_of_another_resource": ('''
        resource "google_cloud_run_v2_service" "broken" {
          name     = "broken"
          location = "europe-west1"
          template {
            containers {
              image = "us-docker.pkg.dev/cloudrun/container/hello"
            }
          }
          retry_config {
            retry_count = 1
          }
        }
        ''', 9, 'Unsupported block type: Blocks of type "retry_config" are not expected here.'),
    "too_many_blocks": ('''
        resource "google_storage_bucket" "broken" {
          name     = "broken"
          location = "EU"
          versioning {
            enabled = true
          }
          versioning {
            enabled = false
          }
        }
        ''', 7, 'Too many versioning blocks: No more than 1 "versioning" blocks are allowed'),
}


@pytest.fixture(scope="module")
def tools() -> None:
    """Terraform and the stand-in's Python must be here: a missing tool fails (one line saying how to install)."""
    problem = None
    try:
        validate.terraform_command()
        validate.standin_python()
    except validate.ToolMissing as missing:
        problem = str(missing)
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="module")
def broken(tools, tmp_path_factory):
    """A copy of terraform/ plus one file per kind of breakage, validated once (fmt skipped: the copies are odd)."""
    copy = tmp_path_factory.mktemp("broken") / "terraform"
    shutil.copytree(TF, copy, ignore=shutil.ignore_patterns(".terraform", "schema", "policies", "__pycache__"))
    for name, (text, _line, _message) in BROKEN.items():
        resource = textwrap.dedent(text).lstrip().replace('"broken" {', f'"{name}" {{', 1)  # unique names
        (copy / f"broken_{name}.tf").write_text(resource)
    return copy, validate.run_checks(copy, fmt=False)


def test_terraform_dir_is_formatted_and_validates_clean(tools):
    report = validate.run_checks(TF)
    assert report.errors == 0, "\n".join(report.lines)
    assert report.warnings == 0, "\n".join(report.lines)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_validate_catches(broken, name):
    copy, report = broken
    _text, line, message = BROKEN[name]
    where = f"broken_{name}.tf:{line}:"
    found = [entry for entry in report.lines if where in entry]
    assert found, f"nothing reported at {where}:\n" + "\n".join(report.lines)
    assert any(entry.startswith("error: ") and message in entry for entry in found), "\n".join(found)


def test_only_the_broken_files_fail(broken):
    _copy, report = broken
    stray = [entry for entry in report.lines if "/broken_" not in entry]
    assert not stray, "\n".join(stray)
    assert report.errors == len(BROKEN), "\n".join(report.lines)


def test_unformatted_file_fails_fmt_check(tools, tmp_path):
    (tmp_path / "main.tf").write_text('variable "x" {\ntype = string\n}\n')
    report = validate.run_checks(tmp_path)
    assert any("main.tf: not formatted" in entry for entry in report.lines), "\n".join(report.lines)


def test_child_modules_are_validated(tools, tmp_path):
    shutil.copy(TF / "versions.tf", tmp_path / "versions.tf")
    (tmp_path / "main.tf").write_text(textwrap.dedent('''
        variable "project_id" {
          type = string
        }

        variable "region" {
          type = string
        }

        module "account" {
          source = "./modules/account"
          name   = "runner"
        }
        ''').lstrip())
    module = tmp_path / "modules" / "account"
    module.mkdir(parents=True)
    (module / "main.tf").write_text(textwrap.dedent('''
        variable "name" {
          type = string
        }

        resource "google_service_account" "this" {
          account_id = var.name
          unique_id  = "set by Google"
        }
        ''').lstrip())
    report = validate.run_checks(tmp_path)
    assert report.errors == 1, "\n".join(report.lines)
    expected = r"modules/account/main\.tf:7:\d+: Computed attributes cannot be set"
    assert re.search(expected, report.lines[0]), report.lines


def test_schema_covers_every_google_type_the_configuration_uses():
    """A new resource type (say in a new module) needs `python terraform/schema/extract.py` run again."""
    document = json.loads(validate.schema_file().read_text())
    schemas = document["provider_schemas"][extract.PROVIDER_ADDRESS]
    known = set(schemas["resource_schemas"]) | {f"data.{name}" for name in schemas["data_source_schemas"]}
    missing = extract.used_types(TF) - known
    assert not missing, f"{sorted(missing)} not in {validate.schema_file().name}: run terraform/schema/extract.py"
    assert set(extract.DEFAULT_EXTRA) <= known
    assert document["generated_from"]["npm"] == f"{extract.PACKAGE}@{extract.PACKAGE_VERSION}"


def test_schema_file_is_what_extract_writes():
    """The committed file is extract.py's own rendering (regenerating the same schema changes nothing)."""
    path = validate.schema_file()
    assert extract.dumps(json.loads(path.read_text())) == path.read_text()
