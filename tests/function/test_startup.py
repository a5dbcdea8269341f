"""Start-up of the real function under Functions Framework: a bad setting stops it with one line, no traceback."""
from __future__ import annotations

import json
import subprocess

import pytest

from testbed.servers import FunctionServer, free_port
from tests.support.http import get

BAD = {
    "WORKERS": ("abc", "an integer >= 1"),
    "MODEL_STORE": ("gs://", "gs://BUCKET[/PREFIX]"),
    "LOG_LEVEL": ("LOUD", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL (any case)"),
    "MAX_BATCH_ROWS": ("0", "an integer >= 1"),
}


def start_and_wait_for_exit(env: dict[str, str], timeout: float = 15.0) -> tuple[int, list[str]]:
    """Start the function, wait for its process to end; its exit status and every line it wrote."""
    server = FunctionServer(env).start(wait=False)
    try:
        code = server.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        server.stop()
    lines = server.log_lines()
    assert code is not None, "the function kept running:\n" + "\n".join(lines)
    return code, lines


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_setting_stops_start_up_with_one_line(name):
    value, accepts = BAD[name]
    code, lines = start_and_wait_for_exit({name: value})
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"function: bad setting {name}={value!r}: expected ") and accepts in lines[0]
    assert not any("Traceback" in line for line in lines)


def test_every_bad_setting_is_named_at_once():
    code, lines = start_and_wait_for_exit({name: value for name, (value, _) in BAD.items()})
    assert code == 2 and not any("Traceback" in line for line in lines)
    assert sorted(line.split("=")[0].removeprefix("function: bad setting ") for line in lines) == sorted(BAD)


def _unreachable_store_env(**extra: str) -> dict[str, str]:
    return {"MODEL_STORE": "gs://outage-bucket/prefix", "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}",
            "STORAGE_TIMEOUT_S": "0.5", **extra}


@pytest.mark.parametrize("level, logged", [(None, True), ("critical", False)])
def test_log_level_applies_to_the_function(serve, level, logged):
    """The loader's error about an unreachable store is written at the default level, not at CRITICAL."""
    # DRY_RUN is read by the job only: a value the job would refuse does not concern the function
    env = _unreachable_store_env(DRY_RUN="maybe", **({"LOG_LEVEL": level} if level else {}))
    server = serve(env)
    status, body, _ = get(server.url + "/health", timeout=20)
    assert status == 200 and body["serving"] == "shipped"
    server.stop()
    entries = [json.loads(line) for line in server.log_lines() if line.startswith("{")]
    errors = [e for e in entries if e.get("logger") == "function.serving.loader" and e.get("severity") == "ERROR"
              and e["message"].startswith("model store")]
    assert bool(errors) == logged, server.log_lines()


def test_tracing_without_opentelemetry_installed_stops_start_up_with_one_line():
    code, lines = start_and_wait_for_exit({"TRACING": "1"})  # the function's lean venv has no OpenTelemetry
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("function: bad setting TRACING=1: OpenTelemetry is not installed")
