"""Locust load profiles for one model of the function: a realistic mix and five shapes chosen by PROFILE.

    MODEL=co2 locust -f load/locustfile.py --headless --host http://127.0.0.1:8080   (PROFILE=normal by default)
or `make load PROFILE=spike [MODEL=name] [HOST=...]`, which also starts a local function when HOST is not given.

Mix: single predictions near the model's example requests (most traffic), batches of 10-100 rows, a few
invalid requests (a 400 is the right answer and counts as success), health checks. Requests that waited
for a model load (the function answers them with `X-Model-Load: cold`) are reported under their own name,
apart from warm ones. MODEL (default: the default spec's model) picks the model and its examples.
"""
from __future__ import annotations

import os
import random

from locust import HttpUser, LoadTestShape, between, task

from load.profiles import PROFILES, users_at
from shared.spec import default_model, load_spec

SPEC = load_spec(os.environ.get("MODEL") or default_model())
EXAMPLES = tuple(e["request"] for e in SPEC.examples())
PATH = f"/v1/models/{SPEC.name}:predict"
FIRST_NUMERIC = next(f.name for f in SPEC.features if f.kind == "numeric")
INVALID = ({FIRST_NUMERIC: -1}, {FIRST_NUMERIC: "long"}, {"instances": []})


def _jitter(row: dict, rng: random.Random) -> dict:
    """A plausible row near an example (within 2% on each number; integers stay integers)."""
    return {k: (round(v * rng.uniform(0.98, 1.02), 1) if type(v) is float else v) for k, v in row.items()}


def _answered(n: int):
    def check(resp) -> str | None:
        if resp.status_code != 200:
            return f"{resp.status_code}: batch of {n}"
        predictions = resp.json()["predictions"]
        if len(predictions) != n or any(SPEC.target.name not in p for p in predictions):
            return f"batch of {n} answered {len(predictions)} predictions"
        return None
    return check


class ModelClient(HttpUser):
    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        self.rng = random.Random()

    def _post(self, body: dict, name: str, check) -> None:
        with self.client.post(PATH, json=body, name=name, catch_response=True) as resp:
            _judge(resp, name, check)

    @task(20)
    def single(self) -> None:
        self._post({"instances": [_jitter(self.rng.choice(EXAMPLES), self.rng)]}, "predict single", _answered(1))

    @task(3)
    def batch(self) -> None:
        n = self.rng.randint(10, 100)
        rows = [_jitter(EXAMPLES[j % len(EXAMPLES)], self.rng) for j in range(n)]
        self._post({"instances": rows}, "predict batch", _answered(n))

    @task(1)
    def invalid(self) -> None:
        body = self.rng.choice(INVALID)
        self._post(body if "instances" in body else {"instances": [{**EXAMPLES[0], **body}]},
                   "predict invalid (400 expected)",
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
