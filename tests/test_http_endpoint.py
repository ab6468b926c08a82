"""The daemon's HTTP endpoint under hostile clients, over real sockets against a real daemon:
malformed and oversized requests answer 4xx without a traceback, slow clients neither hold
threads nor starve /healthz, a token guards everything but readiness, TLS serves with a real
certificate, and `config check` refuses a wide listen address without them."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netanomd.cli import main
from netanomd.daemon.httpserver import (
    BadRequest,
    HttpServer,
    Limits,
    Request,
    Response,
    parse_head,
)
from netanomd.daemon.service import Daemon
from netanomd.data import demo_model
from netanomd.sdnotify import Notifier
from tests.conftest import free_port
from tests.test_daemon import tsv_header, tsv_rows, write_config
from tests.waiting import wait

TOKEN = "s3cr3t-token-9f2c"
FLOW = {
    "uid": "Chttp1",
    "id.orig_h": "192.168.1.115",
    "id.orig_p": 60072,
    "id.resp_h": "41.108.179.197",
    "id.resp_p": 1177,
    "proto": "tcp",
    "conn_state": "S0",
    "history": "S",
    "orig_pkts": 1,
    "orig_ip_bytes": 48,
    "resp_pkts": 0,
    "resp_ip_bytes": 0,
    "duration": 0.0,
}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.npz"
    demo_model().save(path)
    return path


def start_daemon(tmp: Path, model: Path, **metrics: Any) -> Daemon:
    log = tmp / "conn.log"
    log.write_bytes(tsv_header() + b"".join(tsv_rows()[:50]))
    listen = {"listen": f"127.0.0.1:{free_port()}"}
    cfg = write_config(
        tmp,
        model,
        [{"type": "zeek_log", "path": str(log), "from_start": True}],
        sinks={
            "sqlite": {"path": str(tmp / "alerts.db")},
            "metrics": listen | metrics,
            "zeek_notice": {"enabled": False},
        },
    )
    d = Daemon(str(cfg), notifier=Notifier(env={}))
    d.start()
    wait(lambda: d.health()["ready"], 30, "daemon ready")
    return d


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("http")
    token = tmp / "token"
    token.write_text(TOKEN + "\n")
    d = start_daemon(
        tmp,
        model_path,
        token_file=str(token),
        request_timeout=2.0,
        max_connections=64,
        max_body_bytes=300_000,
        max_rows=100,
    )
    yield d
    d.shutdown()


def raw(port: int, data: bytes, timeout: float = 10.0) -> tuple[int, Any]:
    """Send bytes as they are; the status and JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def get(port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as err:
        return int(err.code), bytes(err.read())


def post(port: int, body: bytes, length: str | None) -> bytes:
    head = f"POST /v1/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    return head.encode() + b"\r\n" + body


def http_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "netanomd.daemon.httpserver"]


@pytest.mark.parametrize(
    ("length", "error"),
    [
        ("abc", "Content-Length 'abc' is not a number"),
        ("-5", "Content-Length '-5' is not a number"),
        (None, "Content-Length is missing"),
        ("1e3", "Content-Length '1e3' is not a number"),
    ],
)
def test_bad_content_length_answers_400_without_traceback(
    daemon: Daemon, caplog: pytest.LogCaptureFixture, length: str | None, error: str
) -> None:
    assert daemon.server is not None
    status, body = raw(daemon.server.port, post(daemon.server.port, b"[]", length))
    assert (status, body["error"]) == (400, error)
    assert not any(r.exc_info for r in caplog.records)


def test_deep_json_answers_400(daemon: Daemon, caplog: pytest.LogCaptureFixture) -> None:
    assert daemon.server is not None
    port = daemon.server.port
    deep = b"[" * 100_000 + b"]" * 100_000
    status, body = raw(port, post(port, deep, str(len(deep))))
    assert (status, body["error"]) == (400, "JSON nested too deeply")
    assert not any(r.exc_info for r in caplog.records)
    status, _ = get(port, "/healthz")
    assert status == 200


def test_body_and_row_caps(daemon: Daemon) -> None:
    assert daemon.server is not None
    port = daemon.server.port
    status, body = raw(port, post(port, b"", "300001"))
    assert status == 413 and "over the limit of 300000" in body["error"]
    big = json.dumps([FLOW] * 2000).encode()  # sent whole: the answer still arrives
    status, body = raw(port, post(port, big, str(len(big))))
    assert status == 413 and f"body of {len(big)} bytes" in body["error"]
    rows = json.dumps([FLOW] * 101).encode()
    status, body = raw(port, post(port, rows, str(len(rows))))
    assert (status, body["error"]) == (400, "101 flows in one request; at most 100")
    rows = json.dumps([FLOW] * 100).encode()
    status, body = raw(port, post(port, rows, str(len(rows))))
    assert status == 200 and len(body) == 100
    status, body = raw(port, post(port, b"{not json", "9"))
    assert status == 400 and "Expecting property name" in body["error"]
    status, body = raw(port, post(port, b"\xff\xfe", "2"))
    assert status == 400
    status, body = raw(port, b"BREW /v1/score\r\n\r\n")
    assert status == 400 and "malformed request line" in body["error"]
    chunked = f"POST /v1/score HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n"
    status, body = raw(
        port, chunked.encode() + b"Transfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n"
    )
    assert status == 400 and "Transfer-Encoding" in body["error"]


