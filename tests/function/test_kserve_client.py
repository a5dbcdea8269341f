"""KServe V1 as KServe's own Python client speaks it, with its defaults.

`kserve.InferenceRESTClient` (kserve 0.21, `RESTConfig()`: protocol v1) checks liveness with `GET /` (it reads
`status == "alive"`), readiness with `GET /v1/models/{name}` (it reads `ready`; a 503 means not ready), and
predicts and explains with `POST /v1/models/{name}:predict|:explain`. The kserve package cannot join the dev
environment (it pins pandas < 3, protobuf < 7 and psutil < 6, and pulls kubernetes, fastapi and grpcio-tools,
about 450 MB), so its client runs in a subprocess from its own virtual environment, `.venv-kserve`, which
`make test` installs as it installs mlserver's for the benchmark (KSERVE_PYTHON may name another interpreter
with kserve 0.21). The in-process checks of the same routes need neither.
"""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from shared.spec import load_spec
from shared.store import LocalStore
from testbed.servers import REPO, FunctionServer
from tests.support.bundles import STABLE, publish
from tests.support.http import post

KSERVE = "kserve==0.21.0"
MODELS = ("penguins", "co2")
ROWS = {name: [e["request"] for e in load_spec(name).examples()] for name in MODELS}

# Run by the kserve interpreter: argv[1] the base URL, stdin {"models": {name: rows}, "missing": name}.
DRIVER = textwrap.dedent("""
    import asyncio, json, sys
    import httpx
    from kserve import InferenceRESTClient

    async def main(base, job):
        out = {"models": {}}
        async with InferenceRESTClient() as client:  # RESTConfig(): protocol v1, KServe's defaults
            out["live"] = await client.is_server_live(base)
            for name, rows in job["models"].items():
                out["models"][name] = {
                    "ready": await client.is_model_ready(base, name),
                    "predict": await client.infer(base, {"instances": rows}, model_name=name),
                    "explain": await client.explain(base, name, {"instances": rows}),
                }
            missing = job.get("missing")
            if missing:
                try:
                    out["missing_ready"] = await client.is_model_ready(base, missing)
                except httpx.HTTPStatusError as exc:
                    out["missing_ready"] = f"HTTP {exc.response.status_code}"
        print(json.dumps(out))

    asyncio.run(main(sys.argv[1], json.load(sys.stdin)))
""")


# ---------------------------------------------------------------------------------------------------- fixtures

def _has_kserve(python: Path) -> bool:
    return python.exists() and subprocess.run([str(python), "-c", "import kserve"], capture_output=True,
                                              timeout=120, check=False).returncode == 0


@pytest.fixture(scope="module")
def kserve_python() -> Path:
    """The interpreter of `.venv-kserve`, which `make test` installs (KSERVE_PYTHON may name another)."""
    python = Path(os.environ.get("KSERVE_PYTHON") or REPO / ".venv-kserve" / "bin" / "python")
    assert _has_kserve(python), f"{python} cannot import kserve: run `make .venv-kserve/.installed` (make test does)"
    return python


@pytest.fixture(scope="module")
def server(tmp_path_factory, trained_bundle, co2_bundle):
    """The function under gunicorn serving both models from a local store."""
    store = LocalStore(tmp_path_factory.mktemp("kserve") / "bucket")
    publish(store, trained_bundle, STABLE)
    publish(store, co2_bundle, STABLE, model="co2")
    function = FunctionServer({"MODEL_STORE": str(store.root), "POINTER_TTL_S": "60", "MODELS": "penguins,co2",
                               "DEFAULT_MODEL": "penguins"}).start()
    yield function
    function.stop()


def _drive(python: Path, base: str, job: dict) -> dict:
    run = subprocess.run([str(python), "-c", DRIVER, base], input=json.dumps(job), capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


# ------------------------------------------------------------------------------------------------------- tests

def test_kserve_client_with_its_defaults_drives_both_models(kserve_python, server):
    answers = _drive(kserve_python, server.url, {"models": ROWS, "missing": "no-such-model"})
    assert answers["live"] is True
    assert answers["missing_ready"] == "HTTP 404"  # an unknown model is an error, as KServe's server answers it
    for name, rows in ROWS.items():
        got = answers["models"][name]
        assert got["ready"] is True
        status, ours, _ = post(f"{server.url}/v1/models/{name}:predict", {"instances": rows})
        assert status == 200, ours
        target = load_spec(name).target.name
        strip = ("id",)  # prediction ids differ per request
        for via_kserve, direct in zip(got["predict"]["predictions"], ours["predictions"], strict=True):
            assert {k: v for k, v in via_kserve.items() if k not in strip} == \
                {k: v for k, v in direct.items() if k not in strip}
        explained = got["explain"]
        assert [p[target] for p in explained["predictions"]] == [p[target] for p in ours["predictions"]]
        assert len(explained["explanations"]) == len(rows)
        for explanation in explained["explanations"]:
            assert explanation["attributions"] and all("featureAttributions" in a for a in explanation["attributions"])


def test_kserve_client_sees_a_model_that_cannot_load_as_not_ready(kserve_python, tmp_path):
    """No bundle and no shipped model: alive, but the model's GET is a 503, which KServe's client reads as False."""
    function = FunctionServer({"MODEL_STORE": str(tmp_path / "empty"), "MODELS": "penguins",
                               "SHIPPED_MODEL_DIR": str(tmp_path / "no-shipped-model")}).start()
    try:
        answers = _drive(kserve_python, function.url, {"models": {}, "missing": "penguins"})
    finally:
        function.stop()
    assert answers == {"live": True, "models": {}, "missing_ready": False}


# ---------------------------------------------------- the same routes in process (no kserve needed)

def test_get_root_is_liveness_and_post_root_still_predicts(client):
    live = client.get("/")
    assert live.status_code == 200 and live.get_json() == {"status": "alive"}
    row = ROWS["penguins"][0]
    answer = client.post("/", json=row)
    assert answer.status_code == 200 and answer.get_json()["species"] in ("Adelie", "Chinstrap", "Gentoo")
    wrong = client.put("/", json=row)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "GET, POST"


def test_a_models_description_says_it_is_ready_beside_its_manifest(client):
    for path in ("/v1/models/penguins", "/model"):
        body = client.get(path).get_json()
        assert body["ready"] is True and body["name"] == "penguins"
        assert {"model_version", "fallback", "manifest"} <= set(body)


def test_the_openapi_document_describes_liveness_and_readiness(client):
    doc = client.get("/openapi.json").get_json()
    assert set(doc["paths"]["/"]) == {"get", "post"}
    assert doc["components"]["schemas"]["Live"]["properties"]["status"]["enum"] == ["alive"]
    model = doc["components"]["schemas"]["Model"]
    assert "ready" in model["required"] and model["properties"]["ready"]["type"] == "boolean"
    assert doc["paths"]["/v1/models/penguins"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"] == {"$ref": "#/components/schemas/Model"}
