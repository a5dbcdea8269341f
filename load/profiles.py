"""Load profiles: users over time for each named shape, kept free of Locust so tests can read them."""
from __future__ import annotations

Stage = tuple[int, int, float]  # (seconds the stage lasts, users at its end, users spawned or stopped per second)

PROFILES: dict[str, list[Stage]] = {
    "baseline": [(20, 1, 1)],
    "normal": [(10, 10, 2), (30, 10, 2)],
    "stress": [(15, 20, 4), (15, 35, 4), (15, 50, 4)],
    "spike": [(10, 1, 1), (20, 100, 50), (15, 1, 50)],
    "10x": [(10, 100, 20), (30, 100, 20)],
}


def users_at(stages: list[Stage], elapsed: float) -> tuple[int, float] | None:
    """(users, spawn rate) of the stage running `elapsed` seconds in; None once the profile is over."""
    end = 0
    for duration, users, rate in stages:
        end += duration
        if elapsed < end:
            return users, rate
    return None
