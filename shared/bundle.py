"""Model bundles: immutable folders `models/<name>/<version>/` holding the model and its manifest.

A bundle's files are written once (create-if-absent) and the manifest last, so a version without a
manifest was never finished and is invisible. Every file's sha256 is in the manifest and checked on read.
"""
from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.contract import FeatureContract
from shared.store import NotFound, Store

MANIFEST_FILE = "manifest.json"
FORMAT = 2  # 2: members (one per classifier, one per input regime of a regressor) and a contract with its target
ALL_ROWS = "all"  # the member of a classifier: it serves every row
MODEL_FILE = "model.ubj"  # the files of that member
TREES_FILE = "trees.npz"


def member_files(member: str) -> tuple[str, str]:
    """A member's XGBoost model file and compiled-trees file in its bundle."""
    return (MODEL_FILE, TREES_FILE) if member == ALL_ROWS else (f"model-{member}.ubj", f"trees-{member}.npz")


class CorruptBundle(Exception):
    """A bundle exists but cannot be trusted: bad manifest, missing file or checksum mismatch."""


@dataclass(frozen=True)
class Bundle:
    """A bundle in memory: its manifest and the bytes of each file the manifest lists."""

    manifest: dict
    files: dict[str, bytes]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def contract(self) -> FeatureContract:
        return FeatureContract.from_dict(self.manifest["contract"])


def sha256(data: bytes) -> str:
    """Hex digest, the checksum format of manifests."""
    return hashlib.sha256(data).hexdigest()


def models_prefix(name: str) -> str:
    """Where a model's versions and pointer live in the store."""
    return f"models/{name}/"


def new_version(fingerprint: str, now: datetime | None = None) -> str:
    """A sortable, unique version id: UTC time, the training data's fingerprint and a random token
    (two jobs training on the same data in the same second must not collide)."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}Z-{fingerprint[:8]}-{secrets.token_hex(2)}"


def make_bundle(version: str, files: dict[str, bytes], **sections) -> Bundle:
    """Assemble a bundle, checksumming its files; `sections` (contract, metrics, ...) go into the manifest."""
    manifest = {
        "format": FORMAT,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {name: {"sha256": sha256(data), "bytes": len(data)} for name, data in sorted(files.items())},
        **sections,
    }
    return Bundle(manifest, dict(files))


def write_bundle(store: Store, name: str, bundle: Bundle) -> None:
    """Write every file once, the manifest last; PreconditionFailed if that version already exists."""
    prefix = f"{models_prefix(name)}{bundle.version}/"
    for filename, data in sorted(bundle.files.items()):
        store.write(prefix + filename, data, if_generation_match=0)
    store.write(prefix + MANIFEST_FILE, json.dumps(bundle.manifest, indent=2).encode(), if_generation_match=0)


def read_bundle(store: Store, name: str, version: str) -> Bundle:
    """Read and verify a bundle: NotFound if absent, CorruptBundle if it cannot be trusted."""
    prefix = f"{models_prefix(name)}{version}/"
    raw, _ = store.read(prefix + MANIFEST_FILE)
    try:
        manifest = json.loads(raw)
        listed = manifest["files"]
        if manifest.get("format") != FORMAT or manifest.get("version") != version:
            raise CorruptBundle(f"{version}: manifest names another version or format")
        FeatureContract.from_dict(manifest["contract"])
    except CorruptBundle:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptBundle(f"{version}: unreadable manifest ({type(exc).__name__})") from None
    files = {}
    for filename, meta in listed.items():
        try:
            data, _ = store.read(prefix + filename)
        except NotFound:
            raise CorruptBundle(f"{version}: {filename} is missing") from None
        if len(data) != meta.get("bytes") or sha256(data) != meta.get("sha256"):
            raise CorruptBundle(f"{version}: {filename} fails its checksum")
        files[filename] = data
    try:
        missing = [m["model_file"] for m in manifest["members"] if m["model_file"] not in files]
    except (KeyError, TypeError):
        raise CorruptBundle(f"{version}: unreadable members") from None
    if missing or not manifest["members"]:
        raise CorruptBundle(f"{version}: no model file {missing}")
    return Bundle(manifest, files)


def list_versions(store: Store, name: str) -> list[str]:
    """Finished versions (those with a manifest), newest first."""
    prefix = models_prefix(name)
    versions = {key[len(prefix):].split("/")[0] for key in store.list(prefix)
                if key.endswith("/" + MANIFEST_FILE)}
    return sorted(versions, reverse=True)
