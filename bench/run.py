"""Side-by-side benchmark: our function against the peers in ../shared/peers, in one run, on 127.0.0.1.

Usage: python -m bench.run [--seconds 5] [--rounds 3] [--skip-mlserver]   (or `make bench`)

Prints one table (requests/s and p50/p99 at concurrency 1 and 16 with wrk, cold start, peak RSS) with our
ratio against each peer and PASS/FAIL per target, batch rows/s (`instances` and the Open Inference Protocol's
columns), single-row explanation latency and where our cold start goes, and writes bench/RESULTS.md and
bench/batch_latency.png. Load levels are interleaved across servers and repeated; medians are reported,
because this shared machine's speed drifts by tens of percent within a minute.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shared.bundle import MODEL_FILE, Bundle, read_bundle
from shared.pointer import read_pointer
from shared.spec import load_spec
from shared.store import LocalStore
from shared.validation import build_batch
from testbed.servers import GcsEmulator, free_port

REPO = Path(__file__).resolve().parent.parent
PEERS = (REPO.parent / "shared" / "peers").resolve()
OUT = REPO / "bench" / "out"
SHIPPED = REPO / "function" / "shipped_model"
SERVE_BUCKET = OUT / "serve_bucket"  # `make serve`'s local store: the shipped bundles copied in
FN_PYTHON = REPO / ".venv-function" / "bin" / "python"

# every penguin server gets the same penguin rows; mlserver and ours-v2 the very same V2 body
EXAMPLES = [e["request"] for e in load_spec("penguins").examples()]
PENGUIN = {**EXAMPLES[0]}
V2_PATH = "/v2/models/penguins/infer"
EXPLAIN_PATH = "/v1/models/penguins:explain"
# our CO2 regressor, measured the same way at the production settings (its own V1 route, one row per request)
CO2 = load_spec("co2")
CARS = [e["request"] for e in CO2.examples()]
CO2_PATH = "/v1/models/co2:predict"
BATCH_ROWS = 10_000


def make_serve_settings() -> tuple[dict, dict]:
    """(gunicorn, other) environment of `make serve`, read from the Makefile so the two cannot drift apart."""
    text = (REPO / "Makefile").read_text()
    recipe = re.search(r"^serve:.*?\n((?:\t.*\n)+)", text, re.MULTILINE)
    ttl = re.search(r"POINTER_TTL_S=\$\$\{POINTER_TTL_S:-([\d.]+)\}", recipe.group(1)) if recipe else None
    defaults = {var: re.search(rf"^{var} \?= (\d+)$", text, re.MULTILINE) for var in ("WORKERS", "THREADS")}
    if not (recipe and ttl and "LOG_TO_STORE=1" in recipe.group(1) and all(defaults.values())):
        raise RuntimeError("the Makefile's serve target no longer reads as bench/run.py expects; update "
                           "make_serve_settings")
    return ({var: m.group(1) for var, m in defaults.items()}, {"LOG_TO_STORE": "1", "POINTER_TTL_S": ttl.group(1)})


# Ours and floor always run under identical gunicorn settings, at two of them, both judged: the production
# settings we deploy with (README "Production settings", terraform/variables.tf), and `make serve`'s (where
# ours also logs to its local store, re-reads the pointer every 5 s and reads a local store, as there).
SERVE = "@serve"
SERVE_GUNICORN, SERVE_ENV = make_serve_settings()
GUNICORN = {"": {"WORKERS": "1", "THREADS": "1"}, SERVE: SERVE_GUNICORN}
MIB = 1024 * 1024


@dataclass
class Server:
    """One server under test: how to start it and how to ask it for a prediction."""

    name: str
    cmd: list[str]
    path: str
    body: dict
    lua: Path
    ok: callable
    env: dict = field(default_factory=dict)  # on top of this process's environment; None unsets a variable
    cwd: Path = REPO
    before_start: callable = None  # called with the chosen port, for servers configured by file
    about: str = ""  # what runs, under which settings (RESULTS.md)
    asked: str = "one penguin object"  # what its body holds (RESULTS.md)
    proc: subprocess.Popen | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> float:
        """Launch and wait for the first correct answer; returns seconds from launch to that answer."""
        self.port = free_port()
        if self.before_start:
            self.before_start(self.port)
        cmd = [part.replace("{port}", str(self.port)) for part in self.cmd]
        env = {k: v for k, v in {**os.environ, **self.env}.items() if v is not None}
        started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=self.cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        data = json.dumps(self.body).encode()
        deadline = started + 60
        while time.perf_counter() < deadline and self.proc.poll() is None:
            try:
                req = urllib.request.Request(self.url, data=data, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=5) as resp:
                    if resp.status == 200 and self.ok(json.loads(resp.read())):
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.005)
        raise RuntimeError(f"{self.name} never answered correctly (exit status {self.proc.poll()})")

    def stop(self) -> None:
        if self.proc:
            for pid in _tree(self.proc.pid)[::-1]:
                try:
                    os.kill(pid, 15)
                except ProcessLookupError:
                    pass
            self.proc.wait(timeout=20)
            self.proc = None

    def rss(self) -> tuple[float, float]:
        """(peak RSS of all its processes, peak RSS of the largest one) in MiB, from VmHWM."""
        peaks = [_hwm(pid) for pid in _tree(self.proc.pid)]
        return sum(peaks) / MIB, max(peaks) / MIB


def _tree(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout.split()
    return [pid, *[p for child in out for p in _tree(int(child))]]


def _hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def _lua(name: str, path: str, body: dict) -> Path:
    script = OUT / f"{name}.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\n'
                      'wrk.headers["Content-Type"] = "application/json"\n')
    return script


def shipped_bundle(name: str) -> Bundle:
    """The stable bundle of `name` shipped with the function (its serving.json names it), verified."""
    store = LocalStore(SHIPPED)
    pointer, _ = read_pointer(store, name)
    return read_bundle(store, name, pointer.stable)


def tensor_body(bundle: Bundle, row: dict) -> dict:
    """One OIP FP32 tensor [1, F] of `row` encoded in the contract's column order (MLServer's XGBoost input)."""
    matrix = build_batch(bundle.contract, [row]).matrix
    return {"inputs": [{"name": "input-0", "shape": list(matrix.shape), "datatype": "FP32",
                        "data": [float(str(v)) for v in matrix.ravel()]}]}  # each float32's shortest form


def columnar_body(bundle: Bundle, rows: list[dict]) -> dict:
    """One OIP input per original feature (numbers FP64, categories BYTES), as MLServer's pandas codec sends them."""
    contract = bundle.contract
    numeric = {f.name for f in contract.numeric}
    return {"inputs": [{"name": name, "shape": [len(rows)], "datatype": "FP64" if name in numeric else "BYTES",
                        "data": [row.get(name) for row in rows]} for name in contract.field_names]}


