"""TLS to Zeek (wss://) and Elasticsearch (https://) with certificates the test makes (openssl
CLI): a CA file is trusted, a wrong name or an unknown CA is refused and the log says why,
turning verification off is warned about, a missing CA file is a configuration error; and the
Zeek URL's password never reaches a log line."""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from netanomd.cli import main as cli_main
from netanomd.config import load_config
from netanomd.decision import Alert
from netanomd.ecs import ObserverInfo
from netanomd.errors import ConfigError
from netanomd.es_client import elasticsearch_client
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.sinks.elasticsearch import ElasticsearchSink
from netanomd.sources.zeek_ws import ZeekWebSocketClient, tls_context
from netanomd.spool import Spool
from tests.es_server import FakeElasticsearch
from tests.waiting import wait
from tests.zeek_wire import flows_message
from tests.zeek_ws_server import FakeZeek

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command")


@dataclass
class Pki:
    ca: Path  # the CA that signed the server's certificate
    other_ca: Path  # a CA that signed nothing here
    cert: Path  # server certificate for IP 127.0.0.1 only
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def _openssl(*args: str) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], check=True, capture_output=True)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = _ca(d, "test-ca")
    other_ca, _ = _ca(d, "other-ca")
    key, csr, cert = d / "server.key", d / "server.csr", d / "server.pem"
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1",
    )  # fmt: skip
    ext = d / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
        "keyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n"
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext),
    )  # fmt: skip
    return Pki(ca, other_ca, cert, key)


# -- Zeek over wss:// ---------------------------------------------------------------------------
@pytest.fixture()
def tls_zeek(pki: Pki) -> Iterator[FakeZeek]:
    server = FakeZeek(ping_interval=0.5)
    server.start(ssl_context=pki.server_context())
    yield server
    server.stop()


