"""Card fixtures: both shipped models' real bundles published into a real local store."""
from __future__ import annotations

import pytest

from retrain_job.card.store import refresh_cards
from retrain_job.monitor.keys import latest_report_key
from shared.spec import load_spec
from shared.store import LocalStore
from tests.support.bundles import STABLE, publish

PENGUINS_OLD = "20261001T000000Z-older000"  # a fallback of penguins, so a model has more than one version


@pytest.fixture
def both_models(local_store, trained_bundle, co2_bundle) -> LocalStore:
    """penguins (stable and one fallback) and co2 (stable) published as the job publishes them."""
    publish(local_store, trained_bundle, STABLE, PENGUINS_OLD)
    publish(local_store, co2_bundle, STABLE, model="co2")
    return local_store


def refresh(store: LocalStore, model: str, versions: list[str] | None = None) -> dict:
    """Write the model's cards with its monitor's latest report, as `python -m retrain_job card` does."""
    return refresh_cards(store, load_spec(model), versions, monitor_key=latest_report_key(model))