def instances_body(examples: list[dict], rows: int) -> dict:
    return {"instances": [examples[i % len(examples)] for i in range(rows)]}


def prepare_peers(penguins: Bundle) -> Path:
    """Train the peers' own model with ../shared/peers/train.py (once: seed_style serves it) and lay out
    mlserver's folder serving our shipped penguin model, so mlserver and ours-v2 answer the same body."""
    work = OUT / "peers"
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "model.json").exists():
        subprocess.run([str(REPO / ".venv-peers" / "bin" / "python"), str(PEERS / "train.py")], cwd=work,
                       check=True, capture_output=True)
    ml = OUT / "mlserver"
    shutil.rmtree(ml, ignore_errors=True)
    ml.mkdir()
    (ml / MODEL_FILE).write_bytes(penguins.files[MODEL_FILE])
    (ml / "model-settings.json").write_text(json.dumps({
        "name": "penguins", "implementation": "mlserver_xgboost.XGBoostModel",
        "parameters": {"uri": f"./{MODEL_FILE}"}}))
    return work


def ff_server(name: str, source: Path, env: dict, cwd: Path = REPO, about: str = "") -> Server:
    """A Functions Framework function (ours or floor) under gunicorn, from the lean `.venv-function`."""
    cmd = [str(REPO / ".venv-function" / "bin" / "functions-framework"), "--source", str(source),
           "--target", "predict", "--host", "127.0.0.1", "--port", "{port}"]
    return Server(name, cmd, "/predict", PENGUIN, _lua(name, "/predict", PENGUIN),
                  lambda b: b.get("species") == "Adelie", env=env, cwd=cwd, about=about)


def _predicts(expected: list) -> Callable[[dict], bool]:
    """An OIP answer check: its `predict` output holds `expected`."""
    return lambda b: next((o.get("data") for o in b.get("outputs", []) if o.get("name") == "predict"), None) == expected


def _mlserver_adelie(body: dict) -> bool:
    """MLServer loads our booster through XGBRegressor, so its `predict` is the three class probabilities."""
    data = (body.get("outputs") or [{}])[0].get("data") or []
    return len(data) == 3 and data.index(max(data)) == 0  # Adelie, the first label


def _settings(env: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in env.items() if v is not None and k != "STORAGE_EMULATOR_HOST")


