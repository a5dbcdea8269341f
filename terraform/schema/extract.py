"""Extract the hashicorp/google provider schema that terraform/schema/validate.py serves, from npm's cdktf bindings.

Regenerate (fetches the pinned package with `npm pack` into a temporary directory, never into the repo):

    python terraform/schema/extract.py

or from an already unpacked package (the directory holding package.json and lib/):

    python terraform/schema/extract.py --package /tmp/gpkg/package

and `--check` compares instead of writing (exit 1 when the committed file is out of date).

The schema is kept small: the provider block, plus only the resource and data source types that a .tf file under
terraform/ uses (scanned recursively) and the DEFAULT_EXTRA ones; --extra TYPE or --extra data.TYPE adds one for
this run only (add it to DEFAULT_EXTRA to keep it).

Where it comes from: `@cdktf/provider-google` is generated from `terraform providers schema -json` of the provider,
and its compiled lib/<resource>/index.js keeps what `terraform validate` needs, per resource and per nested block:
each argument's Terraform name, whether it is a block (nested block) or an attribute, list/set/single nesting,
the element type, required (no reset method) or optional, max_items=1 (an OutputReference instead of a List),
and every computed-only attribute (a getter without a setter). The .jsii file has the same structs but neither
list-versus-set nesting nor the Terraform names of computed-only attributes, so the index.js files are read.

Not recoverable from the bindings (so absent from the JSON): descriptions, sensitive, deprecation, schema versions,
validation functions and conflicts_with/exactly_one_of, min_items above 1, and whether an optional argument is also
computed ("optional+computed" is written as optional; only computed-only attributes carry "computed": true), and
max_items of the provider block's own nested blocks (batching, external_credentials).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE = "@cdktf/provider-google"
PACKAGE_VERSION = "16.12.1"
PROVIDER_VERSION = "6.50.0"
PROVIDER_ADDRESS = "registry.terraform.io/hashicorp/google"
HERE = Path(__file__).resolve().parent
TERRAFORM_DIR = HERE.parent
OUTPUT = HERE / f"google-{PROVIDER_VERSION}.json"

# Common types of this platform, kept in the schema even before a .tf file uses them.
DEFAULT_EXTRA: tuple[str, ...] = (
    "google_cloud_run_service", "google_cloud_run_service_iam_member", "google_cloud_run_service_iam_binding",
    "google_cloud_run_v2_service", "google_cloud_run_v2_service_iam_member", "google_cloud_run_v2_service_iam_binding",
    "google_cloud_run_v2_job", "google_cloud_run_v2_job_iam_member", "google_cloud_run_v2_job_iam_binding",
    "google_cloud_scheduler_job",
    "google_monitoring_alert_policy", "google_monitoring_dashboard", "google_monitoring_notification_channel",
    "google_logging_project_sink", "google_logging_metric",
    "google_storage_bucket", "google_storage_bucket_object", "google_storage_bucket_iam_member",
    "google_storage_bucket_iam_binding",
    "google_service_account", "google_service_account_iam_member", "google_service_account_iam_binding",
    "google_project_iam_member", "google_project_iam_binding", "google_project_service",
    "google_cloudfunctions2_function", "google_cloudfunctions2_function_iam_member",
    "data.google_project", "data.google_client_config", "data.google_service_account", "data.google_storage_bucket",
)

_PRIMITIVES = {"string": "string", "number": "number", "boolean": "bool"}
_GETTERS = {  # getter body -> cty type of a computed attribute
    "getStringAttribute": "string", "getNumberAttribute": "number", "getBooleanAttribute": "bool",
    "getListAttribute": ["list", "string"], "getNumberListAttribute": ["list", "number"],
    "getStringMapAttribute": ["map", "string"], "getNumberMapAttribute": ["map", "number"],
    "getBooleanMapAttribute": ["map", "bool"], "interpolationForAttribute": "dynamic",
}
_CDKTF_FIELDS = {"StringMap": ["map", "string"], "NumberMap": ["map", "number"], "BooleanMap": ["map", "bool"],
                 "StringMapList": ["list", ["map", "string"]], "NumberMapList": ["list", ["map", "number"]],
                 "BooleanMapList": ["list", ["map", "bool"]], "StringListList": ["list", ["list", "string"]],
                 "NumberListList": ["list", ["list", "number"]]}

_CLASS = re.compile(r"^class (\w+) extends ([\w.]+) \{\n(.*?)^exports\.\1 = \1;", re.M | re.S)
_HCL_FN = re.compile(r"^function (\w+)ToHclTerraform\(struct\) \{\n(.*?)^\}", re.M | re.S)
_HCL_ENTRY = re.compile(r"(\w+): \{\s*value: [^\n]*\n\s*isBlock: (true|false),\s*type: \"(\w+)\",\s*"
                        r"storageClassType: \"(\w+)\",\s*\}")
_GETTER = re.compile(r"^    get (\w+)\(\) \{\n\s*return (.*?);\n    \}", re.M)
_FIELD = re.compile(r"this\._(\w+) = new ([\w.]+)\(this, \"(\w+)\"(?:, (true|false))?\);")
_RESET = re.compile(r"^    reset(\w+)\(\)", re.M)
_TF_TYPE = re.compile(r"^(\w+)\.tfResourceType = \"(\w+)\";", re.M)
_DTS_PROP = re.compile(r"\{@link \S+#(\w+) [\w#]+\}\s*\*/\s*readonly (\w+)(\??):", re.S)
_TF_NAME = re.compile(r"^\s*(resource|data)\s+\"([\w-]+)\"", re.M)


@dataclass
class _Class:
    name: str
    getters: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # tf name -> (camel, body type / class)
    fields: dict[str, tuple[str, bool]] = field(default_factory=dict)  # tf name -> (constructed class, wraps set)
    resets: set[str] = field(default_factory=set)


class Module:
    """One lib/<resource>/index.js (and its index.d.ts): classes and the ToHclTerraform attribute tables."""

    @classmethod
    def load(cls, directory: Path) -> Module:
        """Read lib/<dir>/index.js, with the index-structs/*.js that the biggest resources split their structs into."""
        def read(suffix: str) -> str:
            files = [directory / f"index{suffix}", *sorted(directory.glob(f"index-structs/*{suffix}"))]
            text = "\n".join(f.read_text() for f in files)
            return re.sub(r"\b[a-z]\w*_\d+\.(?=[A-Z])", "", text)  # `index_structs_1.Foo` -> `Foo`
        return cls(read(".js"), read(".d.ts"))

    def __init__(self, js: str, dts: str = "") -> None:
        self.classes: dict[str, _Class] = {}
        self.bases: dict[str, str] = {}
        self.bodies: dict[str, str] = {}
        for name, base, body in _CLASS.findall(js):
            self.bases[name], self.bodies[name] = base, body
            self.classes[name] = self._read_class(name, body)
        self.hcl = {fn: _HCL_ENTRY.findall(body) for fn, body in _HCL_FN.findall(js)}
        self.tf_types = dict(_TF_TYPE.findall(js))
        self.dts = dts

    @staticmethod
    def _read_class(name: str, body: str) -> _Class:
        cls = _Class(name)
        constructed = {attr: (klass, wraps == "true", tf) for attr, klass, tf, wraps in _FIELD.findall(body)}
        for camel, expr in _GETTER.findall(body):
            getter = re.fullmatch(r"(?:cdktf\.Fn\.tolist\()?this\.(\w+)\('(\w+)'\)\)?", expr)
            own = re.fullmatch(r"this\._(\w+)", expr)
            if getter and getter.group(1) in _GETTERS:
                kind = _GETTERS[getter.group(1)]
                if expr.startswith("cdktf.Fn.tolist(") and isinstance(kind, list):
                    kind = ["set", kind[1]]
                cls.getters[getter.group(2)] = (camel, json.dumps(kind))
            elif own and own.group(1) in constructed:
                klass, wraps, tf = constructed[own.group(1)]
                cls.getters[tf] = (camel, None)
                cls.fields[tf] = (klass, wraps)
            elif "Attribute(" in expr:  # a Terraform attribute this reader does not know: never drop it silently
                raise ValueError(f"{name}.{camel}: unsupported getter `{expr}`")
        cls.resets = set(_RESET.findall(body))
        return cls

    def hcl_of(self, struct: str) -> list[tuple[str, str, str, str]]:
        """The configurable fields of a struct (or of a resource class): (tf name, isBlock, type, storage class)."""
        if struct in self.bodies and "synthesizeHclAttributes()" in self.bodies[struct]:
            section = self.bodies[struct].split("synthesizeHclAttributes()", 1)[1]
            return _HCL_ENTRY.findall(section)
        return self.hcl.get(struct[0].lower() + struct[1:], [])

    def dts_optional(self, struct: str) -> dict[str, bool]:
        """Terraform name -> optional, from `export interface <struct>` in index.d.ts (structs without classes)."""
        match = re.search(rf"^export interface {struct} (?:extends [\w.]+ )?\{{\n(.*?)^\}}", self.dts, re.M | re.S)
        return {tf: bool(opt) for tf, _camel, opt in _DTS_PROP.findall(match.group(1))} if match else {}


def _attr_type(kind: str, storage: str) -> Any:
    """cty type of a configurable attribute from cdktf's (type, storageClassType)."""
    if kind == "simple" and storage in _PRIMITIVES:
        return _PRIMITIVES[storage]
    for suffix, outer in (("List", ("list", "set")), ("Map", ("map",))):
        if storage.endswith(suffix) and storage[: -len(suffix)] in _PRIMITIVES and kind in outer:
            return [kind, _PRIMITIVES[storage[: -len(suffix)]]]
    raise ValueError(f"unsupported attribute kind {kind!r} / {storage!r}")


def _camel(tf_name: str) -> str:
    head, *rest = tf_name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _object_type(mod: Module, ref_class: str) -> Any:
    """cty object type of a computed nested object: every attribute of its OutputReference class."""
    cls = mod.classes[ref_class]
    return ["object", {tf: _computed_type(mod, cls, tf) for tf in sorted(cls.getters)}]


def _computed_type(mod: Module, cls: _Class, tf: str) -> Any:
    kind = cls.getters[tf][1]
    if kind is not None:
        return json.loads(kind)
    klass, wraps = cls.fields[tf]
    if klass.startswith("cdktf."):
        return _CDKTF_FIELDS[klass.removeprefix("cdktf.")]
    if klass.endswith("List"):
        return ["set" if wraps else "list", _object_type(mod, klass.removesuffix("List") + "OutputReference")]
    if klass.endswith("OutputReference"):
        return _object_type(mod, klass)
    raise ValueError(f"unsupported computed attribute {cls.name}.{tf} ({klass})")


def _block(mod: Module, struct: str, class_name: str | None, skip: frozenset[str] = frozenset()) -> dict:
    """The schema block of a struct: configurable fields from its ToHclTerraform table, computed-only from getters."""
    cls = mod.classes.get(class_name or "")
    optional_dts = mod.dts_optional(struct) if cls is None else {}
    attributes: dict[str, dict] = {}
    block_types: dict[str, dict] = {}
    configurable = set()
    for tf, is_block, kind, storage in mod.hcl_of(struct):
        if tf in skip:
            continue
        configurable.add(tf)
        if cls is not None:
            camel = cls.getters[tf][0] if tf in cls.getters else _camel(tf)
            optional = camel[:1].upper() + camel[1:] in cls.resets
        else:
            optional = optional_dts.get(tf, True)
        if is_block == "false":
            attributes[tf] = {"type": _attr_type(kind, storage), ("optional" if optional else "required"): True}
            continue
        child = storage.removesuffix("List") if kind in ("list", "set") else storage
        nested: dict[str, Any] = {"nesting_mode": {"struct": "single"}.get(kind, kind)}
        single_ref = cls is not None and cls.fields.get(tf, ("", False))[0].endswith("OutputReference")
        if kind in ("list", "set"):
            if not optional:
                nested["min_items"] = 1
            if single_ref:
                nested["max_items"] = 1
        reference = child + "OutputReference"
        nested["block"] = _block(mod, child, reference if reference in mod.classes else None)
        block_types[tf] = nested
    if cls is not None:
        for tf in cls.getters:
            if tf not in configurable and tf not in skip:
                attributes[tf] = {"type": _computed_type(mod, cls, tf), "computed": True}
    block: dict[str, Any] = {}
    if attributes:
        block["attributes"] = dict(sorted(attributes.items()))
    if block_types:
        block["block_types"] = dict(sorted(block_types.items()))
    return block


def _module_for(kind: str, type_name: str, index: dict[tuple[str, str], Path]) -> tuple[Module, str]:
    """The module and top-level class defining a resource ("resource") or data source ("data") type."""
    path = index.get((kind, type_name))
    if path is None:
        raise SystemExit(f"{kind} type {type_name} is not in {PACKAGE}@{PACKAGE_VERSION}")
    mod = Module.load(path.parent)
    base = "cdktf.TerraformDataSource" if kind == "data" else "cdktf.TerraformResource"
    for class_name, tf_type in mod.tf_types.items():
        if tf_type == type_name and mod.bases.get(class_name) == base:
            return mod, class_name
    raise SystemExit(f"{path}: no class for {kind} {type_name}")


def _index(lib: Path) -> dict[tuple[str, str], Path]:
    """(kind, Terraform type) -> lib/<dir>/index.js, read from the static tfResourceType in each index.d.ts."""
    found: dict[tuple[str, str], Path] = {}
    pattern = re.compile(r"class \w+ extends cdktf\.Terraform(Resource|DataSource) \{\n\s*static readonly "
                         r"tfResourceType = \"(\w+)\";")
    for dts in sorted(lib.glob("*/index.d.ts")):
        for kind, tf_type in pattern.findall(dts.read_text()):
            found[("data" if kind == "DataSource" else "resource", tf_type)] = dts.with_name("index.js")
    return found


