"""Response bodies checked against KServe's published Open Inference Protocol (V2) REST document.

`tests/support/oip/rest_predict_v2.yaml` is stored unchanged (origin and licence in `oip/SOURCE.md`);
`validate(kind, body)` checks a body against one of its named component schemas, `#/components/schemas/...`
references resolved inside the document. OpenAPI 3.0 schema objects are a dialect of JSON Schema draft 4/5:
they are read as draft 4, with OpenAPI's `nullable: true` turned into a `"null"` type and its `x-` extension
keywords dropped. The document's schema names: `SCHEMA_NAMES`.

The document knows nothing of Triton's binary tensor data extension, whose outputs carry
`parameters.binary_data_size` instead of `data`: `validate(..., binary=True)` accepts those (and only those, each
with a whole, non-negative size) by checking them with their data stood in by an empty list.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import jsonschema
import tritonclient.http as httpclient
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

DOCUMENT = Path(__file__).resolve().parent / "oip" / "rest_predict_v2.yaml"
_URI = "urn:kserve:open-inference-protocol:rest_predict_v2"


class OipMismatch(AssertionError):
    """A body that the protocol document's schema rejects."""


@cache
def document() -> dict:
    """The OpenAPI document, as published."""
    return yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))


def _as_json_schema(node):
    """An OpenAPI 3.0 schema (sub)tree as JSON Schema draft 4: `nullable` to a null type, no `x-` keywords."""
    if isinstance(node, list):
        return [_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _as_json_schema(value) for key, value in node.items()
           if not (isinstance(key, str) and key.startswith("x-")) and key != "nullable"}
    if node.get("nullable") is True:
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        if "$ref" in out or "allOf" in out or "anyOf" in out or "oneOf" in out:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def _registry() -> Registry:
    contents = {"components": {"schemas": _as_json_schema(document()["components"]["schemas"])}}
    return Registry().with_resource(_URI, Resource.from_contents(contents, default_specification=DRAFT4))


SCHEMA_NAMES: tuple[str, ...] = tuple(document()["components"]["schemas"])


@cache
def _validator(kind: str) -> jsonschema.Draft4Validator:
    if kind not in SCHEMA_NAMES:
        raise KeyError(f"{DOCUMENT.name} has no component schema {kind!r}; it has: {', '.join(SCHEMA_NAMES)}")
    schema = {"$ref": f"{_URI}#/components/schemas/{kind}"}
    return jsonschema.Draft4Validator(schema, registry=_registry())


def validate(kind: str, body, *, binary: bool = False) -> None:
    """Raise OipMismatch naming every place where `body` breaks the document's schema `kind` (`binary`: outputs
    may be the binary extension's, sized by `parameters.binary_data_size`, their bytes after the JSON)."""
    if binary and isinstance(body, dict) and isinstance(body.get("outputs"), list):
        body = {**body, "outputs": [_stood_in(output) for output in body["outputs"]]}
    errors = sorted(_validator(kind).iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"  at {e.json_path}: {e.message}" for e in errors[:20]]
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise OipMismatch(f"body is not a valid Open Inference Protocol {kind!r} ({DOCUMENT.name}):\n"
                          + "\n".join(lines) + more + f"\nbody: {str(body)[:2000]}")


def _stood_in(output):
    """A binary extension output (no `data`, a size instead) as the document can check it: data an empty list."""
    if not isinstance(output, dict):
        return output
    size = (output.get("parameters") or {}).get("binary_data_size")
    if size is None:
        return output
    if "data" in output or type(size) is not int or size < 0:
        raise OipMismatch(f"a binary output has a whole binary_data_size and no data: {str(output)[:500]}")
    return {**output, "data": []}


@contextmanager
def triton_client(url: str) -> Iterator[httpclient.InferenceServerClient]:
    """Triton's own HTTP client on a live function (`http://127.0.0.1:PORT`), closed after use."""
    client = httpclient.InferenceServerClient(url=url.removeprefix("http://"), network_timeout=30)
    try:
        yield client
    finally:
        client.close()
