"""The Zeek WebSocket transport against tests/zeek_ws_server.py (Broker's JSON API as Zeek
speaks it): handshake and ack, real flows scored and answered with verdicts, reconnect after
the server drops, a 10,000-flow burst, malformed frames counted and skipped, pings."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from websockets.sync.client import connect

from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.sinks.zeek_notice import ZeekNoticeSink
from netanomd.sources import Ack
from netanomd.sources.zeek_ws import ZeekWebSocketClient
from netanomd.zeek import api
from netanomd.zeek.brokerjson import decode_event, flows_to_batch, parse_event
from tests.waiting import wait
from tests.zeek_wire import flows_message
from tests.zeek_ws_server import FakeZeek


@pytest.fixture(scope="module")
def model(demo: Model) -> Model:
    demo.reset()
    return demo


@pytest.fixture()
def zeek() -> Iterator[FakeZeek]:
    server = FakeZeek(ping_interval=0.2)
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def client(zeek: FakeZeek, model: Model) -> Iterator[ZeekWebSocketClient]:
    sinks: list[ZeekNoticeSink] = []

    def score(batch: FlowBatch, ack: Ack | None = None) -> bool:
        sinks[0].write(model.run(batch)[1])
        return True

    c = ZeekWebSocketClient(
        f"ws://127.0.0.1:{zeek.port}", score, initial_backoff=0.05, max_backoff=0.2
    )
    sinks.append(ZeekNoticeSink(c))
    t = threading.Thread(target=c.run, daemon=True)
    t.start()
    assert c.ready.wait(10)
    wait(lambda: c.counters.connects == 1 and len(zeek.clients) == 1)
    yield c
    c.stop()
    t.join(timeout=5)


def publish(zeek: FakeZeek, batch: FlowBatch, size: int = 100) -> None:
    for off in range(0, len(batch), size):
        assert zeek.publish(flows_message(batch.slice(off, size), topic="netanom/flows/0")) == 1


def test_handshake_and_verdicts(
    zeek: FakeZeek, client: ZeekWebSocketClient, model: Model, remcos: FlowBatch
) -> None:
    assert client.peer["version"] == "8.2.2" and client.peer["endpoint"].endswith("-websocket-1")
    # What the daemon sees is what crossed the wire (unset counts travel as 0, as the Zeek
    # package sends them): score the decoded batches for the expectation.
    expected = []
    for off in range(0, len(remcos), 100):
        wire = flows_message(remcos.slice(off, 100))
        expected += model.run(flows_to_batch(parse_event(wire)[2]))[1]
    assert expected
    publish(zeek, remcos)
    wait(lambda: len(zeek.received) == len(expected))
    assert client.counters.flows == 766 and client.counters.malformed == 0
    got = {}
    for msg in zeek.received:
        v = decode_event(api.VERDICT, parse_event(msg)[2])
        got[v["uid"]] = v
    for a in expected:
        v = got[a.flow.uid]
        assert (v["orig_h"], v["resp_h"]) == (a.flow.orig_h, a.flow.resp_h)
        p = a.flow.proto
        assert (v["orig_p"], v["resp_p"]) == ((a.flow.orig_p, p), (a.flow.resp_p, p))
        assert v["score"] == pytest.approx(a.score) and v["threshold"] == a.threshold
        assert (v["model"], v["reason"], v["contract"]) == (a.model_id, a.reason, api.VERSION)
    assert not zeek.errors_sent  # every verdict was a well-formed event for Zeek


def test_reconnect_after_server_drop(
    zeek: FakeZeek, client: ZeekWebSocketClient, remcos: FlowBatch
) -> None:
    zeek.drop_clients()
    wait(lambda: client.counters.connects == 2 and len(zeek.clients) == 1)
    publish(zeek, remcos.slice(0, 100))
    wait(lambda: client.counters.flows == 100)


def test_burst_of_10000_flows(
    zeek: FakeZeek, client: ZeekWebSocketClient, remcos: FlowBatch
) -> None:
    big = FlowBatch.concat([remcos] * 14).slice(0, 10_000)
    publish(zeek, big)
    wait(lambda: client.counters.flows == 10_000, timeout=60)
    assert client.counters.malformed == 0


def test_malformed_frames_counted_and_skipped(
    zeek: FakeZeek, client: ZeekWebSocketClient, remcos: FlowBatch
) -> None:
    good = flows_message(remcos.slice(0, 50), topic="netanom/flows/0")
    zeek.publish('{"type": "data-message", "topic": "netanom/flows/0", ')  # bad JSON
    wrong_type = orjson.loads(orjson.dumps(good))
    wrong_type["data"][2]["data"][1]["data"][api.FLOWS.position("ts")]["data"][0]["@data-type"] = (
        "string"
    )
    zeek.publish(wrong_type)
    short = orjson.loads(orjson.dumps(good))
    short["data"][2]["data"][1]["data"].pop()
    zeek.publish(short)
    zeek.publish(good)
    wait(lambda: client.counters.flows == 50)
    assert client.counters.malformed == 3 and client.counters.connects == 1
    # A bad value (caught when a micro-batch is decoded column-wise) costs only its own frame.
    bad_port = orjson.loads(orjson.dumps(good))
    bad_port["data"][2]["data"][1]["data"][api.FLOWS.position("resp_p")]["data"][7]["data"] = (
        "http/tcp"
    )
    for msg in (good, bad_port, good, good):
        zeek.publish(msg)
    wait(lambda: client.counters.flows == 200)
    assert client.counters.malformed == 4


def test_pings_are_answered(zeek: FakeZeek, client: ZeekWebSocketClient) -> None:
    time.sleep(1.0)  # five keepalive pings with no traffic
    assert client.counters.connects == 1 and len(zeek.clients) == 1
    ws = zeek.clients[0][0]
    assert ws.latency > 0  # set only when a keepalive ping's pong came back
    pong = ws.ping(b"netanomd")
    assert pong.wait(2), "the client did not answer a ping"


def test_server_protocol_errors(zeek: FakeZeek) -> None:
    with connect(f"ws://127.0.0.1:{zeek.port}/v2/wrong") as ws:
        assert orjson.loads(ws.recv(timeout=5))["code"] == "invalid_uri"
    with connect(f"ws://127.0.0.1:{zeek.port}/v1/messages/json") as ws:
        ws.send('"netanom/"')
        err = orjson.loads(ws.recv(timeout=5))
        assert (err["code"], err["context"]) == (
            "deserialization_failed",
            "subscriptions not an array",
        )


def test_zeek_listen_command_over_websocket(
    zeek: FakeZeek, model: Model, remcos: FlowBatch, tmp_path: Path
) -> None:
    model_path = tmp_path / "m.npz"
    model.save(model_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "netanomd",
            "zeek",
            "listen",
            "--url",
            f"ws://127.0.0.1:{zeek.port}",
            "--model",
            str(model_path),
            "--count",
            "150",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait(lambda: len(zeek.clients) == 1)
        publish(zeek, remcos.slice(0, 150))
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 150
    anomalous = {line.split()[0] for line in lines if "ANOMALOUS:" in line}
    assert anomalous
    wait(lambda: len(zeek.received) == len(anomalous))
    assert {decode_event(api.VERDICT, parse_event(m)[2])["uid"] for m in zeek.received} == (
        anomalous
    )
    assert "150 flows in 2 messages, 0 malformed" in err
