"""Trained bundles written to a store under chosen versions, and the pointer naming them."""
from __future__ import annotations

from shared.bundle import Bundle, make_bundle, write_bundle
from shared.pointer import ServingPointer, read_pointer, write_pointer

FAST_PARAMS = {"max_depth": 2, "eta": 0.3, "num_boost_round": 40}
STABLE = "20261101T000000Z-stable00"


def as_version(bundle: Bundle, version: str) -> Bundle:
    """The same model under another version id (manifest rebuilt, checksums recomputed)."""
    sections = {k: v for k, v in bundle.manifest.items() if k not in {"format", "version", "created_at", "files"}}
    return make_bundle(version, bundle.files, **sections)


def publish(store, bundle: Bundle, *versions: str, canary: str | None = None, percent: float = 0.0,
            model: str = "penguins") -> None:
    """Write bundles of `model` under the given versions; the first is stable, the rest its fallbacks."""
    for v in {*versions, *([canary] if canary else [])}:
        write_bundle(store, model, as_version(bundle, v))
    pointer = ServingPointer(stable=versions[0], previous=tuple(versions[1:]), canary=canary, canary_percent=percent)
    _, generation = read_pointer(store, model)
    write_pointer(store, model, pointer, generation)
