"""Bundles: written once, verified on read, invisible until finished."""
from __future__ import annotations

import json

import pytest

from shared.bundle import MANIFEST_FILE, MODEL_FILE, CorruptBundle, list_versions, read_bundle, write_bundle
from shared.store import PreconditionFailed
from tests.support.bundles import as_version


def test_roundtrip_verifies(any_store, trained_bundle):
    write_bundle(any_store, "penguins", trained_bundle)
    read = read_bundle(any_store, "penguins", trained_bundle.version)
    assert read.files == trained_bundle.files
    assert read.contract == trained_bundle.contract
    manifest = read.manifest
    for section in ("contract", "labels", "metrics", "training_data", "libraries", "created_at"):
        assert section in manifest
    assert set(manifest["files"]) == {"model.ubj", "trees.npz"}


def test_versions_are_immutable(local_store, trained_bundle):
    write_bundle(local_store, "penguins", trained_bundle)
    with pytest.raises(PreconditionFailed):
        write_bundle(local_store, "penguins", trained_bundle)


def test_truncated_model_is_corrupt(any_store, trained_bundle):
    write_bundle(any_store, "penguins", trained_bundle)
    key = f"models/penguins/{trained_bundle.version}/{MODEL_FILE}"
    any_store.write(key, trained_bundle.files[MODEL_FILE][:100])
    with pytest.raises(CorruptBundle, match="checksum"):
        read_bundle(any_store, "penguins", trained_bundle.version)


def test_tampered_manifest_is_corrupt(local_store, trained_bundle):
    write_bundle(local_store, "penguins", trained_bundle)
    key = f"models/penguins/{trained_bundle.version}/{MANIFEST_FILE}"
    manifest = json.loads(local_store.read(key)[0])
    manifest["files"][MODEL_FILE]["sha256"] = "0" * 64
    local_store.write(key, json.dumps(manifest).encode())
    with pytest.raises(CorruptBundle):
        read_bundle(local_store, "penguins", trained_bundle.version)


def test_unfinished_versions_are_invisible(local_store, trained_bundle):
    write_bundle(local_store, "penguins", as_version(trained_bundle, "20260101T000000Z-aaaa"))
    local_store.write("models/penguins/20270101T000000Z-bbbb/model.ubj", b"half written")
    assert list_versions(local_store, "penguins") == ["20260101T000000Z-aaaa"]
