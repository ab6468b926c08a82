"""The ``ui:`` section of ``netanomd run``: the daemon serves the page over its own database and
applies the allowlist on its decision path. A followed Zeek conn.log (the RemcosRAT capture):
the default SSDP rule keeps the capture's SSDP alert out of the database, counted on the page's
``/metrics``; a rule an analyst adds on the page silences the C&C flows that arrive after it."""

from __future__ import annotations

import gzip
import json
import sqlite3
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from netanomd.daemon.service import Daemon
from netanomd.data import attack_files, demo_model
from netanomd.sdnotify import Notifier
from tests.conftest import free_port
from tests.waiting import wait

TOKEN = "analyst-token-for-this-test"


def _alerts(db: Path, where: str) -> list[tuple[float, str]]:
    with sqlite3.connect(db) as conn:
        return [(float(t), str(u)) for t, u in conn.execute(f"SELECT ts, uid FROM alerts {where}")]


def _get(url: str) -> str:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return str(r.read().decode())


def test_daemon_serves_the_page_and_applies_the_allowlist(tmp_path: Path) -> None:
    model = tmp_path / "model.npz"
    demo_model().save(model)
    capture = next(p for p in attack_files() if "remcos" in p.name)
    lines = gzip.decompress(capture.read_bytes()).splitlines(keepends=True)
    header = [x for x in lines if x.startswith(b"#") and not x.startswith(b"#close")]
    rows = [x for x in lines if not x.startswith(b"#")]
    half = len(rows) // 2
    log = tmp_path / "conn.log"
    log.write_bytes(b"".join(header + rows[:half]))
    (tmp_path / "analysts").write_text(f"# name token\nalice {TOKEN}\n")
    port, metrics_port = free_port(), free_port()
    db = tmp_path / "alerts.db"
    cfg = {
        "model": {"path": str(model), "reload_check_seconds": 0},
        "sources": [{"type": "zeek_log", "path": str(log), "from_start": True}],
        "pipeline": {"batch_size": 500, "batch_timeout_ms": 50},
        "sinks": {
            "sqlite": {"path": str(db)},
            "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
            "zeek_notice": {"enabled": False},
        },
        "ui": {
            "enabled": True,
            "listen": f"0.0.0.0:{port}",
            "analysts_file": str(tmp_path / "analysts"),
        },
        "state_dir": str(tmp_path / "state"),
    }
    path = tmp_path / "netanomd.yaml"
    path.write_text(json.dumps(cfg))
    d = Daemon(str(path), notifier=Notifier(env={}))
    d.start()
    base = f"http://127.0.0.1:{port}"
    try:
        assert d.pipeline is not None
        wait(lambda: d.pipeline.stats.scored >= half, what="first half scored")  # type: ignore[union-attr]
        wait(lambda: bool(_alerts(db, "WHERE resp_p = 5888")), what="C&C alerts")
        # Beyond loopback the page wants the token.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "/incidents", timeout=10)
        assert refused.value.code == 401
        page = _get(base + "/incidents")
        assert "192.168.1.107" in page and "5888/tcp on 66.63.168.35" in page, page[-1500:]
        # alice silences the C&C on the page; what arrives after is suppressed.
        form = urllib.parse.urlencode(
            {"name": "cc-known", "peer": "66.63.168.35", "port": "5888", "comment": "lab"}
        ).encode()
        req = urllib.request.Request(
            base + "/rules/add", form, {"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200 and "cc-known" in r.read().decode()
        before = _alerts(db, "WHERE resp_p = 5888")
        with log.open("ab") as fh:
            fh.write(b"".join(rows[half:]))
        wait(lambda: d.pipeline.stats.scored >= len(rows), what="second half scored")  # type: ignore[union-attr]
        later = [r for r in rows[half:] if b"\t66.63.168.35\t5888\t" in r]
        assert later  # the capture goes on talking to its C&C
        assert _alerts(db, "WHERE resp_p = 5888") == before
        # The SSDP multicast alert of this capture never reached the database.
        assert any(b"\t239.255.255.250\t1900\t" in r for r in rows)
        assert not _alerts(db, "WHERE resp_p = 1900")
        metrics = _get(base + "/metrics")
        assert 'rule="ssdp",kind="alerts"} 1' in metrics
        counted = [
            int(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if 'rule="cc-known",kind="alerts"' in line
        ]
        assert counted and counted[0] >= len(later) // 2
        # The model page shows the recent traffic's scores (every flow, not only alerts).
        model_page = _get(base + "/model")
        assert "scores of recent traffic (" in model_page, model_page[-2000:]
        assert "Scores of recent traffic, against the training quantiles" in model_page
        sampled = d.pipeline.reservoir.recent.scores()  # type: ignore[union-attr]
        assert f"({len(sampled):,} flows sampled" in model_page and len(sampled) >= half
        # The daemon's own Prometheus endpoint counts the same, per rule and kind.
        daemon_metrics = _get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert 'netanomd_suppressed_total{kind="alerts",rule="ssdp"} 1.0' in daemon_metrics
        assert 'netanomd_suppressed_total{kind="alerts",rule="cc-known"}' in daemon_metrics
    finally:
        assert d.shutdown() == 0
