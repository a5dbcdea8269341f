"""`make serve`'s one line once the function answers: which models it serves, and where.

Polls `GET /health` (the function's own readiness) until it answers, then prints one line naming every
served model with its route, so a newcomer knows the server is up without reading gunicorn's log.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request


def wait_for_health(url: str, timeout_s: float) -> dict | None:
    """The /health document once the server answers it (200, or a 503 naming its models), None on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 503:
                return json.loads(exc.read())
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    return None


def announcement(url: str, health: dict) -> str:
    """One line: the served models and their routes."""
    models = sorted(health.get("models") or {})
    routes = ", ".join(f"{m} (POST {url}/v1/models/{m}:predict)" for m in models)
    return f"serving {len(models)} model(s) at {url}: {routes}; docs: {url}/openapi.json, health: {url}/health"


def main() -> int:
    """Wait for the server at --url and print the announcement (exit 1 if it never answers)."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--timeout", type=float, default=120.0)
    args = p.parse_args()
    health = wait_for_health(args.url, args.timeout)
    if health is None:
        print(f"make serve: nothing answered at {args.url}/health within {args.timeout:.0f} s", file=sys.stderr)
        return 1
    print(announcement(args.url, health), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
