"""The BigQuery emulator as a real server on 127.0.0.1, and the real google-cloud-bigquery Client pointed at it.

The server is PyPI's bqemulator, run by scripts/bqemulator_server.py from its own virtualenv .venv-bqemulator
(requirements-bqemulator.txt; `make .venv-bqemulator/.installed`). Its tables live in memory: a new server
starts empty and everything goes with it when it stops.

    with bigquery_emulator(tmp_path) as endpoint:
        client = bigquery_client(endpoint, "test-project")
"""
from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from testbed.servers import REPO, free_port

BQEMULATOR_PYTHON = REPO / ".venv-bqemulator" / "bin" / "python"
MISSING_VENV = (f"{BQEMULATOR_PYTHON} not found: run `make .venv-bqemulator/.installed` "
                "(the BigQuery emulator's own virtualenv)")
DEFAULT_PROJECT = "test-project"


class BigQueryEmulator:
    """bqemulator as a subprocess on a free 127.0.0.1 port; its log goes to log_path."""

    def __init__(self, workdir: Path, project: str = DEFAULT_PROJECT) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.project = project
        self.workdir = Path(workdir)
        self.log_path = self.workdir / "bqemulator.log"
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None

    def start(self, timeout: float = 60.0) -> BigQueryEmulator:
        if not BQEMULATOR_PYTHON.exists():
            raise RuntimeError(MISSING_VENV)
        uploads = self.workdir / "bqemulator-uploads"
        uploads.mkdir(parents=True, exist_ok=True)
        cmd = [str(BQEMULATOR_PYTHON), "-m", "scripts.bqemulator_server", "--host", "127.0.0.1",
               "--port", str(self.port), "--project", self.project, "--upload-dir", str(uploads)]
        began = time.monotonic()
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - began
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Poll GET /readyz until 200 (DuckDB and the catalog answer); fail early if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bqemulator exited with {self.proc.returncode} before it was ready; "
                                   f"last lines of {self.log_path}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.HTTPError, OSError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"bqemulator not ready at {self.endpoint} after {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM (bqemulator shuts down on it), then SIGKILL if it is still running 10 s later."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._log.close()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_bigquery_emulator(workdir: Path, project: str = DEFAULT_PROJECT) -> tuple[str, Callable[[], None]]:
    """Start the emulator, ready for queries; returns (endpoint URL, stop)."""
    emulator = BigQueryEmulator(workdir, project).start()
    return emulator.endpoint, emulator.stop


@contextlib.contextmanager
def bigquery_emulator(workdir: Path, project: str = DEFAULT_PROJECT) -> Iterator[str]:
    """The emulator's endpoint URL while the block runs; stopped after it, whatever happens."""
    endpoint, stop = start_bigquery_emulator(workdir, project)
    try:
        yield endpoint
    finally:
        stop()


def bigquery_client(endpoint: str, project: str = DEFAULT_PROJECT):
    """The real google.cloud.bigquery.Client, anonymous, talking to the emulator at endpoint."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                           client_options={"api_endpoint": endpoint})
