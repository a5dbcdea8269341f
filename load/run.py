"""`make load PROFILE=... [HOST=...]`: Locust headless with CSV and HTML output in load/out/<profile>/.

Without HOST it starts the function locally (lean environment, local store, gunicorn) and stops it after.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.servers import FunctionServer  # noqa: E402


def main() -> int:
    profile = os.environ.get("PROFILE", "normal")
    out = REPO / "load" / "out" / profile
    out.mkdir(parents=True, exist_ok=True)
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
        cmd = [sys.executable, "-m", "locust", "-f", str(REPO / "load" / "locustfile.py"), "--headless",
               "--host", host, "--csv", str(out / "stats"), "--html", str(out / "report.html"),
               "--only-summary", "--exit-code-on-error", "1", "--stop-timeout", "5"]
        return subprocess.run(cmd, env={**os.environ, "PROFILE": profile}, check=False).returncode
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
