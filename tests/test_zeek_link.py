"""The Zeek links as live sources and verdict publishers, on both transports against real
peers: publishing verdicts never waits while the link is held back by a full pipeline (the
outbox is bounded and counts what it drops), a drain is answered only once the batches before
it are acknowledged, an event of another contract major version is refused with an error, and
``zeek_source`` builds the link a configuration describes. Plus how Broker bindings are chosen."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from netanomd.behaviour.measure import halves, load, run
from netanomd.behaviour.pipeline import BehaviourPipeline, learn
from netanomd.config import ZeekBrokerSourceConfig, ZeekWsSourceConfig
from netanomd.data import attack_files, baseline_files
from netanomd.decision import Alert
from netanomd.errors import TransportError
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.sinks import IncidentSink
from netanomd.sinks.incident_ids import IncidentIds
from netanomd.sinks.zeek_notice import ZeekNoticeSink, incident_values
from netanomd.sources import Ack, LiveSource, ReadStats
from netanomd.sources.files import read_batches
from netanomd.sources.zeek_broker import ZeekBrokerClient
from netanomd.sources.zeek_link import ZeekLink, zeek_source
from netanomd.sources.zeek_ws import ZeekWebSocketClient
from netanomd.zeek import api, binding, brokerjson, brokerpy
from tests.waiting import wait
from tests.zeek_wire import flows_event, flows_message
from tests.zeek_ws_server import FakeZeek

broker = binding.load_broker()
DATA = Path(__file__).parent / "data"


class Held:
    """An ``emit`` that blocks (a full pipeline) until released, keeping the acks."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.acks: list[Ack] = []
        self.batches: list[FlowBatch] = []

    def __call__(self, batch: FlowBatch, ack: Ack | None = None) -> bool:
        self.entered.set()
        self.release.wait(30)
        self.batches.append(batch)
        if ack is not None:
            self.acks.append(ack)
        return True


@pytest.fixture(scope="module")
def alerts(demo: Model, remcos: FlowBatch) -> list[Alert]:
    demo.reset()
    found = demo.run(remcos)[1]
    assert len(found) > 100
    return found


class WsZeek:
    def __init__(self) -> None:
        self.server = FakeZeek()
        self.server.start()

    def link(self, emit: Any, **kw: Any) -> ZeekWebSocketClient:
        return ZeekWebSocketClient(f"ws://127.0.0.1:{self.server.port}", emit, **kw)

    def connected(self) -> bool:
        return len(self.server.clients) == 1

    def send_flows(self, batch: FlowBatch, version: str = api.VERSION) -> None:
        msg = flows_message(batch)
        msg["data"][2]["data"][1]["data"][0]["data"] = version
        self.server.publish(msg)

    def send_drain(self, token: int) -> None:
        self.server.publish(brokerjson.encode_event(api.DRAIN, {"token": token}, "netanom/flows/0"))

    def received(self) -> list[str]:
        return [brokerjson.parse_event(m)[1] for m in self.server.received]

    def decoded(self, spec: api.EventSpec) -> list[dict[str, Any]]:
        """The ``spec`` events Zeek got, decoded from the declaration."""
        events = [brokerjson.parse_event(m) for m in self.server.received]
        return [brokerjson.decode_event(spec, a) for _, name, a in events if name == spec.name]

    def close(self) -> None:
        self.server.stop()


class BrokerZeek:
    def __init__(self) -> None:
        self.ep = broker.Endpoint()
        self.sub = self.ep.make_subscriber(api.VERDICTS_TOPIC)
        self.status = self.ep.make_status_subscriber(True)
        self.port = int(self.ep.listen("127.0.0.1", 0))
        self.events: list[tuple[str, Any]] = []
        self.peers = 0

    def link(self, emit: Any, **kw: Any) -> ZeekBrokerClient:
        return ZeekBrokerClient(emit, connect=("127.0.0.1", self.port), retry=0.2, **kw)

    def connected(self) -> bool:
        for s in self.status.poll():
            if getattr(s, "code", lambda: None)() == broker.SC.PeerAdded:
                self.peers += 1
        if self.peers:
            time.sleep(0.3)  # subscriptions propagate
        return self.peers > 0

    def send_flows(self, batch: FlowBatch, version: str = api.VERSION) -> None:
        event = flows_event(broker, batch)
        args = list(broker.Data.to_py(event.as_data())[2][1])
        args[0] = version
        self.ep.publish("netanom/flows/0", broker.zeek.Event(api.FLOWS.name, *args))

    def send_drain(self, token: int) -> None:
        event = brokerpy.encode_event(broker, api.DRAIN, {"token": token})
        self.ep.publish("netanom/flows/0", event)

    def received(self) -> list[str]:
        self.events += [brokerpy.parse_event(data) for _, data in self.sub.poll()]
        return [name for name, _ in self.events]

    def decoded(self, spec: api.EventSpec) -> list[dict[str, Any]]:
        self.received()
        return [brokerpy.decode_event(spec, a) for name, a in self.events if name == spec.name]

    def close(self) -> None:
        self.ep.shutdown()


