"""``netanomd run`` end to end with Zeek: a real daemon process scores the flows a peer playing
Zeek publishes and sends its verdicts back, over the WebSocket API (the in-repo peer,
``tests/zeek_ws_server.py``) and over native Broker (a real Broker 1.4 endpoint).

Every alert the daemon stores in SQLite must come back to Zeek as a ``NetAnom::verdict`` for
the same connection, with the same score; the alert keeps the flow's exact start time (it
travels as a double); and ``NetAnom::drain`` is answered after every verdict, which is what
lets a trace replay terminate."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from netanomd.data import demo_model
from netanomd.flow import FlowBatch
from netanomd.zeek import api, binding, brokerjson, brokerpy
from tests.test_daemon import free_port
from tests.waiting import wait
from tests.zeek_wire import flows_event, flows_message
from tests.zeek_ws_server import FakeZeek


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.npz"
    demo_model().save(path)
    return path


@contextmanager
def daemon(tmp: Path, model: Path, source: dict[str, Any]) -> Iterator[subprocess.Popen[str]]:
    """A `netanomd run` process with one Zeek source, SQLite and Zeek notice sinks."""
    cfg = {
        "model": {"path": str(model), "reload_check_seconds": 0},
        "sources": [source],
        "pipeline": {"batch_size": 500, "batch_timeout_ms": 20, "dedup_community_id": False},
        "sinks": {
            "sqlite": {"path": str(tmp / "alerts.db")},
            "metrics": {"listen": f"127.0.0.1:{free_port()}"},
            "zeek_notice": {"enabled": True},
        },
        "state_dir": str(tmp / "state"),
    }
    path = tmp / "netanomd.yaml"
    path.write_text(json.dumps(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "netanomd", "run", "-c", str(path)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            proc.kill()


def stored_alerts(db: Path) -> dict[str, tuple[float, float]]:
    """uid -> (flow start, score) of every alert in the daemon's SQLite sink."""
    with sqlite3.connect(db) as con:
        return {
            uid: (ts, score) for uid, ts, score in con.execute("select uid, ts, score from alerts")
        }


def check(remcos: FlowBatch, tmp: Path, verdicts: list[dict[str, Any]], drained: list[int]) -> None:
    alerts = stored_alerts(tmp / "alerts.db")
    assert len(alerts) >= 100  # an exfiltration capture: many anomalous flows
    got = {v["uid"]: v for v in verdicts}
    assert len(got) == len(verdicts) == len(alerts)
    start = dict(
        zip(remcos.column("uid").to_pylist(), remcos.column("ts").to_pylist(), strict=True)
    )
    for uid, (ts, score) in alerts.items():
        assert got[uid]["score"] == pytest.approx(score)
        assert got[uid]["contract"] == api.VERSION
        assert ts == start[uid]  # not cut to milliseconds on the way
    assert drained == [3]


def until(cond: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    def ok() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        return cond()

    wait(ok, timeout=60, what=what)


def test_daemon_answers_zeek_over_websocket(
    remcos: FlowBatch, model_path: Path, tmp_path: Path
) -> None:
    zeek = FakeZeek()
    zeek.start()
    try:
        source = {"type": "zeek_ws", "url": f"ws://127.0.0.1:{zeek.port}"}
        with daemon(tmp_path, model_path, source) as proc:
            until(lambda: len(zeek.clients) == 1, proc, "the daemon to connect")
            for off in range(0, len(remcos), 100):
                zeek.publish(flows_message(remcos.slice(off, 100)))
            drain = brokerjson.encode_event(api.DRAIN, {"token": 3}, api.FLOWS_TOPIC + "/0")
            zeek.publish(drain)
            until(
                lambda: any(
                    m["data"][2]["data"][0]["data"] == api.DRAINED.name for m in zeek.received
                ),
                proc,
                "the answer to the drain",
            )
            assert not zeek.errors_sent
            events = [brokerjson.parse_event(m) for m in zeek.received]
            names = [name for _, name, _ in events]
            assert names[-1] == api.DRAINED.name and names.count(api.DRAINED.name) == 1
            verdicts = [
                brokerjson.decode_event(api.VERDICT, a)
                for _, n, a in events
                if n == api.VERDICT.name
            ]
            drained = [brokerjson.decode_event(api.DRAINED, events[-1][2])["token"]]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
    finally:
        zeek.stop()
    check(remcos, tmp_path, verdicts, drained)


def test_daemon_answers_zeek_over_native_broker(
    remcos: FlowBatch, model_path: Path, tmp_path: Path
) -> None:
    broker = binding.load_broker()
    ep = broker.Endpoint()
    try:
        sub = ep.make_subscriber(api.VERDICTS_TOPIC)
        status = ep.make_status_subscriber(True)
        port = ep.listen("127.0.0.1", 0)
        source = {"type": "zeek_broker", "connect": f"127.0.0.1:{port}"}
        with daemon(tmp_path, model_path, source) as proc:
            until(
                lambda: any(
                    getattr(s, "code", lambda: None)() == broker.SC.PeerAdded for s in status.poll()
                ),
                proc,
                "the daemon to peer",
            )
            time.sleep(0.5)  # subscriptions propagate
            for off in range(0, len(remcos), 100):
                ep.publish(api.FLOWS_TOPIC + "/0", flows_event(broker, remcos.slice(off, 100)))
            ep.publish(
                api.FLOWS_TOPIC + "/0", brokerpy.encode_event(broker, api.DRAIN, {"token": 3})
            )
            verdicts: list[dict[str, Any]] = []
            drained: list[int] = []

            def receive() -> bool:
                for _, data in sub.poll():
                    name, args = brokerpy.parse_event(data)
                    if name == api.INCIDENT.name:
                        continue  # incidents come and go with the stream (see test_zeek_link)
                    assert not drained, "a verdict after the drain was answered"
                    if name == api.DRAINED.name:
                        drained.append(brokerpy.decode_event(api.DRAINED, args)["token"])
                    else:
                        verdicts.append(brokerpy.decode_event(api.VERDICT, args))
                return bool(drained)

            until(receive, proc, "the answer to the drain")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
    finally:
        ep.shutdown()
    check(remcos, tmp_path, verdicts, drained)