def used_types(terraform_dir: Path = TERRAFORM_DIR) -> set[str]:
    """Resource types ("google_x") and data sources ("data.google_x") of the google provider in all .tf files."""
    used = set()
    for path in terraform_dir.rglob("*.tf"):
        if ".terraform" in path.parts:
            continue
        for kind, type_name in _TF_NAME.findall(path.read_text()):
            if type_name.startswith("google_"):
                used.add(type_name if kind == "resource" else f"data.{type_name}")
    return used


def extract(package_dir: Path, types: set[str]) -> dict:
    """The schema (in the shape of `terraform providers schema -json`) for the provider block and the given types."""
    lib = package_dir / "lib"
    meta = json.loads((package_dir / "package.json").read_text())
    provider_mod = Module.load(lib / "provider")
    pinned = re.search(r"providerVersion: '([\d.]+)'", (lib / "provider" / "index.js").read_text())
    if not pinned or pinned.group(1) != PROVIDER_VERSION:
        raise SystemExit(f"{package_dir} binds hashicorp/google {pinned and pinned.group(1)}, not {PROVIDER_VERSION}")
    index = _index(lib)
    resources, data_sources = {}, {}
    for item in sorted(types):
        kind, type_name = ("data", item[5:]) if item.startswith("data.") else ("resource", item)
        mod, class_name = _module_for(kind, type_name, index)
        schema = {"version": 0, "block": _block(mod, class_name, class_name)}
        (data_sources if kind == "data" else resources)[type_name] = schema
    return {
        "format_version": "1.0",
        "generated_from": {"npm": f"{PACKAGE}@{meta['version']}", "provider_version": PROVIDER_VERSION,
                           "by": "terraform/schema/extract.py"},
        "provider_schemas": {PROVIDER_ADDRESS: {
            "provider": {"version": 0, "block": _block(provider_mod, "GoogleProvider", "GoogleProvider",
                                                       skip=frozenset({"alias"}))},
            "resource_schemas": resources,
            "data_source_schemas": data_sources,
        }},
    }


