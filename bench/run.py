"""Side-by-side benchmark: our function against the peers in ../shared/peers, in one run, on 127.0.0.1.

Usage: python -m bench.run [--seconds 5] [--rounds 3] [--skip-mlserver]   (or `make bench`)

Prints one table (requests/s and p50/p99 at concurrency 1 and 16 with wrk, cold start, peak RSS,
batch rows/s) with our ratio against each peer and PASS/FAIL per target, and writes bench/RESULTS.md
and bench/batch_latency.png. Load levels are interleaved across servers and repeated; medians are
reported, because this shared machine's speed drifts by tens of percent within a minute.
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
from dataclasses import dataclass, field
from pathlib import Path

from shared.spec import load_spec
from testbed.servers import GcsEmulator, free_port

REPO = Path(__file__).resolve().parent.parent
PEERS = (REPO.parent / "shared" / "peers").resolve()
OUT = REPO / "bench" / "out"

# the peers serve the penguin model: every server gets the same penguin rows
EXAMPLES = [e["request"] for e in load_spec("penguins").examples()]
PENGUIN = {**EXAMPLES[0]}
# our CO2 regressor, measured the same way at the production settings (its own V1 route, one row per request)
CO2 = load_spec("co2")
CARS = [e["request"] for e in CO2.examples()]
CO2_PATH = "/v1/models/co2:predict"
# Ours and floor always run under identical gunicorn settings, at two of them: the production settings we
# deploy with (README "Production settings", terraform/variables.tf), which the targets judge, and the
# Functions Framework's defaults for one instance, for reference.
GUNICORN = {"": {"WORKERS": "1", "THREADS": "1"}, "@1x8": {"WORKERS": "1", "THREADS": "8"}}
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
    env: dict = field(default_factory=dict)
    cwd: Path = REPO
    before_start: callable = None  # called with the chosen port, for servers configured by file
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
        started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=self.cwd, env={**os.environ, **self.env},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        data = json.dumps(self.body).encode()
        deadline = started + 60
        while time.perf_counter() < deadline:
            try:
                req = urllib.request.Request(self.url, data=data, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=5) as resp:
                    if resp.status == 200 and self.ok(json.loads(resp.read())):
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.005)
        raise RuntimeError(f"{self.name} never answered correctly")

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


def prepare_peers() -> Path:
    """Train the peers' model with ../shared/peers/train.py (once) and lay out mlserver's folder."""
    work = OUT / "peers"
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "model.json").exists():
        subprocess.run([str(REPO / ".venv-peers" / "bin" / "python"), str(PEERS / "train.py")], cwd=work,
                       check=True, capture_output=True)
    ml = OUT / "mlserver"
    ml.mkdir(exist_ok=True)
    shutil.copy(work / "model.json", ml / "model.json")
    shutil.copy(PEERS / "mlserver" / "model-settings.json", ml / "model-settings.json")
    return work


def ff_server(name: str, source: Path, env: dict) -> Server:
    """A Functions Framework function (ours or floor) under gunicorn, from the lean `.venv-function`."""
    cmd = [str(REPO / ".venv-function" / "bin" / "functions-framework"), "--source", str(source),
           "--target", "predict", "--host", "127.0.0.1", "--port", "{port}"]
    return Server(name, cmd, "/predict", PENGUIN, _lua(name, "/predict", PENGUIN),
                  lambda b: b.get("species") == "Adelie", env=env)


def servers(store_uri: str, emulator_url: str, peers_dir: Path, with_mlserver: bool) -> list[Server]:
    """Our function (lean venv, model from the GCS emulator) and every peer."""
    v2 = {"inputs": [{"name": "input-0", "shape": [1, 10], "datatype": "FP32",
                      "data": [39.1, 18.7, 181, 3750, 2007, 0, 1, 0, 0, 1]}]}
    result = []
    for suffix, gunicorn in GUNICORN.items():
        result += [
            ff_server(f"ours{suffix}", REPO / "function" / "main.py",
                      {**gunicorn, "MODEL_STORE": store_uri, "STORAGE_EMULATOR_HOST": emulator_url}),
            ff_server(f"floor{suffix}", PEERS / "floor" / "main.py", gunicorn),
        ]
    prod = next(iter(GUNICORN.values()))
    result.append(Server("ours-co2", ff_server("", REPO / "function" / "main.py", {}).cmd, CO2_PATH,
                         {"instances": [CARS[0]]}, _lua("ours-co2", CO2_PATH, {"instances": [CARS[0]]}),
                         lambda b: CO2.target.name in b["predictions"][0],
                         env={**prod, "MODEL_STORE": store_uri, "STORAGE_EMULATOR_HOST": emulator_url}))
    result += [
        Server("seed_style", [str(REPO / ".venv-peers" / "bin" / "uvicorn"), "--app-dir", str(PEERS / "seed_style"),
                              "app:app", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning"],
               "/predict", PENGUIN, _lua("seed_style", "/predict", PENGUIN),
               lambda b: b.get("prediction") == "Adelie", cwd=peers_dir),
    ]
    if with_mlserver:
        def write_settings(port: int) -> None:  # mlserver takes its ports from settings.json
            settings = json.loads((PEERS / "mlserver" / "settings.json").read_text())
            settings.update(http_port=port, grpc_port=free_port(), metrics_port=free_port())
            (OUT / "mlserver" / "settings.json").write_text(json.dumps(settings))

        result.append(Server("mlserver", [str(REPO / ".venv-mlserver" / "bin" / "mlserver"), "start", "."],
                             "/v2/models/penguins/infer", v2, _lua("mlserver", "/v2/models/penguins/infer", v2),
                             lambda b: bool(b.get("outputs")), cwd=OUT / "mlserver", before_start=write_settings))
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


def batch_latency(url: str, rows: int, repeats: int, path: str = "/predict", examples: list[dict] = EXAMPLES) -> float:
    """Median seconds for one request of `rows` rows (validation included), on a kept-alive connection."""
    instances = [examples[i % len(examples)] for i in range(rows)]
    body = json.dumps({"instances": instances}).encode()
    host, port = url.split("//")[1].split("/", maxsplit=1)[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    times = []
    for i in range(repeats + 2):
        started = time.perf_counter()
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        payload = resp.read()
        elapsed = time.perf_counter() - started  # the client's own JSON parsing is not the server's time
        assert resp.status == 200 and len(json.loads(payload)["predictions"]) == rows
        if i >= 2:  # the first two warm up (XGBoost loads lazily for large batches)
            times.append(elapsed)
    conn.close()
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "5")))
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    p.add_argument("--skip-mlserver", action="store_true")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    from retrain_job.publish import copy_stable  # noqa: PLC0415
    from shared.store import GcsStore, LocalStore  # noqa: PLC0415

    emulator = GcsEmulator().start()
    os.environ["STORAGE_EMULATOR_HOST"] = emulator.url
    emulator.create_bucket("bench")
    for name in ("penguins", "co2"):
        copy_stable(LocalStore(REPO / "function" / "shipped_model"), GcsStore("gs://bench"), name)
    peers_dir = prepare_peers()
    fleet = servers("gs://bench", emulator.url, peers_dir, not args.skip_mlserver)
    results: dict[str, dict] = {s.name: {"cold": [], 1: [], 16: []} for s in fleet}
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
        ours = next(s for s in fleet if s.name == "ours")
        sizes = (1, 100, 1000, 10_000)
        batch = {n: batch_latency(ours.url, n, 7 if n < 10_000 else 5) for n in sizes}
        results["ours"]["rss_after_batches"] = ours.rss()[1]
        co2 = next(s for s in fleet if s.name == "ours-co2")
        results["ours-co2"]["batch_10k"] = batch_latency(co2.url, 10_000, 5, CO2_PATH, CARS)
        results["ours-co2"]["rss_after_batches"] = co2.rss()[1]
    finally:
        for s in fleet:
            s.stop()
        emulator.stop()
    report = summarise(results, batch, args)
    print(report)
    (REPO / "bench" / "RESULTS.md").write_text(report)
    plot(batch)
    return 0


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def summarise(results: dict, batch: dict, args: argparse.Namespace) -> str:
    """The markdown table, ratios and verdicts."""
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

    def target(label: str, value: float, limit: float, higher_is_better: bool = True) -> None:
        ok = value >= limit if higher_is_better else value <= limit
        checks.append(f"| {label} | {value:.2f} | {'>=' if higher_is_better else '<='} {limit:g} | "
                      f"{'PASS' if ok else 'FAIL'} |")

    for suffix in GUNICORN:  # the first settings are the production ones; the others are for reference
        note = "" if suffix == next(iter(GUNICORN)) else f" (ours and floor {suffix[1:]}, reference)"
        for c in (1, 16):
            ours_rps = _median(results[f"ours{suffix}"][c], "rps")
            target(f"req/s c{c} vs floor{note}", ours_rps / _median(results[f"floor{suffix}"][c], "rps"), 0.85)
            target(f"req/s c{c} vs seed_style{note}", ours_rps / _median(results["seed_style"][c], "rps"), 6)
            if "mlserver" in results:
                target(f"req/s c{c} vs mlserver{note}", ours_rps / _median(results["mlserver"][c], "rps"), 1.5)
        target(f"p99 c16 vs floor{note}",
               _median(results[f"ours{suffix}"][16], "p99") / _median(results[f"floor{suffix}"][16], "p99"), 1.5, False)
    target("cold start vs floor", statistics.median(ours["cold"]) / statistics.median(results["floor"]["cold"]),
           3, False)
    target("peak RSS of one worker under load (MiB)", ours["rss_worker"], 128, False)
    target("10,000-row batch (rows/s)", 10_000 / batch[10_000], 200_000)
    co2 = results["ours-co2"]
    for c in (1, 16):
        target(f"co2 req/s c{c} vs floor", _median(co2[c], "rps") / _median(results["floor"][c], "rps"), 0.85)
    target("co2 p99 c16 vs floor", _median(co2[16], "p99") / _median(results["floor"][16], "p99"), 1.5, False)
    target("co2 10,000-row batch (rows/s)", 10_000 / co2["batch_10k"], 200_000)
    target("co2 peak RSS of one worker after batches (MiB)", co2["rss_after_batches"], 128, False)
    errors = sum(r["errors"] for name in names for c in (1, 16) for r in results[name][c])
    batch_rows = "\n".join(f"| {n:,} | {batch[n] * 1e3:.2f} | {n / batch[n]:,.0f} |" for n in batch)
    versions = subprocess.run([str(REPO / ".venv-function" / "bin" / "python"), "-c",
                               "import functions_framework, xgboost, numpy, marshmallow, orjson; "
                               "from importlib.metadata import version as v; "
                               "print(', '.join(f'{p} {v(p)}' for p in ('functions-framework', 'xgboost-cpu', "
                               "'numpy', 'marshmallow', 'orjson', 'gunicorn')))"],
                              capture_output=True, text=True, check=False).stdout.strip()
    settings = "; ".join(f"`ours{suffix}` and `floor{suffix}` WORKERS={g['WORKERS']} THREADS={g['THREADS']}"
                         for suffix, g in GUNICORN.items())
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
    return f"""# Benchmark results