def test_token_guards_everything_but_readiness(daemon: Daemon) -> None:
    assert daemon.server is not None and daemon.pipeline is not None
    port = daemon.server.port
    status, body = get(port, "/healthz")
    assert status == 200 and json.loads(body) == {"ready": True}
    status, body = get(port, "/healthz", TOKEN)
    assert status == 200 and json.loads(body)["model"] == daemon.pipeline.model.model_id
    for token in (None, "wrong", TOKEN + "x", TOKEN[:-1]):
        assert get(port, "/metrics", token)[0] == 401
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics?name[]=x", timeout=10)
        assert err.value.headers["WWW-Authenticate"] == 'Bearer realm="netanomd"'
        status, _ = raw(port, post(port, b"[]", "2").replace(TOKEN.encode(), b"nope"))
        assert status == 401
    status, body = get(port, "/metrics?name[]=netanomd_flows_scored_total", TOKEN)
    assert status == 200 and b"netanomd_flows_scored_total" in body
    assert b'netanomd_http_rejected_total{reason="unauthorized"}' in body
    assert TOKEN.encode() not in body
    assert get(port, "/nowhere", TOKEN)[0] == 404


def test_slow_clients_hold_no_threads_and_do_not_starve_health(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    """400 clients each send one byte of a 1,000-byte body and hang: the daemon's thread
    count does not move, /healthz answers at once while they hang, and they are cut off
    after the request timeout (2 s here); the journal gets a few lines, not 400."""
    assert daemon.server is not None
    port = daemon.server.port
    threads_before = threading.active_count()
    slow = []
    head = post(port, b"", "1000")
    for _ in range(400):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(head + b"[")
        slow.append(s)
    try:
        time.sleep(0.3)
        assert threading.active_count() <= threads_before + 2
        for _ in range(5):
            t0 = time.monotonic()
            status, body = get(port, "/healthz", TOKEN)
            assert status == 200 and json.loads(body)["ready"]
            assert time.monotonic() - t0 < 1.0
        assert daemon.server.http.connections <= 64
        # Everyone still connected is cut off within the timeout (408 or closed when evicted).
        t0 = time.monotonic()
        for s in slow:
            s.settimeout(5)
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
        assert time.monotonic() - t0 < 4.0
    finally:
        for s in slow:
            s.close()
    rejected = daemon.server.http.rejected
    assert rejected.get("evicted", 0) >= 400 - 64 and rejected.get("timeout", 0) >= 1
    lines = [r for r in http_warnings(caplog) if "evicted" in r.getMessage()]
    assert 0 < len(lines) <= 1  # once per kind per minute
    assert not any(r.exc_info for r in caplog.records)


def test_busy_slots_refuse_new_connections_quickly() -> None:
    """Every slot answering a request: a new connection gets 503 at once, not a queue."""
    release = threading.Event()

    def handle(request: Request) -> Response:
        release.wait(10)
        return Response(200, b"{}")

    server = HttpServer("127.0.0.1", 0, handle, Limits(max_connections=2, workers=2))
    server.start()
    try:
        busy = []
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", server.port))
            s.sendall(b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            busy.append(s)
        wait(lambda: server.connections == 2, 5, "two requests in progress")
        time.sleep(0.1)
        t0 = time.monotonic()
        status, body = raw(server.port, b"GET /x HTTP/1.1\r\n\r\n")
        assert status == 503 and "too many connections" in body["error"]
        assert time.monotonic() - t0 < 0.5
        release.set()
        for s in busy:
            assert s.recv(100).startswith(b"HTTP/1.1 200 OK")
            s.close()
    finally:
        release.set()
        server.stop()


def test_handler_bug_answers_500_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    def handle(request: Request) -> Response:
        raise KeyError("boom")

    server = HttpServer("127.0.0.1", 0, handle)
    server.start()
    try:
        for _ in range(20):
            assert raw(server.port, b"GET /x HTTP/1.1\r\n\r\n")[0] == 500
    finally:
        server.stop()
    assert server.rejected == {"internal_error": 20}
    assert len(http_warnings(caplog)) == 1 and http_warnings(caplog)[0].exc_info


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_with_token(tmp_path: Path, model_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    token = tmp_path / "token"
    token.write_text(TOKEN)
    d = start_daemon(
        tmp_path,
        model_path,
        token_file=str(token),
        tls_cert=str(cert),
        tls_key=str(key),
        request_timeout=1.0,
    )
    try:
        assert d.server is not None
        url = f"https://127.0.0.1:{d.server.port}"
        ctx = ssl.create_default_context(cafile=str(cert))
        req = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            assert b"netanomd_flows_scored_total" in r.read()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + "/metrics", context=ctx, timeout=10)
        assert err.value.code == 401
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(url + "/healthz", timeout=10)  # system CAs: unknown issuer
        # Plain HTTP to the TLS port gets no answer, and a stalled handshake is cut off.
        with socket.create_connection(("127.0.0.1", d.server.port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            assert b"ready" not in s.recv(4096)
        with socket.create_connection(("127.0.0.1", d.server.port), timeout=10) as s:
            t0 = time.monotonic()
            assert s.recv(10) == b"" and time.monotonic() - t0 < 3
    finally:
        d.shutdown()


def test_bad_token_and_tls_files_fail_the_start(
    tmp_path: Path, model_path: Path, certificate: tuple[Path, Path]
) -> None:
    from netanomd.errors import ConfigError

    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match=r"token_file: .*empty must hold one token"):
        start_daemon(tmp_path, model_path, token_file=str(empty))
    with pytest.raises(ConfigError, match=r"token_file: cannot read .*missing"):
        start_daemon(tmp_path, model_path, token_file=str(tmp_path / "missing"))
    cert, _ = certificate
    with pytest.raises(ConfigError, match=r"tls_cert/tls_key: cannot load"):
        start_daemon(tmp_path, model_path, tls_cert=str(cert), tls_key=str(cert))


def config_check(*sets: str) -> tuple[int, str]:
    """``netanomd config check`` with these settings: (exit status, stderr)."""
    args = ["config", "check", "--offline"]  # the values, not this machine
    for s in sets:
        args += ["--set", s]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    return code, err.getvalue()


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]", "192.0.2.7", "sensor.example.org"])
def test_config_check_refuses_wide_listen_without_token_and_tls(host: str) -> None:
    wide = f"sinks.metrics.listen={host}:9750"
    code, err = config_check(wide)
    assert code == 2
    assert "reachable from other hosts, so it needs token_file, tls_cert, tls_key" in err
    code, err = config_check(wide, "sinks.metrics.token_file=/etc/netanomd/token")
    assert code == 2 and "needs tls_cert, tls_key" in err
    code, err = config_check(
        wide,
        "sinks.metrics.token_file=/etc/netanomd/token",
        "sinks.metrics.tls_cert=/etc/netanomd/cert.pem",
        "sinks.metrics.tls_key=/etc/netanomd/key.pem",
    )
    assert code == 0, err
    code, err = config_check(wide, "sinks.metrics.enabled=false")
    assert code == 0, err


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "[::1]", "localhost"])
def test_config_check_accepts_loopback_without_token(host: str) -> None:
    code, err = config_check(f"sinks.metrics.listen={host}:9750")
    assert code == 0, err
    code, err = config_check(f"sinks.metrics.listen={host}:9750", "sinks.metrics.tls_key=/k.pem")
    assert code == 2 and "tls_key: given without tls_cert" in err


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8")))
def test_any_request_head_parses_or_is_a_bad_request(head: bytes) -> None:
    """Whatever a client sends as a head: parsed, or refused with a 4xx that says why."""
    try:
        method, path, headers = parse_head(head + b"\r\n\r\n")
    except BadRequest as exc:
        assert 400 <= exc.status < 500 and str(exc)
    else:
        assert " " not in method + path and all(k == k.lower() for k in headers)


