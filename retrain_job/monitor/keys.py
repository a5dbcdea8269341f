"""Where the monitor's reports live in the store: read by the run that writes them, `promote-shadow` and the cards."""
from __future__ import annotations

LATEST = "latest"  # the newest report's stem, beside each stamped one


def monitor_prefix(model: str) -> str:
    """Where a model's monitor reports go in the store (beside `reports/<model>/drift/`)."""
    return f"reports/{model}/monitor/"


def latest_report_key(model: str) -> str:
    """The newest monitor report of a model, as JSON."""
    return f"{monitor_prefix(model)}{LATEST}.json"
