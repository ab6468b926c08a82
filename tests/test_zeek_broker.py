"""The native Broker transport against real Broker (Debian's python3-broker, Broker 1.4).

A second Broker endpoint in the test plays Zeek: it publishes ``NetAnom::flows`` batches
exactly as ``api.zeek`` declares them (real Broker values on the wire) and subscribes to the
verdict topic, as the Zeek package does. Both directions of peering are exercised (the daemon
peers with Zeek; Zeek peers with a listening daemon), plus malformed messages and a peer loss.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from netanomd.decision import Alert
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.sinks.zeek_notice import ZeekNoticeSink
from netanomd.sources import Ack
from netanomd.sources.zeek_broker import ZeekBrokerClient, parse_hostport
from netanomd.zeek import api, binding
from netanomd.zeek.brokerpy import decode_event, flows_to_batch, parse_event
from tests.waiting import wait
from tests.zeek_wire import flows_event

broker = binding.load_broker()


@pytest.fixture(scope="module")
def model(demo: Model) -> Model:
    demo.reset()
    return demo


class Zeek:
    """A real Broker endpoint doing what the Zeek package does on the wire."""

    def __init__(self) -> None:
        self.ep = broker.Endpoint()
        self.verdicts = self.ep.make_subscriber(api.VERDICTS_TOPIC)
        self.status = self.ep.make_status_subscriber(True)

    def listen(self) -> int:
        return int(self.ep.listen("127.0.0.1", 0))

    def publish(self, batch: FlowBatch, shard: int = 0, size: int = 100) -> None:
        for off in range(0, len(batch), size):
            event = flows_event(broker, batch.slice(off, size))
            self.ep.publish(f"{api.FLOWS_TOPIC}/{shard}", event)

    def received(self, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The next ``n`` verdicts' values, decoded from the declaration."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            msg = self.verdicts.get(0.2)
            if msg is not None:
                name, args = parse_event(msg[1])
                assert name == api.VERDICT.name
                out.append(decode_event(api.VERDICT, args))
        return out

    def peered(self) -> bool:
        return any(
            getattr(s, "code", lambda: None)() == broker.SC.PeerAdded for s in self.status.poll()
        )

    def close(self) -> None:
        self.ep.shutdown()


def start(client: ZeekBrokerClient) -> threading.Thread:
    t = threading.Thread(target=client.run, daemon=True)
    t.start()
    assert client.ready.wait(10)
    return t


def scorer(model: Model, sink: list[ZeekNoticeSink]) -> Callable[..., bool]:
    def emit(batch: FlowBatch, ack: Ack | None = None) -> bool:
        sink[0].write(model.run(batch)[1])
        if ack is not None:
            ack()
        return True

    return emit


def expected_alerts(model: Model, batch: FlowBatch) -> list[Alert]:
    """What the daemon sees is what crossed the wire (unset counts travel as 0)."""
    out: list[Alert] = []
    for off in range(0, len(batch), 100):
        event = flows_event(broker, batch.slice(off, 100))
        wire = flows_to_batch(parse_event(broker.Data.to_py(event.as_data()))[1])
        out += model.run(wire)[1]
    return out


@pytest.fixture()
def zeek() -> Iterator[Zeek]:
    z = Zeek()
    yield z
    z.close()


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports netanomd from this checkout."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )


def test_daemon_peers_with_zeek_and_answers_with_verdicts(
    zeek: Zeek, model: Model, remcos: FlowBatch
) -> None:
    port = zeek.listen()
    sinks: list[ZeekNoticeSink] = []
    client = ZeekBrokerClient(scorer(model, sinks), connect=("127.0.0.1", port), retry=0.2)
    sinks.append(ZeekNoticeSink(client))
    t = start(client)
    wait(lambda: client.connected)
    time.sleep(0.3)  # let subscriptions propagate before Zeek publishes
    zeek.publish(remcos)
    expected = expected_alerts(model, remcos)
    assert expected
    got = {v["uid"]: v for v in zeek.received(len(expected))}
    assert client.counters.flows == len(remcos) == 766 and client.counters.malformed == 0
    assert len(got) == len(expected)
    for a in expected:
        v = got[a.flow.uid]
        assert (v["orig_h"], v["resp_h"]) == (a.flow.orig_h, a.flow.resp_h)
        p = a.flow.proto
        assert (v["orig_p"], v["resp_p"]) == ((a.flow.orig_p, p), (a.flow.resp_p, p))
        assert v["score"] == pytest.approx(a.score) and v["threshold"] == a.threshold
        assert (v["model"], v["reason"], v["contract"]) == (a.model_id, a.reason, api.VERSION)
    client.stop()
    t.join(5)
    assert not t.is_alive()


def test_zeek_peers_with_listening_daemon_and_bad_messages_are_skipped(
    zeek: Zeek, model: Model, remcos: FlowBatch
) -> None:
    batches: list[FlowBatch] = []

    def keep(batch: FlowBatch, ack: Ack | None = None) -> bool:
        batches.append(batch)
        return True

    client = ZeekBrokerClient(keep, listen=("127.0.0.1", 0))
    t = start(client)
    assert client.port
    assert zeek.ep.peer("127.0.0.1", client.port, 1.0)
    wait(lambda: client.connected)
    time.sleep(0.3)
    topic = api.FLOWS_TOPIC + "/3"
    good = flows_event(broker, remcos.slice(0, 20))
    args = list(broker.Data.to_py(good.as_data())[2][1])
    zeek.ep.publish(topic, broker.zeek.Event("NetAnom::other", 1))  # unexpected event
    zeek.ep.publish(topic, broker.zeek.Event(api.FLOWS.name, *args[:-1]))  # argument missing
    bad_type = list(args)
    bad_type[api.FLOWS.position("orig_bytes")] = (*[broker.Count(0)] * 19, "x")  # not a count
    zeek.ep.publish(topic, broker.zeek.Event(api.FLOWS.name, *bad_type))
    zeek.ep.publish(topic, "not an event")
    zeek.ep.publish(topic, good)
    wait(lambda: client.counters.flows == 20)
    assert client.counters.malformed == 4 and client.counters.messages == 5
    got = batches[0]
    assert got.column("uid").to_pylist() == remcos.slice(0, 20).column("uid").to_pylist()
    assert got.column("resp_p").to_pylist() == remcos.slice(0, 20).column("resp_p").to_pylist()
    assert got.column("ts").to_pylist() == pytest.approx(
        remcos.slice(0, 20).column("ts").to_pylist()
    )
    zeek.close()  # Zeek goes away: the daemon notices, keeps running
    wait(lambda: client.counters.disconnects == 1 and not client.connected)
    client.stop()
    t.join(5)


def test_parse_hostport() -> None:
    assert parse_hostport("zeek.example:47761") == ("zeek.example", 47761)
    assert parse_hostport("[::1]:9999") == ("::1", 9999)
    assert parse_hostport("10.0.0.1") == ("10.0.0.1", 9999)


def test_bindings_loaded_without_exposing_dist_packages(tmp_path: Path) -> None:
    """From a bare interpreter state: found through zeek-config, only `broker` imported."""
    debian = os.path.dirname(os.path.dirname(broker.__file__))
    fake = tmp_path / "zeek-config"
    fake.write_text(f'#!/bin/sh\n[ "$1" = --python_dir ] && echo {os.path.realpath(debian)}\n')
    fake.chmod(0o755)
    code = f"""