def dumps(schema: dict) -> str:
    """Stable, diff-friendly JSON: one line per attribute (and per metadata object), nested blocks indented."""

    def render(value: Any, depth: int, key: str = "") -> str:
        if not isinstance(value, dict) or not value or "type" in value or key == "generated_from":
            return json.dumps(value, sort_keys=True)
        pad = " " * (depth + 1)
        items = [f"{pad}{json.dumps(k)}: {render(v, depth + 1, k)}" for k, v in sorted(value.items())]
        return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}"

    return render(schema, 0) + "\n"


def fetch_package(workdir: Path) -> Path:
    """`npm pack` the pinned package into workdir and unpack it; returns the package directory."""
    subprocess.run(["npm", "pack", f"{PACKAGE}@{PACKAGE_VERSION}", "--silent"], cwd=workdir, check=True,
                   stdout=subprocess.DEVNULL)
    tarball = next(workdir.glob("*.tgz"))
    with tarfile.open(tarball) as tar:
        tar.extractall(workdir, filter="data")
    return workdir / "package"


def main(argv: list[str] | None = None) -> int:
    """Write terraform/schema/google-<version>.json (or check it is current with --check)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, help="an unpacked @cdktf/provider-google (default: npm pack it)")
    parser.add_argument("--extra", action="append", default=[], help="one more type: google_x or data.google_x")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the output file differs; write nothing")
    args = parser.parse_args(argv)
    types = used_types() | set(DEFAULT_EXTRA) | set(args.extra)
    with tempfile.TemporaryDirectory(prefix="provider-google-") as tmp:
        package = args.package or fetch_package(Path(tmp))
        version = json.loads((package / "package.json").read_text())["version"]
        if version != PACKAGE_VERSION:
            raise SystemExit(f"{package} is {PACKAGE}@{version}, expected {PACKAGE_VERSION}")
        text = dumps(extract(package, types))
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        print(f"{args.output}: {'up to date' if current == text else 'OUT OF DATE'}")
        return 0 if current == text else 1
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(text) // 1024} KiB, {len(types)} types)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
