"""Nothing exposed: no secrets in the repository, no internals in responses, no headers in logs,
and hash-locked requirements that really install."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import venv

import pytest

from shared.examples import SEED_EXAMPLES
from tests.conftest import REPO, get, post, publish

SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN (RSA |EC |OPENSSH |ENCRYPTED )?PRIVATE KEY-----"),
    "service account key": re.compile(r'"private_key(_id)?"\s*:\s*"'),
    "Google API key": re.compile(r"AIza[0-9A-Za-z_\-]{35}"),
    "OAuth access token": re.compile(r"ya29\.[0-9A-Za-z_\-]{20,}"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "password assignment": re.compile(r"(?i)\b(password|passwd|secret)\s*[:=]\s*['\"][^'\"\s]{8,}['\"]"),
}


def scan(text: str) -> list[str]:
    return [name for name, pattern in SECRET_PATTERNS.items() if pattern.search(text)]


def test_scanner_finds_planted_secrets():
    planted = '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIE"}'
    assert {"private key", "service account key"} <= set(scan(planted))
    assert scan("key = AIza" + "A" * 35) == ["Google API key"]


def test_repository_holds_no_secret(tally):
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    found = {}
    for name in files:
        path = REPO / name
        if path.suffix in {".ubj", ".npz", ".png"} or not path.is_file():
            continue
        hits = scan(path.read_text(errors="ignore"))
        if hits and name != "tests/reliability/test_security.py":
            found[name] = hits
    tally.add("security", "repository files scanned for secrets", len(files), len(files) - len(found))
    assert not found, found


def test_responses_reveal_no_internals_and_logs_no_headers(serve, local_store, trained_bundle, tally):
    publish(local_store, trained_bundle, "20260101T000000Z-security")
    server = serve({"MODEL_STORE": str(local_store.root)})
    token = "Bearer s3cr3t-t0ken-that-must-not-be-logged"
    bodies = [post(server.url + "/predict", SEED_EXAMPLES[0][0], headers={"Authorization": token})[1],
              post(server.url + "/predict", {"bill_length_mm": "x"}, headers={"Authorization": token})[1],
              post(server.url + "/predict", None, raw=b"\xff{", headers={"Authorization": token})[1],
              get(server.url + "/model")[1], get(server.url + "/health")[1], get(server.url + "/nope")[1],
              get(server.url + "/openapi.json")[1]]
    leaks = ("Traceback", "/work", "site-packages", str(REPO), "xgboost", "numpy", "scikit", "python3",
             sys.version.split()[0])
    text = json.dumps(bodies)
    held = sum(leak not in text for leak in leaks)
    logs = "\n".join(server.log_lines())
    held_logs = ("s3cr3t" not in logs) + ("Authorization" not in logs)
    tally.add("security", "responses free of internals; no headers in logs", len(leaks) + 2, held + held_logs)
    assert held == len(leaks), [leak for leak in leaks if leak in text]
    assert held_logs == 2


@pytest.mark.parametrize("lock", ["function/requirements.lock", "retrain_job/requirements.lock"])
def test_locks_pin_every_requirement_with_hashes(lock):
    text = (REPO / lock).read_text()
    pins = re.findall(r"^([a-z0-9][a-z0-9._-]*)==\S+ \\$", text, flags=re.M | re.I)
    hashes = re.findall(r"--hash=sha256:[0-9a-f]{64}", text)
    assert pins and len(hashes) >= len(pins)
    direct = (REPO / lock).with_name("requirements.txt").read_text()
    for line in direct.splitlines():
        name = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if name and not line.startswith("-r"):
            assert name.group(1).lower().replace("_", "-") in {p.lower().replace("_", "-") for p in pins}, name


def test_function_installs_from_its_lock(tmp_path, tally):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    env = {**os.environ, "PIP_CONSTRAINT": "", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--require-hashes", "--no-deps",
                              "-r", str(REPO / "function" / "requirements.lock")],
                             capture_output=True, text=True, env=env, check=False, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    imports = subprocess.run([str(python), "-c", "import functions_framework, xgboost, marshmallow, apispec, orjson, "
                              "numpy, google.cloud.storage; import importlib.util as u; "
                              "print(all(u.find_spec(m) is None for m in ('pandas', 'sklearn')))"],
                             capture_output=True, text=True, check=False)
    # scipy stays: xgboost-cpu 3.x imports scipy.sparse at import time (only large batches import xgboost)
    tally.add("security", "function installed from its hash lock (lean: no pandas/sklearn)", 1,
              int(imports.stdout.strip() == "True"))
    assert imports.stdout.strip() == "True", imports.stderr[-1000:]
