"""Model cards in the store: `card.json` and `card.html` in the version's folder, beside its bundle.

They are not bundle files (the manifest does not list them), so they can be rewritten whenever the monitor has
news, and they go when retention deletes the version's folder. A card is written only for a finished, readable
version; one whose folder retention emptied meanwhile has its card removed again, so no folder holds a card alone.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from retrain_job.card.build import build_card
from retrain_job.card.render import render_card
from shared.bundle import MANIFEST_FILE, CorruptBundle, list_versions, models_prefix, read_bundle
from shared.pointer import read_pointer
from shared.spec import ModelSpec
from shared.store import NotFound, Store

CARD_JSON, CARD_HTML = "card.json", "card.html"


def card_key(model: str, version: str, filename: str = CARD_JSON) -> str:
    """Where a file of the version's folder (a card file unless named) lives in the store."""
    return f"{models_prefix(model)}{version}/{filename}"


def read_report(store: Store, key: str) -> dict | None:
    """A JSON report (the monitor's latest) from the store; None if there is none or it cannot be read."""
    try:
        report = json.loads(store.read(key)[0])
    except (NotFound, ValueError):
        return None
    return report if isinstance(report, dict) else None


def write_card(store: Store, spec: ModelSpec, version: str, *, monitor: Mapping | None = None,
               monitor_key: str | None = None, now: datetime | None = None) -> dict:
    """Build the version's card from its verified bundle, the serving pointer and the monitor's report (if any), and
    write it as JSON and HTML, replacing an older card; NotFound or CorruptBundle when the version cannot be read."""
    manifest = read_bundle(store, spec.name, version).manifest
    pointer, _ = read_pointer(store, spec.name)
    card = build_card(spec, manifest, generated_at=now or datetime.now(UTC), pointer=pointer, monitor=monitor,
                      monitor_key=monitor_key)
    store.write(card_key(spec.name, version, CARD_JSON), json.dumps(card, indent=1).encode())
    store.write(card_key(spec.name, version, CARD_HTML), render_card(card).encode())
    try:
        store.read(card_key(spec.name, version, MANIFEST_FILE))
    except NotFound:  # retention deleted the version while its card was written
        for filename in (CARD_JSON, CARD_HTML):
            store.delete(card_key(spec.name, version, filename))
        raise
    return card


def read_card(store: Store, model: str, version: str) -> dict:
    """A version's card as written (NotFound if it has none)."""
    return json.loads(store.read(card_key(model, version))[0])


def refresh_cards(store: Store, spec: ModelSpec, versions: Iterable[str] | None = None, *, monitor_key: str,
                  monitor: Mapping | None = None, now: datetime | None = None) -> dict:
    """Write the card of each version (default: every published one) with the monitor's report `monitor`, else the
    one at `monitor_key` if any; returns each version's card key (`written`) and why a version has none (`failed`)."""
    report = monitor if monitor is not None else read_report(store, monitor_key)
    written, failed = {}, {}
    for version in list_versions(store, spec.name) if versions is None else versions:
        try:
            write_card(store, spec, version, monitor=report, monitor_key=monitor_key if report is not None else None,
                       now=now)
            written[version] = card_key(spec.name, version)
        except NotFound:
            failed[version] = "no such finished version in the store"
        except CorruptBundle as exc:
            failed[version] = f"unreadable bundle: {exc}"
    return {"model": spec.name, "written": written, "failed": failed}