import sys
sys.path[:] = [p for p in sys.path if "broker-bindings" not in p and "dist-packages" not in p]
from netanomd.zeek import binding
dirs = binding.candidate_dirs(env={{}}, zeek_config={str(fake)!r})
assert dirs[0] == {os.path.realpath(debian)!r}, dirs
b = binding.load_broker(dirs[:1])
assert b.__file__.startswith({os.path.realpath(debian)!r}), b.__file__
assert not any("dist-packages" in p for p in sys.path)
try:
    import apt_pkg  # Debian-only module next to broker
except ImportError:
    pass
else:
    raise SystemExit("dist-packages leaked")
with binding.endpoint(b) as ep:
    print(binding.version(b), type(ep).__name__)
"""
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0].startswith(("1.", "2."))


def test_missing_bindings_error_names_what_was_tried(tmp_path: Path) -> None:
    code = f"""
import sys
sys.path[:] = [p for p in sys.path if "broker-bindings" not in p and "dist-packages" not in p]
from netanomd.errors import TransportError
from netanomd.zeek import binding
try:
    binding.load_broker([{str(tmp_path)!r}])
except TransportError as e:
    print(e)
"""
    out = _python(code)
    assert str(tmp_path) in out.stdout and "python3-broker" in out.stdout, out.stderr


def test_zeek_listen_command_over_broker(
    zeek: Zeek, model: Model, remcos: FlowBatch, tmp_path: Path
) -> None:
    """`netanomd zeek listen --transport broker` prints flows with scores and sends verdicts."""
    model_path = tmp_path / "m.npz"
    model.save(model_path)
    port = zeek.listen()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "netanomd",
            "zeek",
            "listen",
            "--transport",
            "broker",
            "--connect",
            f"127.0.0.1:{port}",
            "--model",
            str(model_path),
            "--count",
            "100",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not zeek.peered():
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
            time.sleep(0.05)
        time.sleep(0.5)
        zeek.publish(remcos.slice(0, 100))
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 100 and all(" score=" in line for line in lines)
    anomalous = [line.split()[0] for line in lines if "ANOMALOUS:" in line]
    assert anomalous
    assert sorted(v["uid"] for v in zeek.received(len(anomalous))) == sorted(anomalous)
    assert "100 flows in 1 messages, 0 malformed" in err
