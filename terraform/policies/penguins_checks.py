"""Checkov policies of ours, for what the built-in checks miss (run with --external-checks-dir)."""
from __future__ import annotations

import ast
import operator
import re
from functools import lru_cache
from pathlib import Path

import hcl2
from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub}


def _first(value):
    """Checkov wraps attribute values in one-element lists."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


@lru_cache(maxsize=8)
def _variable_defaults(directory: str) -> dict:
    """Default values of the variables declared in a Terraform directory."""
    defaults = {}
    for tf in Path(directory).glob("*.tf"):
        with open(tf) as f:
            for block in hcl2.load(f).get("variable", []):
                for name, spec in block.items():
                    if "default" in spec:
                        defaults[name] = _first(spec["default"])
    return defaults


def _number(value, defaults: dict) -> float | None:
    """A percent as a number: a literal, or arithmetic over variables at their defaults ('100 - var.x')."""
    value = _first(value)
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1]
    text = re.sub(r"var\.(\w+)", lambda m: repr(defaults.get(m.group(1))), text)
    try:
        return _eval(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, KeyError):
        return None


def _eval(node) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.left), _eval(node.right))
    raise ValueError("not arithmetic")


class TrafficSumsTo100(BaseResourceCheck):
    """Every Cloud Run traffic split must give out exactly 100 percent, with variables at their defaults.

    Checkov hands resource checks partly rendered values, so variable references are resolved here from
    the directory's variable defaults (checkov runs from the Terraform directory, see `make infra-check`).
    A dynamic traffic block counts as present; the candidate_percent validation covers its absence.
    """

    def __init__(self) -> None:
        super().__init__(name="Cloud Run traffic percentages sum to 100", id="CKV_PENGUINS_1",
                         categories=[CheckCategories.GENERAL_SECURITY],
                         supported_resources=["google_cloud_run_v2_service"])

    def scan_resource_conf(self, conf: dict) -> CheckResult:
        blocks = conf.get("traffic") or []
        if not blocks:
            return CheckResult.PASSED  # no traffic block: Cloud Run sends 100% to the latest revision
        directory = str(Path(self.entity_path.split(":")[0].lstrip("/")).parent)
        defaults = _variable_defaults(directory)
        percents = [_number(block.get("percent", [0]), defaults) for block in blocks if isinstance(block, dict)]
        if any(p is None for p in percents):
            return CheckResult.UNKNOWN
        return CheckResult.PASSED if abs(sum(percents) - 100.0) < 1e-9 else CheckResult.FAILED


class InvokerNotPublic(BaseResourceCheck):
    """With default variables, nobody outside the project may invoke a Cloud Run service or job."""

    def __init__(self) -> None:
        super().__init__(name="Cloud Run invoker is not public by default", id="CKV_PENGUINS_2",
                         categories=[CheckCategories.IAM],
                         supported_resources=["google_cloud_run_v2_service_iam_member",
                                              "google_cloud_run_v2_service_iam_binding",
                                              "google_cloud_run_v2_job_iam_member",
                                              "google_cloud_run_service_iam_member"])

    def scan_resource_conf(self, conf: dict) -> CheckResult:
        members = conf.get("members") or conf.get("member") or []
        flat = [str(_first(m)) for m in (members if isinstance(members, list) else [members])]
        flat += [str(m) for value in flat if isinstance(value, list) for m in value]
        return CheckResult.FAILED if any(m in PUBLIC_MEMBERS for m in flat) else CheckResult.PASSED


class NoPrimitiveRoles(BaseResourceCheck):
    """Owner, editor and viewer are never granted."""

    def __init__(self) -> None:
        super().__init__(name="No primitive IAM roles", id="CKV_PENGUINS_3", categories=[CheckCategories.IAM],
                         supported_resources=["google_project_iam_member", "google_project_iam_binding",
                                              "google_storage_bucket_iam_member", "google_storage_bucket_iam_binding",
                                              "google_cloud_run_v2_service_iam_member",
                                              "google_cloud_run_v2_job_iam_member"])

    def scan_resource_conf(self, conf: dict) -> CheckResult:
        return CheckResult.FAILED if str(_first(conf.get("role"))) in PRIMITIVE_ROLES else CheckResult.PASSED


traffic_check = TrafficSumsTo100()
invoker_check = InvokerNotPublic()
primitive_check = NoPrimitiveRoles()
