"""Nothing exposed: no secrets in the repository, no internals in responses, no headers in logs,
and hash-locked requirements that really install."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import venv

import pytest

from scripts import rollout
from testbed.servers import REPO, FunctionServer
from tests.support.bundles import publish
from tests.support.examples import SEED_EXAMPLES
from tests.support.http import NOT_A_ROUTE, get, post

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
              get(server.url + "/model")[1], get(server.url + "/health")[1], get(server.url + NOT_A_ROUTE)[1],
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


def _direct_requirements(extra: str) -> list[str]:
    """The project's own dependencies plus one extra of pyproject.toml, self-references expanded."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements, pending = list(project["dependencies"]), [extra]
    while pending:
        for req in project["optional-dependencies"][pending.pop()]:
            if req.startswith(project["name"] + "["):
                pending.append(req[len(project["name"]) + 1:-1])
            else:
                requirements.append(req)
    return requirements


@pytest.mark.parametrize(("lock", "extra"), [("function/requirements.lock", "function"),
                                             ("retrain_job/requirements.lock", "job")])
def test_locks_pin_every_requirement_with_hashes(lock, extra):
    text = (REPO / lock).read_text()
    pins = re.findall(r"^([a-z0-9][a-z0-9._-]*)==\S+ \\$", text, flags=re.M | re.I)
    hashes = re.findall(r"--hash=sha256:[0-9a-f]{64}", text)
    assert pins and len(hashes) >= len(pins)
    for requirement in _direct_requirements(extra):
        name = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)
        assert name.lower().replace("_", "-") in {p.lower().replace("_", "-") for p in pins}, name


def test_deployed_source_bundle_installs_from_its_lock_and_serves(local_store, trained_bundle, tmp_path, tally):
    """The bundle Cloud Build uploads, installed the way Cloud Functions installs it, answers without the repo."""
    publish(local_store, trained_bundle, "20260101T000000Z-deploy")
    source = tmp_path / "source"
    rollout.build_source(str(local_store.root), source)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    env = {"PATH": os.environ["PATH"], "PIP_CONSTRAINT": "", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "HOME": str(tmp_path)}
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--require-hashes", "--no-deps",
                              "-r", str(source / "requirements.txt")],
                             capture_output=True, text=True, env=env, check=False, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    lean = subprocess.run([str(python), "-c", "import importlib.util as u; "
                           "print(all(u.find_spec(m) is None for m in ('pandas', 'sklearn', 'shared', 'function')))"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    # scipy stays: xgboost-cpu 3.x imports scipy.sparse at import time (only large batches import xgboost)
    server = FunctionServer({**env, "MODEL_STORE": str(tmp_path / "no-store-here")},
                            bin_dir=env_dir / "bin", source=source / "main.py").start()
    try:
        status, body, _ = post(server.url + "/predict", SEED_EXAMPLES[0][0])
    finally:
        server.stop()
    held = lean.stdout.strip() == "True" and status == 200 and body["model_version"] == "20260101T000000Z-deploy"
    tally.add("security", "deployed source bundle installed from its hash lock serves (lean)", 1, int(held))
    assert lean.stdout.strip() == "True", lean.stderr[-1000:]
    assert status == 200 and body["species"] == SEED_EXAMPLES[0][1] and body["fallback"] is True
    assert body["model_version"] == "20260101T000000Z-deploy"  # the shipped model inside the bundle
