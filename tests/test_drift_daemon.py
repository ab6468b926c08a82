"""Drift measured by a running daemon on its own schedule: it scores a followed conn.log with a
model trained on the even half hours of the benign CTU-SME-11 day; the odd half hours leave it
quiet, the NjRAT capture appended after them is flagged at the next pass (a warning in the log,
on /healthz and in /metrics). Passes follow the daemon's injected clock, not the readers."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netanomd.daemon.service import Daemon
from netanomd.data import attack_files, baseline_files
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.sdnotify import Notifier
from tests.conftest import free_port
from tests.test_drift import split
from tests.waiting import wait

__all__ = ["split"]  # the fixture, shared with test_drift

EVERY = 60.0


def lines(path: Path) -> tuple[list[bytes], list[bytes]]:
    """(header lines without #close, data rows) of a gzipped Zeek TSV conn.log."""
    with gzip.open(path) as fh:
        raw = fh.read().splitlines(keepends=True)
    head = [x for x in raw if x.startswith(b"#") and not x.startswith(b"#close")]
    return head, [x for x in raw if not x.startswith(b"#")]


def odd_half_hours(rows: list[bytes]) -> list[bytes]:
    """The rows the ``split`` model did not train on (as its fixture splits the day)."""
    ts = np.array([float(r.split(b"\t", 1)[0]) for r in rows])
    half_hour = ((ts - ts.min()) // 1800).astype(np.int64)
    return [r for r, h in zip(rows, half_hour.tolist(), strict=True) if h % 2 == 1]


def get(url: str) -> Any:
    return urllib.request.urlopen(url, timeout=10).read()


def test_daemon_flags_drift_on_schedule_when_the_input_changes(
    tmp_path: Path, split: tuple[Model, FlowBatch], caplog: pytest.LogCaptureFixture
) -> None:
    model, rest = split
    model.save(tmp_path / "model.npz")
    head, day = lines(baseline_files()[0])
    benign = odd_half_hours(day)
    assert len(benign) == len(rest)
    _, attack = lines(next(p for p in attack_files() if "njrat" in p.name))
    live = tmp_path / "conn.log"
    live.write_bytes(b"".join(head))
    port = free_port()
    cfg = {
        "model": {
            "path": str(tmp_path / "model.npz"),
            "reload_check_seconds": 0,
            "drift_check_seconds": EVERY,
        },
        "sources": [{"type": "zeek_log", "path": str(live), "from_start": True}],
        "pipeline": {"batch_size": 500, "batch_timeout_ms": 20, "dedup_community_id": False},
        "sinks": {
            "sqlite": {"path": str(tmp_path / "alerts.db")},
            "metrics": {"listen": f"127.0.0.1:{port}"},
            "zeek_notice": {"enabled": False},
        },
        "state_dir": str(tmp_path / "state"),
    }
    (tmp_path / "netanomd.yaml").write_text(json.dumps(cfg))
    now = [1.9e9]  # the daemon's wall clock, moved on by the test
    d = Daemon(str(tmp_path / "netanomd.yaml"), notifier=Notifier(env={}), clock=lambda: now[0])
    exits: list[int] = []
    caplog.set_level(logging.INFO, logger="netanomd.model.drift")
    daemon = threading.Thread(target=lambda: exits.append(d.serve(install_signals=False)))
    daemon.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: d.ready, what="the daemon to start")
        assert d.pipeline is not None and d.pipeline.reservoir is not None
        monitor = d.pipeline.reservoir.recent
        wait(lambda: monitor.passes == 1, what="the first drift pass")

        def health() -> dict[str, Any]:
            return dict(json.loads(get(base + "/healthz")))

        def scored(n: int) -> bool:
            assert d.pipeline is not None
            return d.pipeline.stats.scored == n

        with live.open("ab") as fh:
            fh.write(b"".join(benign))
        wait(lambda: scored(len(benign)), what="the benign half hours scored")
        assert health()["drift"]["rows"] == 0  # read, not measured: the first pass stands
        assert monitor.passes == 1
        now[0] += EVERY
        wait(lambda: monitor.passes == 2, what="the second drift pass")
        quiet = health()
        assert quiet["drift"]["rows"] >= 200 and not quiet["drift"]["flagged"], quiet["drift"]
        assert quiet["warnings"] == []
        with live.open("ab") as fh:
            fh.write(b"".join(attack))
        wait(lambda: scored(len(benign) + len(attack)), what="the attack capture scored")
        assert not health()["drift"]["flagged"]  # until the next pass
        now[0] += EVERY
        wait(lambda: monitor.passes == 3, what="the third drift pass")
        drifted = health()
        assert drifted["drift"]["flagged"], drifted["drift"]
        assert drifted["drift"]["score_psi"] > 0.25 > quiet["drift"]["score_psi"]
        (warning,) = drifted["warnings"]
        assert "traffic drifted from the model's training window" in warning
        metrics = get(base + "/metrics").decode()
        assert "netanomd_drift_flagged 1.0" in metrics
        assert f"netanomd_drift_flows {drifted['drift']['rows']}.0" in metrics
    finally:
        d.request_stop()
        daemon.join()
    assert exits == [0]
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert logged == [f"model {model.model_id}: {warning}"]
    for name, h in (("benign half hours", quiet), ("+ NjRAT capture", drifted)):
        r = h["drift"]
        print(
            f"\ndrift, {name}: {r['rows']} flows, score PSI {r['score_psi']}, "
            f"{len(r['drifted'])} of {len(r['feature_psi']) + 1} columns drifted "
            f"{r['drifted'][:4]}, flagged {r['flagged']}"
        )
