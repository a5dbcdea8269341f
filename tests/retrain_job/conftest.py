"""Job fixtures: run `python -m retrain_job` as a real process and read its summary line."""
from __future__ import annotations

import pytest

from tests.support.jobs import run_job


@pytest.fixture
def job():
    return run_job