def test_out_of_file_descriptors_is_counted_not_printed(tmp_path: Path) -> None:
    """accept() failing with EMFILE (asyncio's own error) goes to the package log, counted
    and rate-limited, and the server answers again once descriptors are free."""
    script = tmp_path / "emfile.py"
    script.write_text(
        "import logging, resource, socket, sys, time\n"
        "from netanomd.daemon.httpserver import HttpServer, Response\n"
        "logging.basicConfig(level=logging.WARNING, format='%(name)s: %(message)s')\n"
        "server = HttpServer('127.0.0.1', 0, lambda r: Response(200, b'{}'))\n"
        "server.start()\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
        "held = []\n"
        "try:\n"
        "    while True:\n"
        "        held.append(socket.create_connection(('127.0.0.1', server.port)))\n"
        "except OSError:\n"
        "    pass\n"
        "time.sleep(1.5)\n"
        "for s in held:\n"
        "    s.close()\n"
        "time.sleep(1.5)\n"
        "with socket.create_connection(('127.0.0.1', server.port), timeout=5) as s:\n"
        "    s.sendall(b'GET / HTTP/1.1\\r\\n\\r\\n')\n"
        "    print(s.recv(100).split(b'\\r\\n')[0].decode())\n"
        "print(server.rejected.get('loop_error', 0) > 0)\n"
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert r.stdout.splitlines() == ["HTTP/1.1 200 OK", "True"], r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "loop_error" in ln]
    assert len(lines) == 1 and lines[0].startswith("netanomd.daemon.httpserver: http loop_error")