def servers(store_uri: str, emulator_url: str, peers_dir: Path, v2: dict, with_mlserver: bool) -> list[Server]:
    """Our function (lean venv; production settings: model from the GCS emulator; `make serve`'s: from a local
    store), floor under the same gunicorn settings, and every peer."""
    main_py = REPO / "function" / "main.py"
    gcs = {"MODEL_STORE": store_uri, "STORAGE_EMULATOR_HOST": emulator_url}
    result = []
    for suffix, gunicorn in GUNICORN.items():
        if suffix == SERVE:  # as `make serve` runs it: from function/, a local store, its settings
            env = {**gunicorn, **SERVE_ENV, "MODEL_STORE": str(SERVE_BUCKET), "STORAGE_EMULATOR_HOST": None}
            about = (f"our function as `make serve` runs it (from function/): {_settings({**gunicorn, **SERVE_ENV})} "
                     f"MODEL_STORE={SERVE_BUCKET.relative_to(REPO)} (a local copy of the shipped bundles)")
            ours = ff_server(f"ours{suffix}", main_py, env, cwd=REPO / "function", about=about)
        else:
            ours = ff_server(f"ours{suffix}", main_py, {**gunicorn, **gcs},
                             about=f"our function, production settings {_settings(gunicorn)}, model from the GCS "
                                   "emulator")
        label = "`make serve`'s" if suffix == SERVE else "production"
        result += [ours, ff_server(f"floor{suffix}", PEERS / "floor" / "main.py", gunicorn,
                                   about=f"a constant, {label} gunicorn settings {_settings(gunicorn)}")]
    prod = GUNICORN[""]
    fn_cmd = result[0].cmd
    tensor = v2["inputs"][0]
    asked_tensor = (f"one {tensor['datatype']} tensor {tensor['shape']} `{tensor['name']}`: a penguin in the "
                    "contract's encoded columns")
    result.append(Server("ours-v2", fn_cmd, V2_PATH, v2, _lua("ours-v2", V2_PATH, v2), _predicts(["Adelie"]),
                         env={**prod, **gcs}, about="as `ours` (production settings, GCS emulator)",
                         asked=f"{asked_tensor}, the very body mlserver gets"))
    co2_body = {"instances": [CARS[0]]}
    result.append(Server("ours-co2", fn_cmd, CO2_PATH, co2_body, _lua("ours-co2", CO2_PATH, co2_body),
                         lambda b: CO2.target.name in b["predictions"][0], env={**prod, **gcs},
                         about="as `ours` (production settings, GCS emulator)", asked="`instances`: one car"))
    result += [
        Server("seed_style", [str(REPO / ".venv-peers" / "bin" / "uvicorn"), "--app-dir", str(PEERS / "seed_style"),
                              "app:app", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning"],
               "/predict", PENGUIN, _lua("seed_style", "/predict", PENGUIN),
               lambda b: b.get("prediction") == "Adelie", cwd=peers_dir,
               about="FastAPI + pydantic + pandas under uvicorn, one worker, its own model (peers' train.py)"),
    ]
    if with_mlserver:
        def write_settings(port: int) -> None:  # mlserver takes its ports from settings.json
            settings = json.loads((PEERS / "mlserver" / "settings.json").read_text())
            settings.update(http_port=port, grpc_port=free_port(), metrics_port=free_port())
            (OUT / "mlserver" / "settings.json").write_text(json.dumps(settings))

        result.append(Server("mlserver", [str(REPO / ".venv-mlserver" / "bin" / "mlserver"), "start", "."],
                             V2_PATH, v2, _lua("mlserver", V2_PATH, v2), _mlserver_adelie,
                             cwd=OUT / "mlserver", before_start=write_settings,
                             about=f"MLServer 1.7.1, XGBoost runtime, default settings, serving our shipped "
                                   f"`{MODEL_FILE}`", asked=f"{asked_tensor}, the very body ours-v2 gets"))
    return result


def wrk(server: Server, connections: int, seconds: int) -> dict:
    """One wrk run: requests/s, p50 and p99 in ms (wrk's threads: 1 at c1, 2 at c16, for every server)."""
    threads = 1 if connections == 1 else 2
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", str(server.lua), server.url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    return {"rps": rps, "p50": _ms(out, "50%"), "p99": _ms(out, "99%"), "errors": errors}


def _ms(out: str, pct: str) -> float:
    value, unit = re.search(rf"{re.escape(pct)}\s+([\d.]+)(us|ms|s)", out).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


class Failed(Exception):
    """A measurement whose answers were wrong or errors; reported as such instead of a number."""


def _timed_requests(server: Server, path: str, body: dict, check: Callable[[dict], bool], *, count: int,
                    warmup: int) -> list[float]:
    """Seconds of each of `count` sequential POSTs (after `warmup` untimed ones) on one client connection
    (http.client reopens it when the server closes it), each answer checked; Failed on a wrong one."""
    data = json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    times = []
    try:
        for i in range(warmup + count):
            started = time.perf_counter()
            conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            payload = resp.read()
            elapsed = time.perf_counter() - started  # the client's own JSON parsing is not the server's time
            if resp.status != 200:
                raise Failed(f"HTTP {resp.status} from {server.name} {path}: {payload[:160].decode(errors='replace')}")
            try:
                good = check(json.loads(payload))
            except (ValueError, KeyError, TypeError, StopIteration):
                good = False
            if not good:
                raise Failed(f"wrong answer from {server.name} {path}: {payload[:160].decode(errors='replace')}")
            if i >= warmup:
                times.append(elapsed)
    finally:
        conn.close()
    return times


def batch_latency(server: Server, path: str, body: dict, check: Callable[[dict], bool], repeats: int) -> float:
    """Median seconds, end to end as the client sees it, for one request of a prepared batch `body` (validation
    included); the first two warm up (XGBoost loads lazily for large batches)."""
    return statistics.median(_timed_requests(server, path, body, check, count=repeats, warmup=2))


def sequential_latency(server: Server, path: str, body: dict, check: Callable[[dict], bool], *, count: int = 300,
                       warmup: int = 20) -> dict:
    """p50 and p99 in ms of `count` sequential requests after `warmup`."""
    times = _timed_requests(server, path, body, check, count=count, warmup=warmup)
    return {"p50": statistics.median(times) * 1e3, "p99": statistics.quantiles(times, n=100)[98] * 1e3,
            "count": count}


def _attempt(fn: Callable, *args):
    """fn(*args), or the reason it failed as a string (a server under change must not stop the whole run)."""
    try:
        return fn(*args)
    except subprocess.CalledProcessError as exc:
        return f"exit status {exc.returncode}: {(exc.stderr or '').strip()[-300:]}"
    except (Failed, OSError, RuntimeError, http.client.HTTPException, ValueError, StopIteration) as exc:
        return f"{type(exc).__name__}: {exc}"


def _rows_check(rows: int) -> Callable[[dict], bool]:
    return lambda b: len(b["predictions"]) == rows


def _columns_check(rows: int) -> Callable[[dict], bool]:
    return lambda b: len(next(o["data"] for o in b["outputs"] if o["name"] == "predict")) == rows


# Where a cold start of ours goes, in a fresh `.venv-function` process without gunicorn or HTTP: import the
# entry module, build the app, answer a first and a second request (a werkzeug Request), the model's read and
# build timed as the first `ModelLoader.choose()`. Prints one marked JSON line (request logs also go to stdout).
BREAKDOWN_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import main
t1 = time.perf_counter()
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request
from function.serving import factory, loader
loads = []
choose = loader.ModelLoader.choose
def timed_choose(self, *args, **kwargs):
    started = time.perf_counter()
    try:
        return choose(self, *args, **kwargs)
    finally:
        loads.append(time.perf_counter() - started)
loader.ModelLoader.choose = timed_choose
def request():
    return Request(EnvironBuilder(path="/predict", method="POST", json=json.loads(sys.argv[1])).get_environ())
t2 = time.perf_counter()
app = factory.get_app(main.SETTINGS)
t3 = time.perf_counter()
first = request()
t4 = time.perf_counter()
answer = app(first)
t5 = time.perf_counter()
assert answer.status_code == 200 and json.loads(answer.get_data())["species"] == "Adelie", answer.get_data()
second = request()
t6 = time.perf_counter()
app(second)
t7 = time.perf_counter()
print("BREAKDOWN", json.dumps({"import_main": t1 - t0, "build_app": t3 - t2, "first_request": t5 - t4,
                               "model_load": loads[0], "second_request": t7 - t6}), flush=True)
"""


def _run_env(env: dict) -> dict:
    return {k: v for k, v in {**os.environ, **env}.items() if v is not None}


STDLIB = frozenset(m.lstrip("_") for m in sys.stdlib_module_names)


def import_times(env: dict) -> dict[str, float]:
    """ms of `import main` by top-level package: `-X importtime` self times, the interpreter's own start-up
    imports (those of `-c pass`) left out."""
    def modules(code: str) -> dict[str, int]:
        err = subprocess.run([str(FN_PYTHON), "-X", "importtime", "-c", code], cwd=REPO / "function", env=env,
                             capture_output=True, text=True, check=True).stderr
        found = (re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line) for line in err.splitlines())
        return {m.group(2): int(m.group(1)) for m in found if m}

    base = modules("pass")
    by_package: dict[str, float] = {}
    for module, us in modules("import main").items():
        if module not in base:
            top = module.split(".")[0]
            top = "(Python's standard library)" if top.lstrip("_") in STDLIB else top
            by_package[top] = by_package.get(top, 0.0) + us / 1e3
    return dict(sorted(by_package.items(), key=lambda kv: -kv[1]))


def cold_breakdown(server: Server, runs: int = 3) -> dict:
    """Medians (ms) over `runs` fresh processes of each stage of BREAKDOWN_SCRIPT in the server's environment,
    plus Python's own start-up (`python -c pass`, process spawn included), the server's cold start over HTTP
    (taken alternately with them, so the machine's drift touches all alike) and `import main` by package."""
    env = _run_env(server.env)
    colds, startups, stages = [], [], []
    for _ in range(runs):
        colds.append(server.start())
        server.stop()
        started = time.perf_counter()
        subprocess.run([str(FN_PYTHON), "-c", "pass"], env=env, check=True)
        startups.append(time.perf_counter() - started)
        out = subprocess.run([str(FN_PYTHON), "-c", BREAKDOWN_SCRIPT, json.dumps(PENGUIN)], cwd=REPO / "function",
                             env=env, capture_output=True, text=True, check=True).stdout
        stages.append(json.loads(next(line for line in out.splitlines() if line.startswith("BREAKDOWN "))[10:]))
    result = {"cold": statistics.median(colds) * 1e3, "startup": statistics.median(startups) * 1e3}
    result.update({k: statistics.median(s[k] for s in stages) * 1e3 for k in stages[0]})
    result["packages"] = import_times(env)
    return result


# written by other benchmarks (bench/scale.py, bench/score.py, which `make bench` runs next)
KEPT_SECTIONS = ("## Scale: the job's log queries (make scale)", "## Batch scoring (make score)")


def write_results(report: str) -> None:
    """Write bench/RESULTS.md with this run's report, keeping the sections other benchmarks write."""
    path = REPO / "bench" / "RESULTS.md"
    old = path.read_text() if path.exists() else ""
    kept = [part for part in ("## " + p for p in old.split("\n## ")[1:]) if part.startswith(KEPT_SECTIONS)]
    path.write_text("\n\n".join([report.rstrip("\n"), *(k.rstrip("\n") for k in kept)]) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "5")))
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    p.add_argument("--skip-mlserver", action="store_true")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    from retrain_job.publish import copy_stable  # noqa: PLC0415
    from shared.store import GcsStore  # noqa: PLC0415

    emulator = GcsEmulator().start()
    os.environ["STORAGE_EMULATOR_HOST"] = emulator.url
    emulator.create_bucket("bench")
    shutil.rmtree(SERVE_BUCKET, ignore_errors=True)  # fresh each run: `make serve`'s store also collects logs
    for name in ("penguins", "co2"):
        copy_stable(LocalStore(SHIPPED), GcsStore("gs://bench"), name)
        copy_stable(LocalStore(SHIPPED), LocalStore(SERVE_BUCKET), name)
    penguins = shipped_bundle("penguins")
    peers_dir = prepare_peers(penguins)
    fleet = servers("gs://bench", emulator.url, peers_dir, tensor_body(penguins, PENGUIN), not args.skip_mlserver)
    by_name = {s.name: s for s in fleet}
    results: dict[str, dict] = {s.name: {"cold": [], 1: [], 16: []} for s in fleet}
    extra: dict = {"about": {s.name: (s.about, s.path, s.asked) for s in fleet}}
    try:
        for _ in range(3):  # cold starts: launch to first correct answer, median of 3
            for s in fleet:
                results[s.name]["cold"].append(s.start())
                s.stop()
        for s in fleet:
            s.start()
        for _ in range(args.rounds):
            for connections in (1, 16):
                for s in fleet:
                    results[s.name][connections].append(wrk(s, connections, args.seconds))
        for s in fleet:
            results[s.name]["rss_total"], results[s.name]["rss_worker"] = s.rss()
        ours = by_name["ours"]
        batch = {n: _attempt(batch_latency, ours, "/predict", instances_body(EXAMPLES, n), _rows_check(n),
                             7 if n < BATCH_ROWS else 5) for n in (1, 100, 1000, BATCH_ROWS)}
        extra["explain"] = _attempt(sequential_latency, ours, EXPLAIN_PATH, {"instances": [PENGUIN]},
                                    lambda b: len(b.get("explanations") or []) == 1)
        results["ours"]["rss_after_batches"] = ours.rss()[1]
        v2 = by_name["ours-v2"]
        rows = [EXAMPLES[i % len(EXAMPLES)] for i in range(BATCH_ROWS)]
        results["ours-v2"]["batch_10k"] = _attempt(batch_latency, v2, V2_PATH, columnar_body(penguins, rows),
                                                   _columns_check(BATCH_ROWS), 5)
        results["ours-v2"]["rss_after_batches"] = v2.rss()[1]
        co2 = by_name["ours-co2"]
        results["ours-co2"]["batch_10k"] = _attempt(batch_latency, co2, CO2_PATH, instances_body(CARS, BATCH_ROWS),
                                                    _rows_check(BATCH_ROWS), 5)
        results["ours-co2"]["rss_after_batches"] = co2.rss()[1]
        for s in fleet:  # the breakdown's processes should not share the cores with idle servers' timers
            s.stop()
        extra["breakdown"] = {name: _attempt(cold_breakdown, by_name[name]) for name in (f"ours{SERVE}", "ours")}
    finally:
        for s in fleet:
            s.stop()
        emulator.stop()
    report = summarise(results, batch, extra, args)
    print(report)
    write_results(report)
    plot(batch)
    return 0


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _per_s(rows: int, seconds: float | str) -> float | str:
    return seconds if isinstance(seconds, str) else rows / seconds


