"""The serving pointer `models/<name>/serving.json`: the only object that ever changes.

It names the stable version, the previous good ones (the fallback chain, newest first), an optional
canary with its share of traffic, and an optional shadow with its share of requests: the shadow scores
those requests beside the answer given, never answering one itself. It moves only by compare-and-swap on
its generation. A pointer written before shadows existed reads as one without a shadow.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

from shared.bundle import models_prefix
from shared.store import NotFound, Store

POINTER_FILE = "serving.json"
DEFAULT_SHADOW_PERCENT = 100.0  # a shadow scores every request unless published with a smaller share


@dataclass(frozen=True)
class ServingPointer:
    """Which versions serve: stable, fallbacks newest first, an optional canary and an optional shadow."""

    stable: str
    previous: tuple[str, ...] = ()
    canary: str | None = None
    canary_percent: float = 0.0
    updated_at: str = field(default="")
    shadow: str | None = None
    shadow_percent: float = DEFAULT_SHADOW_PERCENT

    def __post_init__(self) -> None:
        if not 0.0 <= self.canary_percent <= 100.0:
            raise ValueError(f"canary_percent {self.canary_percent} is not within 0 to 100")
        if not 0.0 < self.shadow_percent <= 100.0:
            raise ValueError(f"shadow_percent {self.shadow_percent} is not above 0 and at most 100")

    def chain(self) -> list[str]:
        """Versions to try for stable traffic, in order."""
        return [self.stable, *[v for v in self.previous if v != self.stable]]

    def named(self) -> set[str]:
        """Every version the pointer names, in any role (none of them may be deleted)."""
        return {*self.chain(), *(v for v in (self.canary, self.shadow) if v)}

    def to_bytes(self) -> bytes:
        return json.dumps({**asdict(self), "previous": list(self.previous)}, indent=2).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ServingPointer:
        raw = json.loads(data)
        if not isinstance(raw["stable"], str):
            raise ValueError("malformed serving pointer")
        return cls(stable=raw["stable"], previous=tuple(raw.get("previous") or ()),
                   canary=raw.get("canary") or None, canary_percent=float(raw.get("canary_percent") or 0.0),
                   updated_at=str(raw.get("updated_at", "")), shadow=raw.get("shadow") or None,
                   shadow_percent=float(raw.get("shadow_percent") or DEFAULT_SHADOW_PERCENT))

    def touched(self, **changes) -> ServingPointer:
        """A copy with changes and a fresh timestamp."""
        return replace(self, **changes, updated_at=datetime.now(UTC).isoformat(timespec="seconds"))


def pointer_key(name: str) -> str:
    return models_prefix(name) + POINTER_FILE


def read_pointer(store: Store, name: str) -> tuple[ServingPointer | None, int]:
    """The pointer and its generation; (None, 0) when no model was ever published."""
    try:
        data, generation = store.read(pointer_key(name))
    except NotFound:
        return None, 0
    return ServingPointer.from_bytes(data), generation


def write_pointer(store: Store, name: str, pointer: ServingPointer, expected_generation: int) -> int:
    """Move the pointer only if it is still at `expected_generation` (0: not yet created)."""
    return store.write(pointer_key(name), pointer.to_bytes(), if_generation_match=expected_generation)
