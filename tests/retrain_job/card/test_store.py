"""Cards beside the bundles: rewritable, invisible to reading, listing and retention, gone with their version."""
from __future__ import annotations

import json

import pytest

from retrain_job.card.store import CARD_HTML, CARD_JSON, card_key, read_card, write_card
from retrain_job.monitor.run import monitor_prefix
from retrain_job.publish import apply_retention
from shared.bundle import list_versions, models_prefix, read_bundle, write_bundle
from shared.spec import load_spec
from shared.store import LocalStore, NotFound
from tests.retrain_job.card.conftest import PENGUINS_OLD, refresh
from tests.support.bundles import STABLE, as_version

UNREFERENCED = ("20260901T000000Z-unref001", "20260902T000000Z-unref002", "20260903T000000Z-unref003")


def test_cards_sit_beside_every_version_without_changing_how_bundles_read_or_list(both_models):
    before = list_versions(both_models, "penguins")
    summary = refresh(both_models, "penguins")
    assert summary["failed"] == {} and sorted(summary["written"]) == sorted(before) == sorted([STABLE, PENGUINS_OLD])
    assert list_versions(both_models, "penguins") == before
    for version in before:
        bundle = read_bundle(both_models, "penguins", version)  # checksums verified; the card is not a bundle file
        assert CARD_JSON not in bundle.manifest["files"] and CARD_HTML not in bundle.files
        assert read_card(both_models, "penguins", version)["model"]["version"] == version
        assert both_models.read(card_key("penguins", version, CARD_HTML))[0].startswith(b"<!doctype html>")


def test_a_card_is_rewritten_with_the_monitor_s_news(both_models):
    spec = load_spec("penguins")
    first = write_card(both_models, spec, STABLE)
    assert first["live_quality"] is None
    report = {"generated_at": "2026-12-01T12:00:00+00:00", "window": {"feedback_from": "a", "to": "b"},
              "min_labels": 30, "versions": [], "segments": [], "drift": {}}
    both_models.write(monitor_prefix("penguins") + "latest.json", json.dumps(report).encode())
    refresh(both_models, "penguins", [STABLE])
    live = read_card(both_models, "penguins", STABLE)["live_quality"]
    assert live["report"] == monitor_prefix("penguins") + "latest.json" and live["generated_at"] == \
        report["generated_at"]


def test_retention_deletes_a_version_s_card_with_it_and_keeps_the_others(both_models, trained_bundle):
    for version in UNREFERENCED:
        write_bundle(both_models, "penguins", as_version(trained_bundle, version))
    refresh(both_models, "penguins")
    deleted = apply_retention(both_models, "penguins", keep_unreferenced=1)
    assert deleted == list(UNREFERENCED[:2][::-1])
    prefix = models_prefix("penguins")
    for version in deleted:
        assert both_models.list(f"{prefix}{version}/") == []
    for version in (STABLE, PENGUINS_OLD, UNREFERENCED[2]):
        assert read_card(both_models, "penguins", version)["model"]["version"] == version
        read_bundle(both_models, "penguins", version)
    assert apply_retention(both_models, "penguins", keep_unreferenced=1) == []  # cards are no unfinished folders


def test_no_card_for_a_version_that_is_not_there(both_models):
    summary = refresh(both_models, "penguins", ["20200101T000000Z-missing0"])
    assert summary["written"] == {} and summary["failed"] == {
        "20200101T000000Z-missing0": "no such finished version in the store"}
    assert both_models.list(f"{models_prefix('penguins')}20200101T000000Z-missing0/") == []


class RetentionMidway(LocalStore):
    """A store whose version is deleted (as retention deletes it) while its card is being written."""

    def write(self, key: str, data: bytes, if_generation_match: int | None = None) -> int:
        generation = super().write(key, data, if_generation_match)
        if key.endswith(CARD_HTML):
            for k in self.list(key.rsplit("/", 1)[0] + "/"):
                if not k.endswith((CARD_JSON, CARD_HTML)):
                    self.delete(k)
        return generation


def test_a_card_never_outlives_its_version(both_models):
    store = RetentionMidway(both_models.root)
    with pytest.raises(NotFound):
        write_card(store, load_spec("penguins"), PENGUINS_OLD)
    assert store.list(f"{models_prefix('penguins')}{PENGUINS_OLD}/") == []