@pytest.fixture(params=["ws", "broker"])
def zeek(request: pytest.FixtureRequest) -> Iterator[WsZeek | BrokerZeek]:
    z: WsZeek | BrokerZeek = WsZeek() if request.param == "ws" else BrokerZeek()
    yield z
    z.close()


def running(link: ZeekLink, zeek: WsZeek | BrokerZeek) -> Callable[[], None]:
    t = threading.Thread(target=link.run, daemon=True)
    t.start()
    assert link.ready.wait(10)
    wait(zeek.connected, what="the link to connect")
    if isinstance(link, ZeekBrokerClient):
        wait(lambda: link.connected)

    def stop() -> None:
        link.stop()
        t.join(10)
        assert not t.is_alive()

    return stop


def test_publishing_never_waits_on_a_held_link(
    zeek: WsZeek | BrokerZeek, alerts: list[Alert], remcos: FlowBatch
) -> None:
    """The link's thread is stuck in ``emit`` (pipeline full): the scorer still writes 20
    rounds of verdicts at once, what does not fit the outbox is counted as dropped, and what
    fits goes out once the link moves again."""
    held = Held()
    link = zeek.link(held, outbox_limit=1000)
    stop = running(link, zeek)
    try:
        zeek.send_flows(remcos.slice(0, 50))
        assert held.entered.wait(10)  # the link's thread now blocks in emit
        sink = ZeekNoticeSink(link)
        start = time.perf_counter()
        for _ in range(20):
            sink.write(alerts)
        took = time.perf_counter() - start
        assert took < 2.0, f"publishing waited {took:.1f}s on a held link"
        offered = 20 * len(alerts)
        assert link.counters.verdicts_dropped == offered - 1000
        held.release.set()
        wait(lambda: link.counters.verdicts_sent == 1000, what="the queued verdicts")
        wait(lambda: len(zeek.received()) == 1000, what="Zeek to get them")
        assert (
            held.batches[0].column("uid").to_pylist()
            == remcos.slice(0, 50).column("uid").to_pylist()
        )
    finally:
        held.release.set()
        stop()


def test_drain_is_answered_once_earlier_batches_are_acknowledged(
    zeek: WsZeek | BrokerZeek, remcos: FlowBatch
) -> None:
    held = Held()
    held.release.set()
    link = zeek.link(held)
    stop = running(link, zeek)
    try:
        zeek.send_flows(remcos.slice(0, 30))
        zeek.send_flows(remcos.slice(30, 30))
        zeek.send_drain(5)
        wait(lambda: sum(len(b) for b in held.batches) == 60, what="the flows")
        time.sleep(0.5)
        assert api.DRAINED.name not in zeek.received()  # batches not through the sinks yet
        for ack in held.acks:
            ack()
        wait(lambda: zeek.received() == [api.DRAINED.name], what="the answer")
        assert link.counters.drains_answered == 1
    finally:
        stop()


def test_incidents_reach_zeek_one_event_each(zeek: WsZeek | BrokerZeek) -> None:
    """Incidents from the behaviour library travel as ``NetAnom::incident`` events, each
    argument as declared; with no Zeek connected they are dropped and counted."""
    thresholds = learn([halves(load(baseline_files()[0]))[0]])
    incidents = run(
        BehaviourPipeline(thresholds), load(DATA / "behaviour/portscan-002.conn.log.gz")
    )
    incidents += run(BehaviourPipeline(thresholds), load(DATA / "zeek/ssh_sshguess.tsv.conn.log"))
    assert len(incidents) == 2  # the scan and the SSH guessing
    held = Held()
    held.release.set()
    link = zeek.link(held)
    sink = ZeekNoticeSink(link, ids=IncidentIds("sensor-1"))
    assert isinstance(sink, IncidentSink)
    sink.write_incidents(incidents)  # not connected yet
    assert link.counters.incidents_dropped == 2 and link.counters.incidents_sent == 0
    stop = running(link, zeek)
    try:
        sink.write_incidents(incidents)
        assert sink.close(10)
        wait(lambda: len(zeek.decoded(api.INCIDENT)) == 2, what="the incidents")
        assert link.counters.incidents_sent == 2
        got = {v["id"]: v for v in zeek.decoded(api.INCIDENT)}
        for inc in incidents:
            want = incident_values(inc, sink.ids(inc))
            v = got[want["id"]]
            assert v["contract"] == api.VERSION
            assert list(v["uids"]) == want["uids"] and len(want["uids"]) > 0
            assert v["first_seen"] == pytest.approx(inc.first_seen)
            for key in ("role", "host", "peer", "behaviour", "severity", "flow_count", "title"):
                assert v[key] == want[key], key
            assert v["evidence"] == want["evidence"] and "flows=" in v["evidence"]
    finally:
        stop()


