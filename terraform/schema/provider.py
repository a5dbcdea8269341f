"""A validate-only stand-in for hashicorp/google: serves terraform/schema/google-*.json over the plugin protocol.

Built on PyPI's `tf` package (a Python framework for Terraform providers). Terraform reaches it through a
`dev_overrides` CLI configuration that terraform/schema/validate.py writes, with a generated launcher named
terraform-provider-google; run that instead of starting this file by hand.

What it does: GetProviderSchema returns the extracted schema, so Terraform core itself rejects unknown arguments,
missing required ones, wrong types and blocks in the wrong place; ValidateResourceConfig and
ValidateDataResourceConfig add what the real provider (SDKv2) checks on top of that, i.e. that no computed-only
attribute is set, at any nesting depth. Plan, apply, refresh and data source reads are not supported: configuring
the provider (the first step of any of them) fails with an error saying so.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tf import runner
from tf.gen import tfplugin_pb2 as pb
from tf.iface import Config, DataSource, Provider, ReadDataContext, Resource
from tf.schema import Attribute, Block, NestedBlock, NestMode, Schema
from tf.types import TfType, Unknown
from tf.utils import Diagnostics

PROVIDER_ADDRESS = "registry.terraform.io/hashicorp/google"
UNSUPPORTED = ("this hashicorp/google is the offline stand-in of terraform/schema/provider.py: it only serves the "
               "schema for `terraform validate`; plan, apply, refresh and data source reads need the real provider")


class CtyType(TfType):
    """Any Terraform (cty) type, given in its JSON form, e.g. "string" or ["list", ["object", {...}]]."""

    def __init__(self, cty: Any) -> None:
        self.cty = cty

    def encode(self, value: Any) -> Any:
        """Values pass through unchanged: this provider never builds state."""
        return value

    def decode(self, value: Any) -> Any:
        """Values pass through unchanged: this provider never builds state."""
        return value

    def tf_type(self) -> bytes:
        """The type as the plugin protocol wants it: its JSON bytes."""
        return json.dumps(self.cty).encode()


class Nested(NestedBlock):
    """A nested block in any nesting mode (the `tf` package itself only offers set and single)."""

    def __init__(self, name: str, mode: str, block: Block, min_items: int = 0, max_items: int = 0) -> None:
        super().__init__(name, NestMode.Single, block, min_items or None, max_items or None)
        self.mode = mode

    def to_pb(self) -> pb.Schema.NestedBlock:
        """Protocol form, with list/set/single/group/map nesting."""
        return pb.Schema.NestedBlock(type_name=self.type_name, block=self.block.to_pb(),
                                     nesting=pb.Schema.NestedBlock.NestingMode.Value(self.mode.upper()),
                                     min_items=self.min_items or 0, max_items=self.max_items or 0)

    def encode(self, value: Any) -> Any:
        """Values pass through unchanged: this provider never builds state."""
        return value

    def decode(self, value: Any) -> Any:
        """Values pass through unchanged: this provider never builds state."""
        return value

    def semantically_equal(self, a_decoded: Any, b_decoded: Any) -> bool:
        """Plain equality."""
        return a_decoded == b_decoded


def to_block(block: dict) -> Block:
    """A `tf` Block from the JSON form of `terraform providers schema -json`."""
    attributes = [Attribute(name, CtyType(a["type"]), required=a.get("required", False),
                            optional=a.get("optional", False), computed=a.get("computed", False),
                            sensitive=a.get("sensitive", False))
                  for name, a in sorted(block.get("attributes", {}).items())]
    nested = [Nested(name, b["nesting_mode"], to_block(b.get("block", {})), b.get("min_items", 0),
                     b.get("max_items", 0))
              for name, b in sorted(block.get("block_types", {}).items())]
    return Block(attributes=attributes, block_types=nested)


def computed_only_set(block: dict, config: Any, path: str = "", steps: tuple = ()) -> list[tuple[str, list]]:
    """(readable path, protocol attribute path) of each computed-only attribute config gives a value, at any depth."""
    if not isinstance(config, dict):
        return []
    found = []
    for name, attr in sorted(block.get("attributes", {}).items()):
        settable = attr.get("optional") or attr.get("required")
        if not settable and config.get(name) is not None:
            found.append((f"{path}{name}", [*steps, name]))
    for name, nested in sorted(block.get("block_types", {}).items()):
        value = config.get(name)
        if value is None or value is Unknown:
            continue
        mode = nested["nesting_mode"]
        if mode in ("single", "group"):
            items: list = [("", (), value)]
        elif mode == "map":
            items = [(f"[{json.dumps(key)}]", ((key,),), item) for key, item in value.items()]
        elif mode == "list":
            items = [(f"[{i}]", ((i,),), item) for i, item in enumerate(value)]
        else:  # a set element has no key a path could name: point at the set block itself
            items = [("[*]", None, item) for item in value]
        for label, key, item in items:
            below = computed_only_set(nested.get("block", {}), item, f"{path}{name}{label}.",
                                      (*steps, name, *key) if key is not None else ())
            found.extend((text, attr if key is not None else [*steps, name]) for text, attr in below)
    return found


def _check(diags: Diagnostics, type_name: str, block: dict, config: Config) -> None:
    for text, attribute_path in computed_only_set(block, config):
        diags.add_error("Computed attributes cannot be set",
                        f'Computed attributes cannot be set, but a value was set for "{text}" in {type_name}.',
                        path=attribute_path)


def _types(kind: str, schemas: dict) -> list[type]:
    """One Resource or DataSource class per type name, each carrying its schema."""
    base = StandInResource if kind == "resource" else StandInDataSource
    return [type(f"{kind}_{name}", (base,), {"type_name": name, "raw": raw}) for name, raw in sorted(schemas.items())]


class _SchemaBacked:
    """What both kinds of stand-in type share: a name, the extracted schema, and validation against it."""

    type_name = ""
    raw: dict = {}

    def __init__(self, provider: Any = None) -> None:
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        """The full type name (the provider's model prefix is empty)."""
        return cls.type_name

    @classmethod
    def get_schema(cls) -> Schema:
        """The extracted schema of this type."""
        block = to_block(cls.raw["block"])
        return Schema(version=cls.raw.get("version", 0), attributes=block.attributes, block_types=block.block_types)

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        """What SDKv2 adds to core's checks: computed-only attributes must stay unset."""
        _check(diags, type_name, self.raw["block"], config)


class StandInResource(_SchemaBacked, Resource):
    """A managed resource type: validates config against its schema; every other operation fails."""

    def plan(self, ctx: Any, current: Any, planned: Any) -> None:
        """Unsupported."""
        ctx.diagnostics.add_error("Plan is not supported", UNSUPPORTED)

    def create(self, ctx: Any, planned: Any) -> None:
        """Unsupported."""
        ctx.diagnostics.add_error("Apply is not supported", UNSUPPORTED)

    def read(self, ctx: Any, current: Any) -> None:
        """Unsupported."""
        ctx.diagnostics.add_error("Refresh is not supported", UNSUPPORTED)

    def update(self, ctx: Any, current: Any, planned: Any) -> None:
        """Unsupported."""
        ctx.diagnostics.add_error("Apply is not supported", UNSUPPORTED)

    def delete(self, ctx: Any, current: Any) -> None:
        """Unsupported."""
        ctx.diagnostics.add_error("Apply is not supported", UNSUPPORTED)


class StandInDataSource(_SchemaBacked, DataSource):
    """A data source type: validates config against its schema; reading fails."""

    def read(self, ctx: ReadDataContext, config: Config) -> None:
        """Unsupported."""
        ctx.diagnostics.add_error("Reading data sources is not supported", UNSUPPORTED)


class StandInProvider(Provider):
    """hashicorp/google as far as `terraform validate` can tell: its schema, nothing more."""

    def __init__(self, schema_file: Path) -> None:
        document = json.loads(schema_file.read_text())
        self.schema = document["provider_schemas"][PROVIDER_ADDRESS]

    def get_model_prefix(self) -> str:
        """Type names are used whole."""
        return ""

    def full_name(self) -> str:
        """The provider address the stand-in answers for."""
        return PROVIDER_ADDRESS

    def get_provider_schema(self, diags: Diagnostics) -> Schema:
        """The provider block's schema (project, region, ...)."""
        block = to_block(self.schema["provider"]["block"])
        return Schema(version=0, attributes=block.attributes, block_types=block.block_types)

    def validate_config(self, diags: Diagnostics, config: Config) -> None:
        """Core already checked the provider block against its schema."""

    def configure_provider(self, diags: Diagnostics, config: Config) -> None:
        """Configuring comes before plan, apply and refresh, none of which the stand-in does."""
        diags.add_error("Plan, apply and refresh are not supported", UNSUPPORTED)

    def get_resources(self) -> list[type[Resource]]:
        """Every resource type in the schema file."""
        return _types("resource", self.schema["resource_schemas"])

    def get_data_sources(self) -> list[type[DataSource]]:
        """Every data source type in the schema file."""
        return _types("data", self.schema["data_source_schemas"])


def main(argv: list[str] | None = None) -> None:
    """Serve the stand-in (Terraform starts this through the launcher validate.py generates)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema", type=Path, required=True, help="a terraform/schema/google-*.json file")
    args, rest = parser.parse_known_args(argv)
    runner.run_provider(StandInProvider(args.schema), [sys.argv[0], *rest])


if __name__ == "__main__":
    main()
