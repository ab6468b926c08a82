"""``netanomd metrics`` against a real Prometheus (Debian's ``prometheus``) scraping a real
``prometheus-node-exporter`` and a running netanomd daemon's own /metrics, every second: a burst
of loopback traffic the test makes after a quiet baseline is found, stored as an incident and
named by the series it moved, with its numbers."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from netanomd.cli import main
from netanomd.daemon.service import Daemon
from netanomd.model import Model
from netanomd.sdnotify import Notifier
from netanomd.sinks.sqlite import IncidentQuery, query_incidents
from netanomd.telemetry.series import DEFAULT_SERIES
from tests.conftest import free_port
from tests.test_daemon import tsv_header, tsv_rows, write_config
from tests.waiting import wait

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"
#: Quiet seconds before the load (the baseline), seconds of load, quiet seconds after it.
QUIET, LOAD, TAIL = 22.0, 8.0, 5.0
#: Bytes per second the load pushes over 127.0.0.1 (loopback here idles at ~5-700 kB/s).
LOAD_RATE = 60e6


@dataclass
class Stack:
    prometheus: str
    daemon_port: int


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        body: bytes = r.read()
        return body


def _targets_up(prometheus: str) -> bool:
    try:
        answer = json.loads(_get(f"{prometheus}/api/v1/query?query=up"))
    except OSError:
        return False
    up = [r for r in answer["data"]["result"] if r["value"][1] == "1"]
    return len(up) == 2


@pytest.fixture()
def stack(tmp_path: Path, demo: Model) -> Iterator[Stack]:
    """A netanomd daemon (its /metrics on loopback), node-exporter (loopback device only, so
    other traffic on this machine's network does not count) and Prometheus scraping both every
    second, its storage in ``tmp_path``."""
    model = tmp_path / "model.npz"
    demo.save(model)
    log = tmp_path / "conn.log"
    log.write_bytes(tsv_header() + b"".join(tsv_rows()[:100]))
    daemon_port, node_port, prom_port = free_port(), free_port(), free_port()
    cfg = write_config(
        tmp_path,
        model,
        [{"type": "zeek_log", "path": str(log), "from_start": True}],
        sinks={
            "sqlite": {"path": str(tmp_path / "daemon.db")},
            "metrics": {"listen": f"127.0.0.1:{daemon_port}"},
            "zeek_notice": {"enabled": False},
        },
    )
    daemon = Daemon(str(cfg), notifier=Notifier(env={}))
    daemon.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        wait(lambda: daemon.health()["ready"], 30, "daemon ready")
        procs.append(
            subprocess.Popen(
                [
                    NODE_EXPORTER,
                    f"--web.listen-address=127.0.0.1:{node_port}",
                    "--collector.disable-defaults",
                    "--collector.cpu",
                    "--collector.meminfo",
                    "--collector.netdev",
                    "--collector.netdev.device-exclude=",
                    "--collector.netdev.device-include=^lo$",
                ],
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / "node-exporter.log").open("wb"),
            )
        )
        config = tmp_path / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "node",
                            "static_configs": [{"targets": [f"127.0.0.1:{node_port}"]}],
                        },
                        {
                            "job_name": "netanomd",
                            "static_configs": [{"targets": [f"127.0.0.1:{daemon_port}"]}],
                        },
                    ],
                }
            )
        )
        procs.append(
            subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / "prometheus.log").open("wb"),
            )
        )
        url = f"http://127.0.0.1:{prom_port}"
        wait(lambda: _targets_up(url), 30, "Prometheus scraping node-exporter and netanomd")
        yield Stack(url, daemon_port)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
        daemon.shutdown()


def push(seconds: float, rate: float) -> int:
    """Send bytes over a loopback TCP connection for ``seconds`` at about ``rate`` bytes/s;
    returns how many the receiver got."""
    got = 0
    with socket.create_server(("127.0.0.1", 0)) as server:

        def receive() -> None:
            nonlocal got
            conn, _ = server.accept()
            with conn:
                while data := conn.recv(1 << 20):
                    got += len(data)

        receiver = threading.Thread(target=receive)
        receiver.start()
        chunk = b"\0" * (1 << 20)
        with socket.create_connection(server.getsockname()[:2]) as sender:
            start, sent = time.monotonic(), 0
            while (elapsed := time.monotonic() - start) < seconds:
                if sent < rate * elapsed:
                    sender.sendall(chunk)
                    sent += len(chunk)
                else:
                    time.sleep(0.002)
        receiver.join(timeout=30)
    return got


def _seen(stack: Stack, t0: float) -> list[tuple[float, float]]:
    """Loopback receive rate per second since ``t0`` as Prometheus has it (for a failure)."""
    from netanomd.telemetry.prometheus import PrometheusClient, fetch
    from netanomd.telemetry.series import DEFAULT_SERIES

    rx = [s for s in DEFAULT_SERIES if s.name == "receive_bytes"]
    got = fetch(PrometheusClient(stack.prometheus), rx, t0, time.time(), 1.0)
    return [(round(t - t0), round(v)) for t, v in zip(got["ts"], got["value"], strict=True)]


def test_metrics_finds_a_loopback_burst(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t0 = time.time()
    time.sleep(QUIET)
    b0 = time.time()
    sent = push(LOAD, LOAD_RATE)
    b1 = time.time()
    time.sleep(TAIL)
    db = tmp_path / "metrics.db"
    code = main(
        [
            "metrics",
            "--prometheus",
            stack.prometheus,
            "--start",
            f"{t0:.3f}",
            "--end",
            f"{time.time():.3f}",
            "--step",
            "1s",
            "--baseline",
            f"{t0:.3f}..{b0:.3f}",
            "--db",
            str(db),
        ]
    )
    out = capsys.readouterr().out
    print(out, f"load from {b0:.3f} to {b1:.3f}")  # shown when the test fails
    assert code == 0, out
    head = out.splitlines()[0]
    # One entity: node-exporter's and netanomd's instances on 127.0.0.1, its rows holding the
    # machine's series and netanomd's own health (intake, queue); capture drops are absent (no
    # Suricata or Zeek exporter here).
    assert " for 1 entity (127.0.0.1) " in head, head
    absent = head.partition("no samples for ")[2].split(", ")
    assert "capture_drops" in absent and not {"sensor_flows", "sensor_queue"} & set(absent)
    stored = query_incidents(db, IncidentQuery(behaviour="metric anomaly")).items
    during = [i for i in stored if i.first_seen <= b1 + 2 and i.last_seen >= b0]
    assert len(during) == 1, (sent, [(i.first_seen, i.title) for i in stored], _seen(stack, t0))
    inc = during[0]
    assert inc.host == "127.0.0.1" and inc.role == "instance"
    # Loopback counts each byte once received and once sent: whichever names it, it is the load.
    rate = sent / (b1 - b0)
    assert "throughput" in inc.title, inc.title
    assert 0.5 * rate <= inc.evidence["value"] <= 2.0 * rate, (inc.evidence, rate)
    assert inc.evidence["usual"] < 0.1 * rate
    floor = next(s.floor for s in DEFAULT_SERIES if s.words in inc.title)
    if inc.evidence["usual"] >= floor:  # a ratio to its usual value: at least 10x
        assert inc.evidence["ratio"] >= 10 and "x its usual" in inc.title, inc.title
    else:  # an idle loopback (under the series' noise floor): no ratio, the usual value named
        assert ", usually " in inc.title and "spread" in inc.title, inc.title
    # At least 10x its usual: medium 57 or more (how much more depends on this machine's other
    # loopback traffic in the baseline).
    assert inc.detections >= LOAD / 2 and inc.severity >= 57
    # The table says it too, with the stored id.
    (line,) = [ln for ln in out.splitlines() if inc.incident_id[:12] in ln]
    assert "127.0.0.1" in line and "throughput" in line