def test_a_retracted_incident_is_not_announced(zeek: WsZeek | BrokerZeek, demo: Model) -> None:
    """The njrat capture streamed: every incident report goes to Zeek as it comes, but the
    incident the end retracts (its alerts went to the named one) is not sent again: Zeek keeps
    the notice it already had, and gets nothing more for it."""
    path = next(p for p in attack_files() if p.name.startswith("njrat-001"))
    batch = FlowBatch.concat(list(read_batches([str(path)], ReadStats())))
    held = Held()
    held.release.set()
    link = zeek.link(held)
    ids = IncidentIds("sensor-1")
    sink = ZeekNoticeSink(link, ids=ids)
    stream = demo.stream()
    sent: list[str] = []  # the ids of the reports the sink should send, in order
    stop = running(link, zeek)
    try:
        for off in range(0, len(batch), 200):
            incidents = stream.process(batch.slice(off, 200))[2]
            sink.write_incidents(incidents)
            sent += [ids(i) for i in incidents]
        final = stream.finish()
        (gone,) = stream.retracted
        assert ids(gone) in sent  # announced while it was an incident
        sink.write_incidents([*final, gone])
        sent += [ids(i) for i in final]
        assert sink.close(10)
        wait(lambda: len(zeek.decoded(api.INCIDENT)) >= len(sent), what="the incidents")
        assert [v["id"] for v in zeek.decoded(api.INCIDENT)] == sent
        assert link.counters.incidents_sent == len(sent) and not link.counters.incidents_dropped
    finally:
        stop()


def test_another_major_version_is_refused_with_an_error(
    zeek: WsZeek | BrokerZeek, remcos: FlowBatch, caplog: pytest.LogCaptureFixture
) -> None:
    held = Held()
    held.release.set()
    link = zeek.link(held)
    stop = running(link, zeek)
    try:
        with caplog.at_level(logging.ERROR):
            zeek.send_flows(remcos.slice(0, 10), version="1.0")
            zeek.send_flows(remcos.slice(10, 10))
            wait(lambda: link.counters.flows == 10, what="the accepted flows")
        assert link.counters.refused == 1 and link.counters.malformed == 0
        assert (
            held.batches[0].column("uid").to_pylist()
            == remcos.slice(10, 10).column("uid").to_pylist()
        )
        assert f"contract 1.0, this daemon speaks {api.VERSION}: refused" in caplog.text
    finally:
        stop()


def test_zeek_source_builds_the_configured_link() -> None:
    def emit(batch: FlowBatch, ack: Ack | None = None) -> bool:
        return True

    ws = zeek_source(
        ZeekWsSourceConfig("zeek_ws", "wss://zeek.example:27759", None, False, ("netanom/",)),
        emit,
        name="zeek_ws[0]",
    )
    assert isinstance(ws, ZeekWebSocketClient) and ws.url.endswith("/v1/messages/json")
    assert ws.ssl_context is not None and ws.topics == ["netanom/"]
    nb = zeek_source(
        ZeekBrokerSourceConfig("zeek_broker", None, "[::1]:0", ("netanom/flows",)),
        emit,
        name="zeek_broker[1]",
    )
    assert isinstance(nb, ZeekBrokerClient) and nb.listen == ("::1", 0)
    for link in (ws, nb):
        assert isinstance(link, ZeekLink) and isinstance(link, LiveSource)
    assert (ws.name, nb.name) == ("zeek_ws[0]", "zeek_broker[1]")


def test_bindings_that_cannot_peer_with_the_local_zeek_are_refused() -> None:
    with pytest.raises(
        TransportError, match=r"Broker 1\.4\.0 bindings .* cannot peer with Zeek 8\.2\.2"
    ):
        ZeekBrokerClient(lambda b, a=None: True, connect=("127.0.0.1", 9), zeek_version="8.2.2")
    ZeekBrokerClient(lambda b, a=None: True, connect=("127.0.0.1", 9), zeek_version="3.2.4")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )


def test_override_and_zeek_config_win_over_an_importable_broker(tmp_path: Path) -> None:
    """`broker` is importable in this venv (Debian's, linked in), yet the override directory,
    then zeek-config's, is what gets loaded; an unusable override is an error, not a fallback."""
    zeek_dir = tmp_path / "zeek-python"
    zeek_dir.mkdir()
    (zeek_dir / "broker").symlink_to(Path(broker.__file__).parent)
    fake = tmp_path / "zeek-config"
    fake.write_text(f'#!/bin/sh\n[ "$1" = --python_dir ] && echo {zeek_dir}\n')
    fake.chmod(0o755)
    code = f"""
import importlib.util, sys
assert importlib.util.find_spec("broker") is not None  # importable without any help
from netanomd.errors import TransportError
from netanomd.zeek import binding
b = binding.load_broker(zeek_config={str(fake)!r}, env={{}})
print(b.__file__)
del sys.modules["broker"]
b = binding.load_broker(zeek_config={str(fake)!r}, env={{"{binding.ENV_DIR}": {str(zeek_dir)!r}}})
print(b.__file__)
del sys.modules["broker"]
try:
    binding.load_broker(env={{"{binding.ENV_DIR}": {str(tmp_path)!r}}})
except TransportError as e:
    print("refused:", e)
"""
    out = _python(code)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(str(zeek_dir)) and lines[1].startswith(str(zeek_dir))
    assert lines[2].startswith(f"refused: {binding.ENV_DIR}={tmp_path}")
