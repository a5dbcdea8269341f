"""Request logs off the request path: buffered, flushed in the background, nothing lost at SIGTERM."""
from __future__ import annotations

import http.client
import itertools
import json
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from function.serving import logs
from function.serving.logs import LOG_ID, LocalSink, RequestLog, sink_path, whole_line_chunks
from shared.logline import PredictionRows
from tests.support.examples import SEED_EXAMPLES
from tests.support.http import post
from tests.support.logged import data_line, rows_of

T0 = datetime(2026, 3, 14, 10, 59, 59, 500000, tzinfo=UTC)


def prediction(n: int) -> dict:
    """A prediction payload as the app logs it, told apart by its body mass."""
    row = {**SEED_EXAMPLES[0][0], "body_mass_g": n}
    return {"severity": "INFO", "message": "POST /predict 200", "event": "prediction", "status": 200,
            "request_id": f"req{n}", "rows": 1, "prediction": "Adelie", **data_line(f"req{n}", [row], ["Adelie"])}


def first_mass(payload: dict) -> float:
    """The body mass of a logged payload's first row."""
    return rows_of(payload)[0]["instance"]["body_mass_g"]


def sink_lines(root: Path) -> list[bytes]:
    """Every line of every hour file under a sink root."""
    return [line for path in sorted(root.rglob("*.json")) for line in path.read_bytes().splitlines()]


def logged_masses(lines: list[bytes]) -> list[float]:
    """The body mass of each logged entry's first instance, in order."""
    return [first_mass(orjson.loads(line)["jsonPayload"]) for line in lines]


class Clock:
    """An injected clock for the sink: the time each emit sees."""

    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stdout(capfd):
    """Captured stdout, starting empty: lines other tests left queued are written and dropped first."""
    logs.flush()
    capfd.readouterr()
    return capfd


@pytest.fixture
def slow_flusher(monkeypatch):
    """A flusher of its own for the test, whose thread wakes only when a buffer is full."""
    monkeypatch.setattr(logs, "FLUSH_INTERVAL_S", 3600.0)
    flusher = logs._Flusher()
    monkeypatch.setattr(logs, "_flusher", flusher)
    yield flusher
    flusher.flush()


def test_entry_has_the_logentry_format_of_a_cloud_logging_sink(tmp_path):
    sink = LocalSink(tmp_path)
    payload = prediction(3750)
    sink.append(payload, "INFO", T0)
    logs.flush()
    [line] = sink_path(tmp_path, T0).read_bytes().splitlines(keepends=True)
    entry = orjson.loads(line)
    expected = {"insertId": entry["insertId"], "jsonPayload": payload,
                "logName": "projects/local/logs/" + LOG_ID.replace("/", "%2F"),
                "receiveTimestamp": T0.isoformat(),
                "resource": {"type": "cloud_run_revision", "labels": {"service_name": "function-local"}},
                "severity": "INFO", "timestamp": T0.isoformat()}
    assert line == orjson.dumps(expected) + b"\n"  # byte for byte what the sink wrote before
    assert len(entry["insertId"]) == 16 and int(entry["insertId"], 16) >= 0


def test_timestamps_read_as_datetime_isoformat_and_pick_their_hour_file(tmp_path):
    sink = LocalSink(tmp_path)
    top = datetime(2026, 3, 14, 11, tzinfo=UTC).timestamp()
    times = [top, top + 0.5, top + 1e-6, top - 4e-7, top - 6e-7, top + 2.5e-6, top + 3.5e-6, top - 1.25,
             1_700_000_000.123456, *(top - 3600 + k * 277.7777777 for k in range(30))]
    for when in times:
        sink.add(orjson.dumps(prediction(1), option=orjson.OPT_APPEND_NEWLINE), "INFO", when)
    logs.flush()
    stamps = []
    for path in tmp_path.rglob("*.json"):
        for line in path.read_bytes().splitlines():
            stamp = orjson.loads(line)["timestamp"]
            assert sink_path(tmp_path, datetime.fromisoformat(stamp)) == path
            stamps.append(stamp)
    assert sorted(stamps) == sorted(datetime.fromtimestamp(when, UTC).isoformat() for when in times)