class Running:
    """A ZeekWebSocketClient in its thread, stopped at the end."""

    def __init__(self, url: str, ctx: ssl.SSLContext | None) -> None:
        self.batches: list[FlowBatch] = []

        def emit(batch: FlowBatch, ack: Any = None, *, arrived: float | None = None) -> bool:
            self.batches.append(batch)
            if ack is not None:
                ack()
            return True

        self.client = ZeekWebSocketClient(
            url, emit, ssl_context=ctx, initial_backoff=0.05, max_backoff=0.2
        )
        self.thread = threading.Thread(target=self.client.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.client.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture()
def running() -> Iterator[list[Running]]:
    made: list[Running] = []
    yield made
    for r in made:
        r.stop()


def test_wss_with_a_ca_file_connects_and_delivers_flows(
    pki: Pki, tls_zeek: FakeZeek, running: list[Running], remcos: FlowBatch
) -> None:
    r = Running(f"wss://127.0.0.1:{tls_zeek.port}", tls_context(str(pki.ca)))
    running.append(r)
    assert r.client.ready.wait(10)
    wait(lambda: len(tls_zeek.clients) == 1)
    flows = remcos.slice(0, 50)
    assert tls_zeek.publish(flows_message(flows)) == 1
    wait(lambda: sum(len(b) for b in r.batches) == 50)
    uids = [u for b in r.batches for u in b.column("uid").to_pylist()]
    assert uids == flows.column("uid").to_pylist()


@pytest.mark.parametrize(
    ("host", "ca", "why"),
    [
        ("localhost", "ca", "Hostname mismatch, certificate is not valid for 'localhost'"),
        ("127.0.0.1", "other_ca", "certificate verify failed: unable to get local issuer"),
    ],
)
def test_wss_refuses_a_wrong_name_or_an_unknown_ca_and_says_why(
    pki: Pki,
    tls_zeek: FakeZeek,
    running: list[Running],
    caplog: pytest.LogCaptureFixture,
    host: str,
    ca: str,
    why: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="netanomd.sources.zeek_ws")
    r = Running(f"wss://{host}:{tls_zeek.port}", tls_context(str(getattr(pki, ca))))
    running.append(r)
    wait(lambda: any(why in m for m in caplog.messages))
    assert not r.client.ready.is_set()
    assert not tls_zeek.clients


def test_wss_insecure_connects_with_a_warning_at_start(
    tls_zeek: FakeZeek, running: list[Running], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="netanomd.sources.zeek_ws")
    r = Running(f"wss://localhost:{tls_zeek.port}", tls_context(None, verify=False))
    running.append(r)
    assert r.client.ready.wait(10)
    warnings = [rec.message for rec in caplog.records if rec.levelno == logging.WARNING]
    assert warnings[0].startswith("zeek_ws: the certificate of wss://localhost:")
    assert "is not verified (insecure: true)" in warnings[0]


# -- issue 14 point 17: the Zeek URL's userinfo is never logged ---------------------------------
def test_zeek_url_password_is_masked_in_connect_and_reconnect_lines(
    pki: Pki, tls_zeek: FakeZeek, running: list[Running], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cr3t-Pa55"
    url = f"wss://admin:{secret}@127.0.0.1:{tls_zeek.port}"
    r = Running(url, tls_context(str(pki.ca)))
    running.append(r)
    assert r.client.ready.wait(10)
    tls_zeek.stop()  # the link drops: reconnect warnings follow
    wait(lambda: any("reconnecting" in m for m in caplog.messages))
    shown = f"wss://admin:***@127.0.0.1:{tls_zeek.port}/v1/messages/json"
    assert f"connected to Zeek 8.2.2 at {shown}" in caplog.messages
    assert any(m.startswith(f"Zeek WebSocket {shown}: ") for m in caplog.messages)
    assert not [m for m in caplog.messages if secret in m]
    assert secret not in caplog.text


def test_zeek_url_password_is_masked_in_errors_that_quote_the_url(
    running: list[Running], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    r = Running("ws://admin:hunter2@127.0.0.1:1/ bad uri", None)  # websockets quotes it
    running.append(r)
    wait(lambda: any("reconnecting" in m for m in caplog.messages))
    assert "hunter2" not in caplog.text
    assert "admin:***@127.0.0.1:1" in caplog.text


# -- Elasticsearch over https:// ----------------------------------------------------------------
OBSERVER = ObserverInfo(name="sensor-1", hostname="sensor-1.example")


@pytest.fixture()
def tls_es(pki: Pki) -> Iterator[FakeElasticsearch]:
    server = FakeElasticsearch()
    server.start(ssl_context=pki.server_context())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def alerts(demo: Model, remcos: FlowBatch) -> list[Alert]:
    demo.reset()
    out = demo.run(remcos)[1][:20]
    assert len(out) == 20
    return out


def _sink(tmp_path: Path, *settings: str) -> ElasticsearchSink:
    cfg = load_config(None, env={}, overrides=[f"sinks.elasticsearch.{s}" for s in settings])
    client = elasticsearch_client(cfg.sinks.elasticsearch, env={})
    slept: list[float] = []
    return ElasticsearchSink(client, Spool(tmp_path / "spool"), OBSERVER, sleep=slept.append)


def _ours(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "netanomd.sinks.elasticsearch"]


def test_https_with_a_ca_file_delivers(
    pki: Pki, tls_es: FakeElasticsearch, tmp_path: Path, alerts: list[Alert]
) -> None:
    sink = _sink(tmp_path, f"hosts=https://127.0.0.1:{tls_es.port}", f"ca_file={pki.ca}")
    sink.write(alerts)
    assert sink.deliver_once() == 20
    assert sum(len(d) for d in tls_es.docs.values()) == 20
    sink.spool.close()


@pytest.mark.parametrize(
    ("host", "ca", "why"),
    [
        ("localhost", "ca", "TLS: certificate verify failed: Hostname mismatch, certificate is "
         "not valid for 'localhost'."),
        ("127.0.0.1", "other_ca", "TLS: certificate verify failed: unable to get local issuer "
         "certificate"),
    ],
)  # fmt: skip
def test_https_certificate_problem_is_logged_with_its_reason(
    pki: Pki,
    tls_es: FakeElasticsearch,
    tmp_path: Path,
    alerts: list[Alert],
    caplog: pytest.LogCaptureFixture,
    host: str,
    ca: str,
    why: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="netanomd.sinks.elasticsearch")
    sink = _sink(tmp_path, f"hosts=https://{host}:{tls_es.port}", f"ca_file={getattr(pki, ca)}")
    sink.write(alerts)
    assert sink.deliver_once() == 0
    assert _ours(caplog) == [f"elasticsearch unreachable ({why}); 20 documents stay spooled"]
    assert not tls_es.docs
    sink.spool.close()


@pytest.mark.filterwarnings("ignore:Connecting to .* verify_certs=False is insecure")
def test_https_verify_certs_false_warns_at_start(
    tls_es: FakeElasticsearch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="netanomd.sinks.elasticsearch")
    sink = _sink(tmp_path, f"hosts=https://localhost:{tls_es.port}", "verify_certs=false")
    sink.open()
    try:
        assert _ours(caplog) == [
            f"elasticsearch https://localhost:{tls_es.port}: the certificate is not verified "
            "(verify_certs: false): anyone on the path can read the alerts and answer for the "
            "server; use ca_file instead"
        ]
    finally:
        sink.close(timeout=1)


# -- a CA file that does not exist is a configuration error -------------------------------------
def test_config_check_names_a_missing_or_unreadable_ca_file(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "netanomd.yaml"
    config.write_text(
        "sources:\n"
        "  - type: zeek_ws\n"
        "    url: wss://127.0.0.1:27759\n"
        f"    ca_file: {tmp_path / 'missing.pem'}\n"
        "sinks:\n"
        "  elasticsearch:\n"
        "    hosts: [https://127.0.0.1:9200]\n"
        f"    ca_file: {tmp_path}\n"
    )
    assert cli_main(["config", "check", "--config", str(config)]) != 0
    err = capsys.readouterr().err
    assert f"{config}:4: sources[0].ca_file: '{tmp_path / 'missing.pem'}': no such file" in err
    assert f"{config}:8: sinks.elasticsearch.ca_file: '{tmp_path}' is not a file" in err
    with pytest.raises(ConfigError, match="ca_file"):
        load_config(config, env={})
    good = config.read_text().replace(str(tmp_path / "missing.pem"), str(pki.ca))
    config.write_text(good.replace(f"ca_file: {tmp_path}\n", f"ca_file: {pki.ca}\n"))
    assert cli_main(["config", "check", "--offline", "--config", str(config)]) == 0
