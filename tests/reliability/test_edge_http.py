"""The HTTP edge over real sockets, against the function under gunicorn: oversized, truncated and broken
bodies, odd paths, and a log of one JSON entry per line whatever arrives.

Each case speaks raw HTTP/1.1 on a socket, so it can declare a length it never sends, cut a chunked body
off, or put a line feed in a path; what it checks is the answer (our JSON error, with its X-Request-Id),
how soon it came, the worker's peak memory, and the log entries the function wrote for it.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from testbed.servers import FunctionServer

SECTION = "edge"
HEAD = b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
MiB = 1024 * 1024
BIG = 300 * MiB
PROMPT_S = 2.0  # an answer that does not wait for the body (or its end) comes well within this


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The function with an empty store (its shipped models), 4 threads, as gunicorn runs it in production."""
    function = FunctionServer({"MODEL_STORE": str(tmp_path_factory.mktemp("empty") / "bucket"),
                               "MODELS": "penguins,co2", "DEFAULT_MODEL": "penguins"}, threads=4).start()
    yield function
    function.stop()


def exchange(port: int, data: bytes, *, then=None, shut: bool = False, timeout: float = 10.0) -> tuple[dict, float]:
    """Send `data` (then call `then(sock)` in a thread, or half-close), read one response: (response, seconds)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(timeout)
    started = time.perf_counter()
    sender = None
    try:
        sock.sendall(data)
        if then is not None:
            sender = threading.Thread(target=_ignore_broken_pipe, args=(then, sock), daemon=True)
            sender.start()
        if shut:
            sock.shutdown(socket.SHUT_WR)
        buf = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return {"status": None}, time.perf_counter() - started
            if not chunk:
                break
            buf += chunk
            head, sep, body = buf.partition(b"\r\n\r\n")
            if sep:
                headers = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:])
                if len(body) >= int(headers.get("Content-Length", 0)):
                    break
        elapsed = time.perf_counter() - started
    finally:
        sock.close()
        if sender is not None:
            sender.join(timeout=30)
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    return {"status": int(lines[0].split()[1]), "headers": headers, "body": json.loads(body) if body else None}, elapsed


def _ignore_broken_pipe(send, sock) -> None:
    try:
        send(sock)
    except OSError:  # the server answered and stopped reading: what it should do
        pass


def worker_pid(server: FunctionServer) -> int:
    return int(Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()[0])


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def entries_for(server: FunctionServer, request_id: str, wait_s: float = 3.0) -> list[dict]:
    """The function's log entries about one request (the flusher writes them within its interval)."""
    deadline = time.monotonic() + wait_s
    while True:
        found = [e for e in (json.loads(line) for line in server.log_lines() if line.startswith("{"))
                 if e.get("request_id") == request_id]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def assert_json_error(resp: dict, status: int) -> str:
    """Our error shape with its request id; returns the id."""
    assert resp["status"] == status, resp
    assert resp["headers"]["content-type"] == "application/json", resp
    error = resp["body"]["error"]
    assert set(error) == {"code", "status", "message", "details"} and error["code"] == status, resp
    return resp["headers"]["x-request-id"]


