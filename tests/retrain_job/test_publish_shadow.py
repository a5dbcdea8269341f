"""Shadows through the publishing functions and the job's commands, on a real local store: publish, promote
(refused on the monitor's "worse" verdict unless forced), drop, and retention keeping the shadow's bundle."""
from __future__ import annotations

import json
import sys
import types

import pytest

from retrain_job.__main__ import main
from retrain_job.monitor.run import monitor_prefix
from retrain_job.publish import (
    NO_VERDICT,
    ShadowRefused,
    apply_retention,
    drop_shadow,
    promote,
    promote_shadow,
)
from shared.bundle import list_versions, write_bundle
from shared.pointer import read_pointer
from tests.support.bundles import as_version, publish

OLD, STABLE, SHADOW = "20261101T000000Z-old00000", "20261102T000000Z-stable00", "20261103T000000Z-shadow00"


@pytest.fixture
def shadowed(local_store, trained_bundle):
    """A store whose pointer has a stable version, a fallback and a shadow scoring a quarter of requests."""
    publish(local_store, trained_bundle, STABLE, OLD)
    write_bundle(local_store, "penguins", as_version(trained_bundle, SHADOW))
    promote(local_store, "penguins", SHADOW, shadow_percent=25.0)
    return local_store


def _monitor_says(store, version: str, verdict: str) -> None:
    report = {"model": "penguins", "shadow": {"version": version, "verdict": verdict, "agreement": 0.9}}
    store.write(monitor_prefix("penguins") + "latest.json", json.dumps(report).encode())


def _command(capsys, store, *args: str) -> tuple[int, dict]:
    code = main([*args, "--store", str(store.root), "--model", "penguins"])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_publish_as_shadow_leaves_stable_and_canary_alone(shadowed):
    pointer, _ = read_pointer(shadowed, "penguins")
    assert (pointer.stable, pointer.previous, pointer.canary) == (STABLE, (OLD,), None)
    assert (pointer.shadow, pointer.shadow_percent) == (SHADOW, 25.0)
    with pytest.raises(ValueError, match="cannot shadow itself"):
        promote(shadowed, "penguins", STABLE, shadow_percent=100.0)


def test_promote_shadow_without_a_verdict_makes_it_stable(shadowed):
    published = promote_shadow(shadowed, "penguins")
    after = read_pointer(shadowed, "penguins")[0]
    assert published.after == after and published.verdict == NO_VERDICT
    assert (after.stable, after.previous, after.shadow) == (SHADOW, (STABLE, OLD), None)


@pytest.mark.parametrize("verdict", ["not-worse", "better", "undecided"])
def test_promote_shadow_follows_any_verdict_but_worse(shadowed, verdict):
    _monitor_says(shadowed, SHADOW, verdict)
    assert promote_shadow(shadowed, "penguins").verdict == verdict
    assert read_pointer(shadowed, "penguins")[0].stable == SHADOW


def test_promote_shadow_refuses_a_shadow_measured_worse_unless_forced(shadowed):
    _monitor_says(shadowed, SHADOW, "worse")
    before = read_pointer(shadowed, "penguins")
    with pytest.raises(ShadowRefused, match=f"{SHADOW} worse"):
        promote_shadow(shadowed, "penguins")
    assert read_pointer(shadowed, "penguins") == before  # nothing moved
    assert promote_shadow(shadowed, "penguins", force=True).verdict == "worse"
    assert read_pointer(shadowed, "penguins")[0].stable == SHADOW


def test_a_worse_verdict_on_another_version_does_not_stop_this_one(shadowed):
    _monitor_says(shadowed, "20261001T000000Z-earlier0", "worse")
    assert promote_shadow(shadowed, "penguins").verdict == NO_VERDICT


def test_an_unreadable_report_is_no_verdict(shadowed):
    shadowed.write(monitor_prefix("penguins") + "latest.json", b"{not json")
    assert promote_shadow(shadowed, "penguins").verdict == NO_VERDICT


def test_drop_shadow_and_nothing_left_to_move(shadowed):
    after = drop_shadow(shadowed, "penguins").after
    assert (after.stable, after.previous, after.shadow) == (STABLE, (OLD,), None)
    for move in (drop_shadow, promote_shadow):
        with pytest.raises(ValueError, match="no shadow"):
            move(shadowed, "penguins")


def test_promoting_the_shadow_by_another_route_ends_the_shadow(shadowed):
    assert promote(shadowed, "penguins", SHADOW).after.shadow is None


def test_retention_never_deletes_the_shadow(shadowed, trained_bundle):
    extra = [f"2026100{i}T000000Z-spare000" for i in range(1, 5)]
    for version in extra:
        write_bundle(shadowed, "penguins", as_version(trained_bundle, version))
    deleted = apply_retention(shadowed, "penguins", keep_unreferenced=0)
    assert set(deleted) == set(extra) and SHADOW in list_versions(shadowed, "penguins")


def test_commands_promote_shadow_refused_forced_and_drop(capsys, shadowed, trained_bundle):
    _monitor_says(shadowed, SHADOW, "worse")
    code, out = _command(capsys, shadowed, "promote-shadow")
    assert code == 1 and out["decision"] == "refused" and SHADOW in out["reason"] and "worse" in out["reason"]
    code, out = _command(capsys, shadowed, "promote-shadow", "--force")
    assert code == 0 and out["decision"] == "promote-shadow" and out["verdict"] == "worse"
    assert out["before"]["shadow"] == SHADOW and out["after"]["stable"] == SHADOW
    promote(shadowed, "penguins", STABLE, shadow_percent=100.0)  # the old stable back as the shadow
    code, out = _command(capsys, shadowed, "drop-shadow")
    assert code == 0 and out["after"]["shadow"] is None and read_pointer(shadowed, "penguins")[0].shadow is None
    code, out = _command(capsys, shadowed, "drop-shadow")
    assert code == 1 and "no shadow" in out["error"]


def test_score_goes_to_its_own_command_line(monkeypatch):
    seen = []
    cli = types.ModuleType("retrain_job.score.cli")
    cli.main = lambda argv: seen.append(argv) or 7
    monkeypatch.setitem(sys.modules, "retrain_job.score.cli", cli)
    assert main(["score", "--model", "penguins", "--input", "x.parquet", "--output", "out"]) == 7
    assert seen == [["--model", "penguins", "--input", "x.parquet", "--output", "out"]]
