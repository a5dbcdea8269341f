"""schemathesis against our own /openapi.json on a live function over real HTTP."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from testbed.servers import REPO
from tests.support.bundles import publish

CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_schemathesis_finds_no_server_error_and_no_schema_violation(serve, local_store, trained_bundle, tally):
    publish(local_store, trained_bundle, "20260101T000000Z-schemathesis")
    server = serve({"MODEL_STORE": str(local_store.root)})
    cli = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run([str(cli), "--config-file", str(CONFIG), "run", f"{server.url}/openapi.json",
                             "--checks", "all", "--max-examples", "100", "--generation-deterministic"],
                            capture_output=True, text=True, timeout=300, check=False, cwd=REPO)
    generated = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert result.returncode == 0 and generated, result.stdout[-3000:]
    tally.add("hostile input", "schemathesis cases (live HTTP)", int(generated.group(1)), int(generated.group(2)))
    assert int(generated.group(1)) >= 100