Command: `make bench` (python -m bench.run --seconds {args.seconds} --rounds {args.rounds}), on
{platform.node() and 'this machine'}: {os.cpu_count()} cores, Python {platform.python_version()}, {wrk_version.strip()}.
Ours and floor: Functions Framework's gunicorn under identical settings: {settings}. The first pair runs the
production settings (README, Terraform defaults) that the targets judge; the second Functions Framework's defaults,
for reference. Ours serves from the lean `.venv-function` ({versions}) and reads its model
from the GCS emulator. seed_style: uvicorn, one worker. mlserver: 1.7.1 with its XGBoost runtime, default settings.
wrk: 1 thread at c1, 2 threads at c16, {args.seconds} s per run, levels interleaved
across servers, {args.rounds} rounds, medians shown. Non-2xx responses during load: {errors}.

| server | cold start (s) | c1 req/s | c1 p50 / p99 (ms) | c16 req/s | c16 p50 / p99 (ms) | peak RSS (MiB) |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

| target | measured | goal | verdict |
|---|---|---|---|
{chr(10).join(checks)}

Peak RSS above is taken right after the wrk load (single predictions, the NumPy/Python predictor only).
After the batch runs below, ours peaks at {ours["rss_after_batches"]:.0f} MiB in its worker: batches over
FAST_PREDICTOR_MAX_ROWS rows load XGBoost (~60 MiB) and a 10,000-row request holds its JSON in memory.

Batch requests to ours (one kept-alive connection, validation included, median of 5-7):

| rows | latency (ms) | rows/s |
|---|---|---|
{batch_rows}

![latency against batch size](batch_latency.png)
"""


def plot(batch: dict) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    sizes = sorted(batch)
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
