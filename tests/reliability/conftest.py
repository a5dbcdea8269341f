"""Reliability suite fixtures: a tally of what was tried and what held, printed as a table at the end."""
from __future__ import annotations

import pytest

from tests.support.tally import Tally, terminal_summary


@pytest.fixture
def tally() -> Tally:
    return Tally()


def pytest_terminal_summary(terminalreporter) -> None:
    terminal_summary(terminalreporter)
