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
    Inside a module called with for_each, checkov substitutes some of the caller's arguments as text it does
    not evaluate (`lookup(...)`); then the resource's own blocks, as written in its file, are read instead,
    with the module's variables at their defaults. A dynamic traffic block counts as present; the
    candidate_percent validation covers its absence.
    """

    def __init__(self) -> None:
        super().__init__(name="Cloud Run traffic percentages sum to 100", id="CKV_TABULAR_1",
                         categories=[CheckCategories.GENERAL_SECURITY],
                         supported_resources=["google_cloud_run_v2_service"])

    def scan_resource_conf(self, conf: dict) -> CheckResult:
        blocks = conf.get("traffic") or []
        if not blocks:
            return CheckResult.PASSED  # no traffic block: Cloud Run sends 100% to the latest revision
        path, _, address = self.entity_path.lstrip("/").partition(":")
        defaults = _variable_defaults(str(Path(path).parent))
        percents = [_number(block.get("percent", [0]), defaults) for block in blocks if isinstance(block, dict)]
        if any(p is None for p in percents):
            percents = [_number(p, defaults) for p in _written_percents(path, *address.split(":", 1))]
        if not percents or any(p is None for p in percents):
            return CheckResult.UNKNOWN
        return CheckResult.PASSED if abs(sum(percents) - 100.0) < 1e-9 else CheckResult.FAILED


def _written_percents(path: str, rtype: str, name: str) -> list:
    """The percent of each traffic block of a resource as its file writes them, dynamic blocks included."""
    with open(path) as f:
        blocks = [named[rtype][name] for named in hcl2.load(f).get("resource", [])
                  if name in named.get(rtype, {})]
    if len(blocks) != 1:
        return []
    traffic = list(blocks[0].get("traffic", []))
    for dynamic in blocks[0].get("dynamic", []):
        traffic += dynamic.get("traffic", {}).get("content", [])
    return [block.get("percent", [0]) for block in traffic if isinstance(block, dict)]


class InvokerNotPublic(BaseResourceCheck):
    """With default variables, nobody outside the project may invoke a Cloud Run service or job.

    A grant made per element of a for_each (`member = each.value`) is judged by the elements. Inside a
    module called with for_each, checkov sometimes expands such a resource into one per element and
    sometimes hands it over once with its for_each rendered (a set, or the text of one); both are read.
    """

    def __init__(self) -> None:
        super().__init__(name="Cloud Run invoker is not public by default", id="CKV_TABULAR_2",
                         categories=[CheckCategories.IAM],
                         supported_resources=["google_cloud_run_v2_service_iam_member",
                                              "google_cloud_run_v2_service_iam_binding",
                                              "google_cloud_run_v2_job_iam_member",
                                              "google_cloud_run_service_iam_member"])

    def scan_resource_conf(self, conf: dict) -> CheckResult:
        flat = _strings(conf.get("members") or conf.get("member") or [])
        if any(re.fullmatch(r"(\$\{)?each\.(value|key)\}?", m) for m in flat):
            elements = _rendered(conf.get("for_each"))
            if elements is None:
                return CheckResult.UNKNOWN
            flat += _strings(elements)
        return CheckResult.FAILED if any(m in PUBLIC_MEMBERS for m in flat) else CheckResult.PASSED


def _strings(value) -> list[str]:
    """Every string in a value, however deeply checkov nested it in lists, sets and dicts."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    return [str(value)]


def _rendered(value):
    """A for_each as checkov rendered it (a collection, or its Python text), or None when it is still HCL."""
    value = _first(value)
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return None


class NoPrimitiveRoles(BaseResourceCheck):
    """Owner, editor and viewer are never granted."""

    def __init__(self) -> None:
        super().__init__(name="No primitive IAM roles", id="CKV_TABULAR_3", categories=[CheckCategories.IAM],
                         supported_resources=["google_project_iam_member", "google_project_iam_binding",
                                              "google_storage_bucket_iam_member", "google_storage_bucket_iam_binding",
                                              "google_bigquery_dataset_iam_member",
                                              "google_bigquery_dataset_iam_binding",
                                              "google_cloud_run_v2_service_iam_member",
                                              "google_cloud_run_v2_job_iam_member"])

    def scan_resource_conf(self, conf: dict) -> CheckResult:
        return CheckResult.FAILED if str(_first(conf.get("role"))) in PRIMITIVE_ROLES else CheckResult.PASSED


traffic_check = TrafficSumsTo100()
invoker_check = InvokerNotPublic()
primitive_check = NoPrimitiveRoles()
