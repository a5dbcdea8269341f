"""Publishing: write a bundle once, read it back verified, then move the pointer by compare-and-swap.

A job killed before the pointer moves leaves at most an unlisted, manifest-less folder (invisible,
removed by retention); a job that loses the pointer race exits cleanly with its bundle unpublished.

A shadow is promoted like a canary, unless the monitor's latest report measured that very version worse
than stable (`SHADOW_WORSE`): then only with `force`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from retrain_job.monitor.keys import latest_report_key
from shared.bundle import Bundle, list_versions, models_prefix, read_bundle, write_bundle
from shared.pointer import DEFAULT_SHADOW_PERCENT, ServingPointer, read_pointer, write_pointer
from shared.store import NotFound, PreconditionFailed, Store

KEEP_FALLBACKS = 3
SHADOW_WORSE = "worse"  # the monitor's shadow verdict that stops promote_shadow unless forced
NO_VERDICT = "no monitor verdict"


class PointerRace(Exception):
    """Another job moved the pointer between our read and our write; nothing was changed by us."""


class ShadowRefused(Exception):
    """The monitor measured the shadow worse than stable; nothing was changed (promote with force to override)."""


@dataclass(frozen=True)
class Published:
    """What the pointer said before and after (and, promoting a shadow, the monitor's verdict on it)."""

    before: ServingPointer | None
    after: ServingPointer
    verdict: str | None = None


def stage(store: Store, name: str, bundle: Bundle) -> None:
    """Write the bundle and prove it reads back intact before anything points at it."""
    write_bundle(store, name, bundle)
    read_bundle(store, name, bundle.version)


def promote(store: Store, name: str, version: str, canary_percent: float = 0.0,
            keep: int = KEEP_FALLBACKS, *, shadow_percent: float | None = None) -> Published:
    """Make `version` stable (the old stable joins the fallbacks) or, with a percentage, the canary, or with a
    shadow percentage the shadow; the first version of a model is stable whatever is asked."""
    before, generation = read_pointer(store, name)
    if before is None:
        after = ServingPointer(stable=version).touched()
    elif shadow_percent is not None:
        if version == before.stable:
            raise ValueError(f"{version} is the stable version; it cannot shadow itself")
        after = before.touched(shadow=version, shadow_percent=float(shadow_percent))
    elif canary_percent > 0:
        after = before.touched(canary=version, canary_percent=float(canary_percent))
    else:
        after = _made_stable(before, version, keep)
    return _swap(store, name, before, after, generation)


def resolve_canary(store: Store, name: str, accept: bool, keep: int = KEEP_FALLBACKS,
                   expected_canary: str | None = None) -> Published:
    """Finish a canary: promote it to stable, or roll it back (drop it from the pointer).

    With `expected_canary`, only that canary: PointerRace if the pointer now names another (a decision
    about one version must never settle the next).
    """
    before, generation = read_pointer(store, name)
    if before is None or before.canary is None:
        raise ValueError("there is no canary to resolve")
    if expected_canary is not None and before.canary != expected_canary:
        raise PointerRace(f"the canary is now {before.canary}, not {expected_canary}; nothing changed")
    if accept:
        after = _made_stable(before, before.canary, keep)
    else:
        after = before.touched(canary=None, canary_percent=0.0)
    return _swap(store, name, before, after, generation)


def rollback(store: Store, name: str) -> Published:
    """Put the newest fallback back as stable (the bad stable is dropped from the chain)."""
    before, generation = read_pointer(store, name)
    if before is None or not before.previous:
        raise ValueError("there is no previous version to roll back to")
    stable = before.previous[0]
    after = _without_shadow_of(before.touched(stable=stable, previous=before.previous[1:], canary=None,
                                              canary_percent=0.0))
    return _swap(store, name, before, after, generation)


def promote_shadow(store: Store, name: str, force: bool = False, keep: int = KEEP_FALLBACKS) -> Published:
    """Make the shadow stable, as a canary promotion does (the old stable joins the fallbacks).

    ShadowRefused when the monitor's latest report measured this shadow worse than stable, unless `force`.
    """
    before, generation = read_pointer(store, name)
    if before is None or before.shadow is None:
        raise ValueError("there is no shadow to promote")
    verdict = shadow_verdict(store, name, before.shadow)
    if verdict == SHADOW_WORSE and not force:
        raise ShadowRefused(f"the monitor measured shadow {before.shadow} {verdict} than stable {before.stable}; "
                            "nothing changed (--force promotes it anyway)")
    published = _swap(store, name, before, _made_stable(before, before.shadow, keep), generation)
    return Published(published.before, published.after, verdict or NO_VERDICT)


def drop_shadow(store: Store, name: str) -> Published:
    """Stop shadowing: the pointer names no shadow (its bundle stays until retention removes it)."""
    before, generation = read_pointer(store, name)
    if before is None or before.shadow is None:
        raise ValueError("there is no shadow to drop")
    return _swap(store, name, before, before.touched(shadow=None, shadow_percent=DEFAULT_SHADOW_PERCENT), generation)


def shadow_verdict(store: Store, name: str, version: str) -> str | None:
    """The monitor's latest verdict on shadow `version` ("worse", "not-worse", "better", "undecided"); None when
    its latest report judged no shadow, another one, or cannot be read."""
    try:
        data, _ = store.read(latest_report_key(name))
        shadow = json.loads(data).get("shadow")
    except (NotFound, ValueError, AttributeError):
        return None
    if not isinstance(shadow, dict) or shadow.get("version") != version:
        return None
    verdict = shadow.get("verdict")
    return verdict if isinstance(verdict, str) else None


def _made_stable(before: ServingPointer, version: str, keep: int) -> ServingPointer:
    """`version` as stable, the rest of the chain as its newest `keep` fallbacks, no canary, and no shadow if it
    was `version`."""
    fallbacks = tuple(v for v in before.chain() if v != version)[:keep]
    return _without_shadow_of(before.touched(stable=version, previous=fallbacks, canary=None, canary_percent=0.0))


def _without_shadow_of(pointer: ServingPointer) -> ServingPointer:
    """The pointer, its shadow dropped if it is now the stable version (a version never shadows itself)."""
    if pointer.shadow != pointer.stable:
        return pointer
    return ServingPointer(pointer.stable, pointer.previous, pointer.canary, pointer.canary_percent,
                          pointer.updated_at)


def _swap(store: Store, name: str, before: ServingPointer | None, after: ServingPointer,
          generation: int) -> Published:
    try:
        write_pointer(store, name, after, generation)
    except PreconditionFailed:
        raise PointerRace("the serving pointer moved under us; nothing published") from None
    return Published(before, after)


def copy_stable(source: Store, target: Store, name: str) -> str:
    """Copy the source's stable bundle and a pointer naming it into target (the shipped fallback model)."""
    pointer, _ = read_pointer(source, name)
    if pointer is None:
        raise ValueError("the source store has no published model")
    bundle = read_bundle(source, name, pointer.stable)
    for key in target.list(models_prefix(name)):
        target.delete(key)
    stage(target, name, bundle)
    write_pointer(target, name, ServingPointer(stable=bundle.version).touched(), 0)
    return bundle.version


def apply_retention(store: Store, name: str, keep_unreferenced: int = 2) -> list[str]:
    """Delete old versions: never one the pointer names, nor the newest few others; returns deleted ones."""
    pointer, _ = read_pointer(store, name)
    protected = pointer.named() if pointer else set()
    prefix = models_prefix(name)
    all_versions = sorted({k[len(prefix):].split("/")[0] for k in store.list(prefix) if "/" in k[len(prefix):]},
                          reverse=True)
    finished = set(list_versions(store, name))
    spare = [v for v in all_versions if v not in protected and v in finished][keep_unreferenced:]
    # unfinished folders (no manifest) are leftovers of killed jobs; keep the newest in case one is running
    leftovers = [v for v in all_versions if v not in finished][1:]
    deleted = []
    for version in spare + leftovers:
        for key in store.list(f"{prefix}{version}/"):
            store.delete(key)
        deleted.append(version)
    return deleted
