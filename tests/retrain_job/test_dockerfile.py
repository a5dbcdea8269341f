"""The job's Dockerfile: slim base, dependency layer before code, non-root user, no secrets."""
from __future__ import annotations

import re

from testbed.servers import REPO

DOCKERFILE = (REPO / "retrain_job" / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
            for line in (raw.strip() for raw in joined.splitlines()) if line and not line.startswith("#")]


def test_slim_python_base():
    first = _instructions()[0]
    assert first[0] == "FROM" and re.fullmatch(r"python:3\.\d+-slim(-\w+)?", first[1])


def test_dependencies_install_before_code_is_copied():
    steps = _instructions()
    install = next(i for i, (op, arg) in enumerate(steps) if op == "RUN" and "pip install" in arg)
    lock_copy = next(i for i, (op, arg) in enumerate(steps) if op == "COPY" and "requirements.lock" in arg)
    code_copies = [i for i, (op, arg) in enumerate(steps) if op == "COPY" and "requirements" not in arg]
    assert lock_copy < install < min(code_copies)
    assert "--require-hashes" in steps[install][1]


def test_the_model_specs_and_their_data_are_in_the_image():
    copies = [arg.split() for op, arg in _instructions() if op == "COPY"]
    assert ["specs/", "specs/"] in copies  # the job trains every model from its spec and its data file


def test_runs_as_non_root():
    users = [arg for op, arg in _instructions() if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    entry = next(i for i, (op, _) in enumerate(_instructions()) if op == "ENTRYPOINT")
    assert max(i for i, (op, _) in enumerate(_instructions()) if op == "USER") < entry
    assert '"python", "-m", "retrain_job"' in dict(_instructions())["ENTRYPOINT"]


def test_no_secrets_baked_in():
    for op, arg in _instructions():
        if op in ("ENV", "ARG"):
            assert not re.search(r"(SECRET|PASSWORD|TOKEN|CREDENTIALS|API_KEY)", arg, re.I), arg
        if op in ("COPY", "ADD"):
            assert not re.search(r"\.(json|pem|key|p12)\b", arg), arg
