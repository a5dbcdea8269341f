"""JSON over real HTTP (urllib, no test client), and the path used to reach the 404 route."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

# Deliberately not a route of the function: requests to it exercise the 404 answer.
NOT_A_ROUTE = "/no-such-route"


def post(url: str, body, headers: dict | None = None, raw: bytes | None = None, timeout: float = 10):
    """POST JSON over real HTTP; returns (status, parsed body, headers)."""
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


def get(url: str, timeout: float = 10):
    """GET over real HTTP; returns (status, parsed body, headers)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)