def test_a_declared_oversize_body_is_refused_before_a_byte_is_read(server, tally):
    """Content-Length over MAX_BODY_BYTES: 413 at once, the body never sent (Functions Framework's hook would
    wait for all of it), and with 9,000,000 declared and two bytes sent, no wait for the rest."""
    for declared, sent in ((BIG, b""), (9_000_000, b"{}")):
        resp, elapsed = exchange(server.port, HEAD + b"Content-Length: %d\r\n\r\n" % declared + sent, timeout=5)
        rid = assert_json_error(resp, 413)
        assert elapsed < PROMPT_S, elapsed
        assert "8388608 bytes" in resp["body"]["error"]["message"]
        assert [e["status"] for e in entries_for(server, rid)] == [413]
    tally.add(SECTION, "body over MAX_BODY_BYTES refused before it is read", 2, 2)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_300_mib_body_never_reaches_the_workers_memory(server, tally, framing):
    """The whole 300 MiB sent as fast as the server takes it: a 413, and the worker's peak memory barely moves."""
    pid = worker_pid(server)
    exchange(server.port, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")  # the model loaded, its memory counted
    before = peak_rss_mib(pid)
    block = b" " * MiB
    if framing == "chunked":
        head = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"

        def send(sock):
            for _ in range(BIG // MiB):
                sock.sendall(b"%x\r\n" % MiB + block + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
    else:
        head = HEAD + b"Content-Length: %d\r\n\r\n" % BIG

        def send(sock):
            for _ in range(BIG // MiB):
                sock.sendall(block)
    resp, _ = exchange(server.port, head, then=send, timeout=30)
    assert_json_error(resp, 413)
    grown = peak_rss_mib(pid) - before
    print(f"\n{framing} 300 MiB body: worker peak RSS {before:.0f} MiB before, grew {grown:.0f} MiB")
    assert grown < 64, grown  # the limit (8 MiB) and the server's read buffers, never the body
    tally.add(SECTION, f"300 MiB body ({framing}) kept out of memory", 1, 1)


CUT_BODIES = {
    "Content-Length 1000, 8 bytes, then the client closes": HEAD + b"Content-Length: 1000\r\n\r\n{\"a\": 1}",
    "chunked, bad chunk size": HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "chunked, cut off in a chunk": HEAD + b"Transfer-Encoding: chunked\r\n\r\n100\r\n{\"bill_length_mm\"",
    "chunked, no last chunk": HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",
}


@pytest.mark.parametrize("case", CUT_BODIES)
def test_a_truncated_or_broken_body_is_a_400_at_once_logged_once(server, tally, case):
    resp, elapsed = exchange(server.port, CUT_BODIES[case], shut=True)
    rid = assert_json_error(resp, 400)
    assert elapsed < PROMPT_S, elapsed
    entries = entries_for(server, rid)
    assert len(entries) == 1 and entries[0]["status"] == 400 and entries[0]["body_error"], entries
    tally.add(SECTION, "truncated or broken body: one 400, one log entry", 1, 1)


ODD_PATHS = ["/a%0ab", "/predict%0a", "/v1/models/penguins%0a:predict", "/v2/models/%0a/infer", "/%0d%0a",
             "/robots.txt", "/favicon.ico", "/a%0a/b", "/%00", "/%ff%fe"]


@pytest.mark.parametrize("path", ODD_PATHS)
def test_odd_paths_get_our_json_404_and_one_log_entry(server, tally, path):
    resp, _ = exchange(server.port, f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    assert resp["status"] == 404, resp
    assert resp["headers"]["content-type"] == "application/json", resp
    assert "error" in resp["body"], resp
    rid = resp["headers"]["x-request-id"]
    assert [e["status"] for e in entries_for(server, rid)] == [404]
    tally.add(SECTION, "odd paths: JSON 404 with a request id", 1, 1)


def test_every_line_the_function_logged_is_one_json_entry(server, tally):
    """After everything above (and hostile values numpy warns about), no raw traceback or warning text."""
    hostile = {"instances": [{"bill_length_mm": 1e308, "bill_depth_mm": -1e308, "flipper_length_mm": 5e-324,
                              "body_mass_g": 1e308, "island": "Dream"}]}
    for path in ("/predict", "/v1/models/penguins:explain", "/v2/models/penguins/infer"):
        body = json.dumps(hostile).encode()
        exchange(server.port, f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    time.sleep(0.5)  # the flusher's interval
    lines = [line for line in server.log_lines() if line.strip()]
    bad = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if not isinstance(entry, dict) or "severity" not in entry or "message" not in entry:
            bad.append(line)
    tally.add(SECTION, "log lines that are one JSON entry", len(lines), len(lines) - len(bad))
    assert not bad, bad[:20]
