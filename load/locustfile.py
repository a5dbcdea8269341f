"""Locust load profiles for the penguin function: a realistic mix and five shapes chosen by PROFILE.

    locust -f load/locustfile.py --headless --host http://127.0.0.1:8080   (PROFILE=normal by default)
or `make load PROFILE=spike [HOST=...]`, which also starts a local function when HOST is not given.

Mix: single predictions of the three species (most traffic), batches of 10-100 rows, a few invalid
requests (a 400 is the right answer and counts as success), health checks. Requests that waited for a
model load (the function answers them with `X-Model-Load: cold`) are reported under their own name,
apart from warm ones.
"""
from __future__ import annotations

import os
import random

from locust import HttpUser, LoadTestShape, between, task

from load.profiles import PROFILES, users_at

SEEDS = (
    {"bill_length_mm": 39.1, "bill_depth_mm": 18.7, "flipper_length_mm": 181, "body_mass_g": 3750,
     "sex": "male", "island": "Torgersen"},
    {"bill_length_mm": 50.0, "bill_depth_mm": 15.2, "flipper_length_mm": 230, "body_mass_g": 6050,
     "sex": "male", "island": "Biscoe"},
    {"bill_length_mm": 46.5, "bill_depth_mm": 17.9, "flipper_length_mm": 192, "body_mass_g": 3500,
     "sex": "female", "island": "Dream"},
)
SPECIES = ("Adelie", "Gentoo", "Chinstrap")
INVALID = ({"bill_length_mm": -1, "island": "Mars"}, {"bill_length_mm": "long"}, {"instances": []})


def _jitter(row: dict, rng: random.Random) -> dict:
    """A plausible penguin near a seed example (within 2% on each measurement)."""
    return {k: round(v * rng.uniform(0.98, 1.02), 1) if isinstance(v, (int, float)) else v for k, v in row.items()}


class PenguinClient(HttpUser):
    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        self.rng = random.Random()

    def _post(self, body: dict, name: str, check) -> None:
        with self.client.post("/predict", json=body, name=name, catch_response=True) as resp:
            _judge(resp, name, check)

    @task(20)
    def single(self) -> None:
        i = self.rng.randrange(3)
        self._post(_jitter(SEEDS[i], self.rng), "predict single",
                   lambda r: None if r.status_code == 200 and r.json()["species"] == SPECIES[i]
                   else f"{r.status_code}: expected {SPECIES[i]}")

    @task(3)
    def batch(self) -> None:
        n = self.rng.randint(10, 100)
        rows = [_jitter(SEEDS[j % 3], self.rng) for j in range(n)]
        self._post({"instances": rows}, "predict batch",
                   lambda r: None if r.status_code == 200 and len(r.json()["predictions"]) == n
                   else f"{r.status_code}: batch of {n}")

    @task(1)
    def invalid(self) -> None:
        self._post(self.rng.choice(INVALID), "predict invalid (400 expected)",
                   lambda r: None if r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
                   else f"{r.status_code} instead of 400")

    @task(2)
    def health(self) -> None:
        with self.client.get("/health", name="health", catch_response=True) as resp:
            _judge(resp, "health", lambda r: None if r.status_code == 200 else f"{r.status_code}")


def _judge(resp, name: str, check) -> None:
    """Mark the response failed or not; a request that waited for a model load is reported as `name (cold)`."""
    if resp.headers.get("X-Model-Load") == "cold":
        resp.request_meta["name"] = f"{name} (cold)"
    problem = check(resp)
    if problem:
        resp.failure(problem)
    else:
        resp.success()


class ProfileShape(LoadTestShape):
    """Users over time for the profile named by the PROFILE environment variable."""

    def __init__(self) -> None:
        super().__init__()
        name = os.environ.get("PROFILE", "normal")
        if name not in PROFILES:
            raise ValueError(f"PROFILE must be one of {', '.join(PROFILES)}")
        self.stages = PROFILES[name]

    def tick(self):
        return users_at(self.stages, self.get_run_time())