def test_request_log_lines_land_in_their_hour_files_and_the_handle_rotates(tmp_path, stdout):
    clock = Clock(T0)
    sink = LocalSink(tmp_path, clock=clock)
    request_log = RequestLog(sink)
    request_log.emit(prediction(1))
    request_log.emit({"severity": "WARNING", "message": "POST /predict 400", "event": "request", "status": 400})
    logs.flush()
    assert sink.open_hours() == [int(T0.timestamp() // 3600)]
    clock.now = (T0 + timedelta(seconds=1)).timestamp()  # half a second into the next hour
    request_log.emit(prediction(2))
    clock.now = (T0 + timedelta(minutes=30)).timestamp()
    request_log.emit(prediction(3))
    logs.flush()
    eleven = T0 + timedelta(seconds=1)
    assert logged_masses(sink_path(tmp_path, T0).read_bytes().splitlines()) == [1]
    assert logged_masses(sink_path(tmp_path, eleven).read_bytes().splitlines()) == [2, 3]
    assert sink_path(tmp_path, eleven).name == "11:00:00_11:59:59_S0.json"
    assert sink.open_hours() == [int(eleven.timestamp() // 3600)]  # the 10 o'clock file was closed
    stamps = [orjson.loads(line)["timestamp"] for line in sink_lines(tmp_path)]
    assert stamps == [T0.isoformat(), eleven.isoformat(), (T0 + timedelta(minutes=30)).isoformat()]
    out = [json.loads(line) for line in stdout.readouterr().out.splitlines()]
    assert [entry["status"] for entry in out] == [200, 400, 200, 200]  # stdout has every request, in order


def test_many_threads_lose_nothing_and_lines_stay_whole(tmp_path, stdout):
    sink = LocalSink(tmp_path)
    request_log = RequestLog(sink)
    per_thread, threads = 400, 8

    def emit_many(t: int) -> None:
        for i in range(per_thread):
            request_log.emit(prediction(t * per_thread + i))

    workers = [threading.Thread(target=emit_many, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    logs.close()
    assert sink.open_hours() == []
    masses = logged_masses(sink_lines(tmp_path))
    assert sorted(masses) == list(range(per_thread * threads))
    for t in range(threads):  # each thread's lines in the order it emitted them
        mine = [m for m in masses if m // per_thread == t]
        assert mine == sorted(mine)
    out = [json.loads(line) for line in stdout.readouterr().out.splitlines()]
    assert sorted(first_mass(entry) for entry in out) == list(range(per_thread * threads))


def test_the_background_thread_flushes_after_a_short_interval(tmp_path):
    sink = LocalSink(tmp_path)
    RequestLog(sink).emit(prediction(7))
    deadline = time.monotonic() + 5
    while not sink_lines(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert logged_masses(sink_lines(tmp_path)) == [7]


def test_a_full_buffer_wakes_the_flusher(tmp_path, slow_flusher, monkeypatch):
    monkeypatch.setattr(logs, "FLUSH_BYTES", 4096)
    sink = LocalSink(tmp_path)
    request_log = RequestLog(sink)
    request_log.emit(prediction(1))
    time.sleep(0.3)
    assert sink_lines(tmp_path) == []  # under the size and long before the interval: still in memory
    for n in range(2, 12):
        request_log.emit(prediction(n))
    deadline = time.monotonic() + 5
    while len(sink_lines(tmp_path)) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert logged_masses(sink_lines(tmp_path))[:5] == [1, 2, 3, 4, 5]


def test_a_deleted_hour_file_is_started_again(tmp_path):
    sink = LocalSink(tmp_path)
    request_log = RequestLog(sink)
    request_log.emit(prediction(1))
    logs.flush()
    [path] = tmp_path.rglob("*.json")
    path.unlink()
    request_log.emit(prediction(2))
    logs.flush()
    assert logged_masses(sink_lines(tmp_path)) == [2]


def test_lines_after_close_open_the_file_again(tmp_path):
    sink = LocalSink(tmp_path)
    request_log = RequestLog(sink)
    request_log.emit(prediction(1))
    logs.close()
    request_log.emit(prediction(2))
    logs.flush()
    assert logged_masses(sink_lines(tmp_path)) == [1, 2]


def test_pipe_writes_hold_whole_lines_within_the_atomic_size():
    lines = [b"x" * n + b"\n" for n in (10, 3000, 1500, 5000, 1, 4095, 2000, 2000)]
    chunks = list(whole_line_chunks(lines, 4096))
    assert b"".join(chunks) == b"".join(lines)
    for chunk in chunks:
        assert chunk.endswith(b"\n")
        assert len(chunk) <= 4096 or chunk.count(b"\n") == 1  # only a single long line goes over
    assert list(whole_line_chunks(lines, 10**9)) == [b"".join(lines)]
    assert list(whole_line_chunks([], 4096)) == []


class Traffic:
    """Client threads on kept-alive connections, each request told apart by its body mass."""

    def __init__(self, port: int, threads: int) -> None:
        self.port = port
        self.numbers = itertools.count(10_000)
        self.answered: list[int] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def _loop(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop.is_set():
            n = next(self.numbers)
            body = json.dumps({**SEED_EXAMPLES[0][0], "body_mass_g": n})
            try:
                conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                answer = json.loads(resp.read())
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()
                try:  # the server may have closed a kept-alive connection: one new one, refused once stopping
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                    conn.connect()
                except OSError:
                    return
                continue
            if resp.status == 200 and answer.get("species"):
                self.answered.append(n)

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=15)


@pytest.mark.parametrize("flushing", ["default", "only-at-exit"])
def test_sigterm_in_the_middle_of_traffic_loses_no_answered_line(serve, published, flushing):
    env = {"MODEL_STORE": str(published.root), "LOG_TO_STORE": "1"}
    if flushing == "only-at-exit":  # nothing written before exit: the exit path alone must write it all
        env.update(LOG_FLUSH_INTERVAL_S="3600", LOG_FLUSH_BYTES=str(1 << 40))
    server = serve(env, workers=1, threads=8)
    assert post(server.url + "/predict", SEED_EXAMPLES[0][0])[0] == 200  # the model is loaded
    sink_root = published.root / "logs"
    with Traffic(server.port, threads=6) as traffic:
        time.sleep(1.0)
        if flushing == "only-at-exit":
            assert sink_lines(sink_root) == []
        server.proc.send_signal(signal.SIGTERM)
        sent_at = len(traffic.answered)
        assert server.proc.wait(timeout=40) == 0
    answered = set(traffic.answered)
    assert sent_at >= 20 and len(answered) == len(traffic.answered)

    masses = logged_masses(sink_lines(sink_root))
    assert len(masses) == len(set(masses))  # no line written twice
    assert not answered - set(masses), sorted(answered - set(masses))[:10]

    json_lines = [line for line in server.log_lines() if line.startswith("{")]
    stdout = [json.loads(line) for line in json_lines]  # every line whole: each one parses
    printed = [first_mass(e) for e in stdout if e.get("event") == "prediction"]
    assert len(printed) == len(set(printed))
    assert not answered - set(printed), sorted(answered - set(printed))[:10]


def test_every_row_of_a_large_batch_is_logged_in_entries_under_the_size_limit(tmp_path, stdout):
    rows = [{**SEED_EXAMPLES[0][0], "body_mass_g": i, "island": "x" * 60} for i in range(3_000)]
    payload = {"severity": "INFO", "message": "POST /predict 200", "event": "prediction", "status": 200,
               "request_id": "big", "model": "m", "model_version": "v", "rows": len(rows), "latency_ms": 1.0}
    log = RequestLog(LocalSink(tmp_path))
    log.emit(payload, PredictionRows("big", {"instances": rows}, ["Adelie"] * len(rows)),
             ("request_id", "model", "model_version"))
    logs.flush()
    lines = sink_lines(tmp_path)
    assert len(lines) > 1 and max(map(len, lines)) < logs.MAX_ENTRY_BYTES
    entries = [orjson.loads(line)["jsonPayload"] for line in lines]
    assert [e["event"] for e in entries] == ["prediction"] + [logs.CONTINUED] * (len(entries) - 1)
    assert "latency_ms" in entries[0] and all("latency_ms" not in e for e in entries[1:])  # counted once
    assert all(e["request_id"] == "big" and e["model_version"] == "v" for e in entries)
    logged = [(e["first_row"] + j, row) for e in entries for j, row in enumerate(rows_of(e))]
    assert [(i, row["instance"]["body_mass_g"]) for i, row in logged] == [(i, i) for i in range(len(rows))]
    assert all(row["id"] == f"big-{i}" and row["predicted"] == "Adelie" for i, row in logged)


def test_a_columnar_batch_is_logged_row_by_row_with_numpy_values(tmp_path, stdout):
    import numpy as np  # noqa: PLC0415

    log = RequestLog(LocalSink(tmp_path))
    values = np.array([1.5, np.nan, 3.0], dtype=np.float32)
    log.emit({"severity": "INFO", "message": "m", "event": "prediction"},
             PredictionRows("col", {"columns": {"x": values, "c": ["a", None, "b"]}}, ["p", "q", "r"]))
    logs.flush()
    (entry,) = [orjson.loads(line)["jsonPayload"] for line in sink_lines(tmp_path)]
    assert rows_of(entry) == [{"id": "col-0", "instance": {"x": 1.5, "c": "a"}, "predicted": "p"},
                              {"id": "col-1", "instance": {"x": None, "c": None}, "predicted": "q"},
                              {"id": "col-2", "instance": {"x": 3.0, "c": "b"}, "predicted": "r"}]
    assert entry["first_row"] == 0


# --------------------------------------------------------------------------- the sink's schema: one type per field

TRACE_ID, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
# Fields the app adds beside the routed ones, which Cloud Logging lifts out of jsonPayload into the LogEntry's own
# fields (so no sink table has a column of them), with the JSON type of each.
LIFTED = {"httpRequest": dict, "logging.googleapis.com/trace": str, "logging.googleapis.com/trace_sampled": bool,
          "logging.googleapis.com/spanId": str}


def _of_type(value: object, declared: str) -> bool:
    """Whether a payload value is what a BigQuery column of the declared type accepts without refusing the line."""
    if declared == "STRING":
        return isinstance(value, str)
    if declared == "FLOAT":  # a JSON number; a bool is no number to BigQuery
        return isinstance(value, int | float) and not isinstance(value, bool)
    if declared == "BOOLEAN":
        return isinstance(value, bool)
    assert declared == "STRING REPEATED", declared
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@pytest.fixture
def two_models(make_client, local_store, trained_bundle, co2_bundle):
    """The penguin classifier and the CO2 regressor served from a local store, request lines to its sink."""
    from tests.support.bundles import STABLE, publish  # noqa: PLC0415

    publish(local_store, trained_bundle, STABLE)
    publish(local_store, co2_bundle, STABLE, model="co2")
    client = make_client(MODEL_STORE=local_store.root, POINTER_TTL_S=60, LOG_TO_STORE=1)
    return client, local_store.root / "logs"


def test_every_routed_line_has_one_type_per_field_for_every_model(two_models, co2_bundle):
    """The "no schema conflict" guarantee: whatever the model, route or batch size, a routed line carries only
    the fields of ROUTED_FIELDS (and those Cloud Logging lifts out), each of its declared BigQuery type, and its
    rows as JSON text whose objects are named `<request_id>-<row>`."""
    from shared.logline import FEEDBACK, PREDICTION_EVENTS, ROUTED_FIELDS, SINK_EVENTS  # noqa: PLC0415
    from shared.spec import load_spec  # noqa: PLC0415
    from tests.function.test_v2 import _tensor_json  # noqa: PLC0415

    client, sink_root = two_models
    penguins = [row for row, _ in SEED_EXAMPLES]
    cars = [e["request"] for e in load_spec("co2").examples()]
    many_cars = (cars * (700 // len(cars) + 1))[:700]  # more than one entry's rows: continued entries
    traced = {"traceparent": f"00-{TRACE_ID}-{SPAN}-01"}
    requests = [  # (request id, path, body, rows, single): each model's single-row, batch and V2 paths
        ("penguins-one", "/predict", penguins[0], 1, True),
        ("penguins-batch", "/v1/models/penguins:predict", {"instances": penguins}, len(penguins), False),
        ("penguins-v2", "/v2/models/penguins/infer", {"inputs": [
            {"name": k, "datatype": "BYTES" if isinstance(v, str) else "FP64", "shape": [1], "data": [v]}
            for k, v in penguins[1].items()]}, 1, False),
        ("co2-one", "/v1/models/co2:predict", cars[0], 1, True),
        ("co2-batch", "/v1/models/co2:predict", {"instances": many_cars}, len(many_cars), False),
        ("co2-v2", "/v2/models/co2/infer", {"inputs": [_tensor_json(co2_bundle.contract, cars)]}, len(cars), False),
    ]
    for request_id, path, body, _, _ in requests:
        resp = client.post(path, json=body, headers={**traced, "X-Request-Id": request_id})
        assert resp.status_code == 200, (path, resp.get_json())
    feedback = [
        ("penguins-truth", {"id": "penguins-batch-1", "truth": "chinstrap"}),
        ("co2-truth", {"model": "co2", "instances": [{"id": f"co2-batch-{i}", "truth": 200 + i} for i in range(3)]}),
    ]
    for request_id, body in feedback:
        resp = client.post("/feedback", json=body, headers={"X-Request-Id": request_id})
        assert resp.status_code == 202, resp.get_json()
    logs.flush()

    entries = [orjson.loads(line)["jsonPayload"] for line in sink_lines(sink_root)]
    assert {e["event"] for e in entries} == SINK_EVENTS  # every routed event is seen, and nothing else
    rows_by_request: dict[str, list[tuple[int, dict]]] = {}
    for entry in entries:
        extra = set(entry) - set(ROUTED_FIELDS)
        assert extra <= set(LIFTED), (entry["request_id"], extra)
        for name in extra:
            assert isinstance(entry[name], LIFTED[name]), (name, entry[name])
        for name in set(entry) & set(ROUTED_FIELDS):
            assert _of_type(entry[name], ROUTED_FIELDS[name]), (entry["request_id"], name, entry[name])
        logged = rows_of(entry)
        assert logged and isinstance(entry["first_row"], int)
        if entry["event"] == FEEDBACK:
            assert entry["first_row"] == 0 and len(logged) == entry["rows"]
        rows_by_request.setdefault(entry["request_id"], []).extend(
            (entry["first_row"] + j, row) for j, row in enumerate(logged))
    assert set(rows_by_request) == {r[0] for r in requests} | {rid for rid, _ in feedback}

    firsts = {e["request_id"]: e for e in entries if e["event"] != "prediction_rows"}
    assert {e["request_id"] for e in entries if e["event"] == "prediction_rows"} == {"co2-batch"}
    assert firsts["penguins-one"]["logging.googleapis.com/trace"].endswith(TRACE_ID)
    assert firsts["penguins-one"]["logging.googleapis.com/spanId"] == SPAN
    assert firsts["penguins-one"]["logging.googleapis.com/trace_sampled"] is True
    for request_id, _, _, sent, single in requests:
        first, logged = firsts[request_id], rows_by_request[request_id]
        assert first["event"] in PREDICTION_EVENTS and first["rows"] == sent == len(logged)
        assert [i for i, _ in logged] == list(range(sent))
        assert [row["id"] for _, row in logged] == [f"{request_id}-{i}" for i in range(sent)]
        assert first["prediction"] == (str(logged[0][1]["predicted"]) if single else "batch")
        for _, row in logged:
            assert isinstance(row["instance"], dict) and row["instance"]
            if request_id.startswith("penguins"):
                assert set(row) == {"id", "instance", "predicted", "probabilities", "probability"}
                labels = first["labels"]
                assert row["predicted"] in labels and len(row["probabilities"]) == len(labels)
                assert all(map(_number, row["probabilities"]))
                assert row["probability"] == row["probabilities"][labels.index(row["predicted"])]
            else:
                assert set(row) == {"id", "instance", "predicted", "interval", "extrapolation"}
                assert _number(row["predicted"]) and isinstance(row["extrapolation"], bool)
                lower, upper = row["interval"]
                assert _number(lower) and _number(upper) and lower <= row["predicted"] <= upper
    assert [row for _, row in rows_by_request["penguins-truth"]] == [{"id": "penguins-batch-1", "truth": "Chinstrap"}]
    assert [row for _, row in rows_by_request["co2-truth"]] == [
        {"id": f"co2-batch-{i}", "truth": 200.0 + i} for i in range(3)]


def test_an_explained_prediction_line_carries_only_routed_fields(two_models):
    from shared.logline import ROUTED_FIELDS  # noqa: PLC0415

    client, sink_root = two_models
    for path, body in (("/v1/models/penguins:explain", {"instances": [SEED_EXAMPLES[0][0]]}),
                       ("/v1/models/penguins:predict", {"instances": [SEED_EXAMPLES[0][0]],
                                                        "parameters": {"explain": True}})):
        assert client.post(path, json=body).status_code == 200
    logs.flush()
    entries = [orjson.loads(line)["jsonPayload"] for line in sink_lines(sink_root)]
    assert len(entries) == 2
    for entry in entries:
        assert set(entry) - set(ROUTED_FIELDS) <= set(LIFTED), sorted(set(entry) - set(ROUTED_FIELDS))
        assert all(_of_type(entry[k], ROUTED_FIELDS[k]) for k in set(entry) & set(ROUTED_FIELDS))