def _breakdown_table(breakdown: dict) -> str:
    """Stage | ms for each environment; the rest is the measured cold start less the stages measured in process."""
    failed = [f"The breakdown of `{n}` failed: {b.replace('|', '/')}\n\n"
              for n, b in breakdown.items() if isinstance(b, str)]
    breakdown = {n: b for n, b in breakdown.items() if not isinstance(b, str)}
    if not breakdown:
        return "".join(failed)
    names = list(breakdown)

    def row(label: str, values: list[float]) -> str:
        return f"| {label} | {' | '.join(f'{v:.1f}' for v in values)} |"

    header = [f"| {{}} | {' | '.join(f'`{n}` (ms)' for n in names)} |", "|---" * (len(names) + 1) + "|"]
    stages = [("Python start-up (`python -c pass`, process spawn included)", "startup"),
              ("`import main` (Functions Framework, Flask, our modules; by package below)", "import_main"),
              ("build the app (`get_app`: settings, loaders, request log)", "build_app"),
              ("first request, in process (no gunicorn, no HTTP)", "first_request"),
              ("&nbsp;&nbsp;of which: read + build the model (first `ModelLoader.choose()`)", "model_load"),
              ("second request, in process (for contrast)", "second_request")]
    lines = [header[0].format("stage"), header[1]]
    lines += [row(label, [breakdown[n][key] for n in names]) for label, key in stages]
    colds = [breakdown[n]["cold"] for n in names]
    in_process = [sum(breakdown[n][k] for k in ("startup", "import_main", "build_app", "first_request")) for n in names]
    lines.append(row("the rest: functions-framework's CLI and gunicorn (imports, boot, fork), HTTP, the client's "
                     "5 ms polling", [c - i for c, i in zip(colds, in_process)]))
    lines.append(row("cold start over HTTP (launch to first correct answer; median of 3, alternating with the "
                     "runs above)", colds))
    by_package = [breakdown[n]["packages"] for n in names]
    top = list(by_package[0])[:8]
    packages = [header[0].format("package"), header[1]]
    packages += [row(pkg, [b.get(pkg, 0.0) for b in by_package]) for pkg in top]
    others = [sum(ms for pkg, ms in b.items() if pkg not in top) for b in by_package]
    packages.append(row("every other package", others))
    packages.append(row("sum (with `-X importtime`'s own overhead)", [sum(b.values()) for b in by_package]))
    return ("".join(failed) + "\n".join(lines) + "\n\n`import main` by top-level package (`-X importtime` self "
            "times, the interpreter's start-up imports left out):\n\n" + "\n".join(packages))


