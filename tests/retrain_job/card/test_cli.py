"""`python -m retrain_job card`: every published version's card, or one version's, with a JSON summary last."""
from __future__ import annotations

import json

from retrain_job.card.cli import main
from retrain_job.card.store import read_card
from tests.retrain_job.card.conftest import PENGUINS_OLD
from tests.support.bundles import STABLE


def last_line(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_all_models_backfills_every_published_version(both_models, capsys):
    assert main(["--store", str(both_models.root), "--all-models"]) == 0
    assert last_line(capsys) == {"command": "card", "decision": "all-models",
                                 "models": {"co2": {"written": 1, "failed": {}},
                                            "penguins": {"written": 2, "failed": {}}}}
    for model, version in (("co2", STABLE), ("penguins", STABLE), ("penguins", PENGUINS_OLD)):
        assert read_card(both_models, model, version)["model"]["name"] == model


def test_one_version_or_a_failure_named(both_models, capsys):
    assert main(["--store", str(both_models.root), "--model", "penguins", "--version", PENGUINS_OLD]) == 0
    summary = last_line(capsys)
    assert summary["decision"] == "written" and list(summary["written"]) == [PENGUINS_OLD]
    assert main(["--store", str(both_models.root), "--model", "co2", "--version", "20200101T000000Z-nothere0"]) == 1
    summary = last_line(capsys)
    assert summary["decision"] == "failed" and summary["failed"] == {
        "20200101T000000Z-nothere0": "no such finished version in the store"}
