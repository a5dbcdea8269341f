"""The Locust profiles: their shapes, and a real headless Locust run against a live function."""
from __future__ import annotations

import csv

from load.profiles import PROFILES, users_at
from load.run import run_locust


def test_every_profile_starts_ends_and_spike_goes_from_1_to_100_users():
    assert set(PROFILES) == {"baseline", "normal", "stress", "spike", "10x"}
    for stages in PROFILES.values():
        total = sum(duration for duration, _, _ in stages)
        assert users_at(stages, 0) is not None and users_at(stages, total) is None
    spike = [users_at(PROFILES["spike"], t)[0] for t in range(0, 45)]
    assert spike[0] == 1 and max(spike) == 100 and spike[-1] == 1
    assert max(users_at(PROFILES["10x"], t)[0] for t in range(40)) == 10 * max(
        users_at(PROFILES["normal"], t)[0] for t in range(40))


def test_headless_run_against_a_live_function_reports_cold_requests_apart(serve, published, tmp_path):
    # no request yet: Locust's first one loads the (only) model
    server = serve({"MODEL_STORE": str(published.root), "MODELS": "penguins"})
    assert run_locust(server.url, "baseline", tmp_path, run_time="8s") == 0  # exit 1 on any failure
    stats = {row["Name"]: row for row in csv.DictReader((tmp_path / "stats_stats.csv").open())}
    assert int(stats["Aggregated"]["Request Count"]) >= 10 and stats["Aggregated"]["Failure Count"] == "0"
    cold = [name for name in stats if name.endswith("(cold)")]
    assert len(cold) == 1 and int(stats[cold[0]]["Request Count"]) == 1
    assert int(stats["predict single"]["Request Count"]) > 0
    assert (tmp_path / "report.html").stat().st_size > 10_000