def summarise(results: dict, batch: dict, extra: dict, args: argparse.Namespace) -> str:
    """The markdown tables, ratios and verdicts."""
    names = list(results)
    rows = []
    for name in names:
        r = results[name]
        rows.append(f"| {name} | {statistics.median(r['cold']):.2f} | {_median(r[1], 'rps'):.0f} | "
                    f"{_median(r[1], 'p50'):.2f} / {_median(r[1], 'p99'):.2f} | {_median(r[16], 'rps'):.0f} | "
                    f"{_median(r[16], 'p50'):.2f} / {_median(r[16], 'p99'):.2f} | "
                    f"{r['rss_total']:.0f} (largest process {r['rss_worker']:.0f}) |")
    ours = results["ours"]
    checks = []

    def target(label: str, value: float | str, limit: float, higher_is_better: bool = True) -> None:
        goal = f"{'>=' if higher_is_better else '<='} {f'{limit:,.0f}' if limit >= 1000 else f'{limit:g}'}"
        if isinstance(value, str):  # the measurement itself failed
            checks.append(f"| {label} | error: {value.replace('|', '/')[:200]} | {goal} | FAIL |")
            return
        ok = value >= limit if higher_is_better else value <= limit
        shown = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.2f}"
        checks.append(f"| {label} | {shown} | {goal} | {'PASS' if ok else 'FAIL'} |")

    def rps(name: str, c: int) -> float:
        return _median(results[name][c], "rps")

    for suffix, gunicorn in GUNICORN.items():
        note = "" if suffix != SERVE else f" (`make serve`'s settings: {_settings({**gunicorn, **SERVE_ENV})})"
        for c in (1, 16):
            target(f"req/s c{c} vs floor{note}", rps(f"ours{suffix}", c) / rps(f"floor{suffix}", c), 0.95)
            target(f"req/s c{c} vs seed_style{note}", rps(f"ours{suffix}", c) / rps("seed_style", c), 6)
            if "mlserver" in results:
                target(f"V1 req/s c{c} vs mlserver{note}", rps(f"ours{suffix}", c) / rps("mlserver", c), 1.5)
        target(f"p99 c16 vs floor{note}",
               _median(results[f"ours{suffix}"][16], "p99") / _median(results[f"floor{suffix}"][16], "p99"), 1.2, False)
    if "mlserver" in results:
        for c in (1, 16):
            target(f"OIP V2 req/s c{c} vs mlserver (ours-v2, identical body)", rps("ours-v2", c) / rps("mlserver", c),
                   3)
    target("cold start vs floor", statistics.median(ours["cold"]) / statistics.median(results["floor"]["cold"]),
           1.5, False)
    target("peak RSS of one worker, under load and after batches and explanations (MiB)",
           ours["rss_after_batches"], 128, False)
    target(f"{BATCH_ROWS:,}-row `instances` batch (rows/s)", _per_s(BATCH_ROWS, batch[BATCH_ROWS]), 500_000)
    target(f"OIP columnar {BATCH_ROWS:,}-row batch (rows/s, ours-v2)",
           _per_s(BATCH_ROWS, results["ours-v2"]["batch_10k"]), 1_000_000)
    explain = extra["explain"]
    target("single-row explanation over HTTP, p50 (ms)", explain if isinstance(explain, str) else explain["p50"],
           2, False)
    co2 = results["ours-co2"]
    for c in (1, 16):
        target(f"co2 req/s c{c} vs floor", rps("ours-co2", c) / rps("floor", c), 0.95)
    target("co2 p99 c16 vs floor", _median(co2[16], "p99") / _median(results["floor"][16], "p99"), 1.2, False)
    target(f"co2 {BATCH_ROWS:,}-row batch (rows/s)", _per_s(BATCH_ROWS, co2["batch_10k"]), 500_000)
    target("co2 peak RSS of one worker, under load and after batches (MiB)", co2["rss_after_batches"], 128, False)

    errors = {name: sum(r["errors"] for c in (1, 16) for r in results[name][c]) for name in names}
    non2xx = sum(errors.values())
    if non2xx:
        non2xx = f"{non2xx} ({', '.join(f'{n}: {e}' for n, e in errors.items() if e)})"
    batch_rows = "\n".join(
        f"| {n:,} | {batch[n] * 1e3:.2f} | {n / batch[n]:,.0f} |" if not isinstance(batch[n], str)
        else f"| {n:,} | error: {batch[n].replace('|', '/')[:200]} | |" for n in batch)
    other_batches = []
    for name, what in (("ours-v2", "OIP columns, one input per feature"), ("ours-co2", "`instances`, cars")):
        t = results[name]["batch_10k"]
        other_batches.append(f"| {name} | {what} | {BATCH_ROWS:,} | " + (
            f"{t * 1e3:.2f} | {BATCH_ROWS / t:,.0f} |" if not isinstance(t, str) else f"error: {t[:200]} | |"))
    explained = (f"p50 {explain['p50']:.2f} ms, p99 {explain['p99']:.2f} ms over {explain['count']} sequential "
                 "requests after 20 warm-up ones" if not isinstance(explain, str) else f"failed: {explain}")
    servers_table = "\n".join(f"| {n} | {about} | `POST {path}`, {asked} |"
                              for n, (about, path, asked) in extra["about"].items())
    breakdown = _breakdown_table(extra["breakdown"])
    versions = subprocess.run([str(FN_PYTHON), "-c",
                               "import functions_framework, xgboost, numpy, marshmallow, orjson; "
                               "from importlib.metadata import version as v; "
                               "print(', '.join(f'{p} {v(p)}' for p in ('functions-framework', 'xgboost-cpu', "
                               "'numpy', 'marshmallow', 'orjson', 'gunicorn')))"],
                              capture_output=True, text=True, check=False).stdout.strip()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
    return f"""# Benchmark results

Command: `make bench` (python -m bench.run --seconds {args.seconds} --rounds {args.rounds}), on
{platform.node() and 'this machine'}: {os.cpu_count()} cores, Python {platform.python_version()}, {wrk_version.strip()}.
Ours serves from the lean `.venv-function` ({versions}). Ours and floor run Functions Framework's gunicorn under
identical settings, twice, and both settings are judged: the production settings (README, Terraform defaults:
`ours`, `floor`, and `ours-v2` and `ours-co2` beside them) and `make serve`'s, read from the Makefile (`ours@serve`,
`floor@serve`). mlserver serves our own shipped penguin model and gets byte for byte the body `ours-v2` gets
(it loads the booster through XGBRegressor, so its `predict` is the three class probabilities). wrk: 1 thread
at c1, 2 threads at c16, {args.seconds} s per run, levels interleaved across servers, {args.rounds} rounds,
medians shown. Cold start: launch to the first correct answer, median of 3. Non-2xx responses during load:
{non2xx}.

| server | what runs, under which settings | asked |
|---|---|---|
{servers_table}

| server | cold start (s) | c1 req/s | c1 p50 / p99 (ms) | c16 req/s | c16 p50 / p99 (ms) | peak RSS (MiB) |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

| target | measured | goal | verdict |
|---|---|---|---|
{chr(10).join(checks)}

Peak RSS in the table is taken right after the wrk load (single predictions, the NumPy/Python predictor only);
the RSS targets take the worker's peak (VmHWM) again after the batches and explanations below: ours
{ours["rss_after_batches"]:.0f} MiB, ours-co2 {co2["rss_after_batches"]:.0f} MiB (and ours-v2, after its columnar
batches, {results["ours-v2"]["rss_after_batches"]:.0f} MiB). Batches over FAST_PREDICTOR_MAX_ROWS rows load
XGBoost (~60 MiB) and a 10,000-row request holds its JSON in memory.

Batch requests to ours (`POST /predict` with `instances`; one client connection, reopened when the server closes
it; end to end as the client sees it, validation included; median of 5-7 after 2 warm-up requests):

| rows | latency (ms) | rows/s |
|---|---|---|
{batch_rows}

The same measure for the other batch targets:

| server | body | rows | latency (ms) | rows/s |
|---|---|---|---|---|
{chr(10).join(other_batches)}

Single-row explanations (`POST {EXPLAIN_PATH}`, one instance, to `ours`, one client connection):
{explained}.

![latency against batch size](batch_latency.png)

## Where ours' cold start goes

Each stage in a fresh `.venv-function` process from function/ (no gunicorn, no HTTP: the app called with a
werkzeug request), median of 3, in `ours@serve`'s environment (local store) and in `ours`' (GCS emulator, whose
first model read also imports google-cloud-storage). The cold start over HTTP is taken again here, alternating
with those runs; the rest is what the in-process stages do not cover (measured apart, so on this shared machine
it carries their noise, a few tens of ms either way).

{breakdown}
"""


def plot(batch: dict) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    sizes = sorted(n for n in batch if not isinstance(batch[n], str))
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.loglog(sizes, [batch[n] * 1e3 for n in sizes], marker="o")
    for n in sizes:
        ax.annotate(f"{n / batch[n]:,.0f} rows/s", (n, batch[n] * 1e3), textcoords="offset points",
                    xytext=(5, -12), fontsize=8)
    ax.set_xlabel("rows per request")
    ax.set_ylabel("latency (ms, median)")
    ax.set_title("Penguin function: latency against batch size")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(REPO / "bench" / "batch_latency.png")


if __name__ == "__main__":
    sys.exit(main())
