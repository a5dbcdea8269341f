"""`make load PROFILE=... [HOST=...]`: Locust headless with CSV and HTML output in load/out/<profile>/.

Without HOST it starts the function locally (lean environment, local store, gunicorn) and stops it after.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testbed.servers import FunctionServer

REPO = Path(__file__).resolve().parent.parent



def run_locust(host: str, profile: str, out: Path, run_time: str | None = None, model: str | None = None) -> int:
    """Locust headless against `host` (one model's traffic); CSV (`stats_*.csv`) and HTML (`report.html`) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "locust", "-f", str(REPO / "load" / "locustfile.py"), "--headless",
           "--host", host, "--csv", str(out / "stats"), "--html", str(out / "report.html"),
           "--only-summary", "--exit-code-on-error", "1", "--stop-timeout", "5"]
    if run_time:  # cut the profile short (tests)
        cmd += ["--run-time", run_time]
    env = {**os.environ, "PROFILE": profile, **({"MODEL": model} if model else {})}
    return subprocess.run(cmd, env=env, check=False).returncode


def main() -> int:
    profile = os.environ.get("PROFILE", "normal")
    host = os.environ.get("HOST")
    server = None
    if not host:
        store = os.environ.get("MODEL_STORE", str(REPO / "local_bucket"))
        server = FunctionServer({"MODEL_STORE": store, "POINTER_TTL_S": "5"},
                                workers=int(os.environ.get("WORKERS", "1")),
                                threads=int(os.environ.get("THREADS", "8")))
        server.start()
        host = server.url
    try:
        model = os.environ.get("MODEL") or None
        return run_locust(host, profile, REPO / "load" / "out" / (f"{model}-{profile}" if model else profile),
                          model=model)
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
