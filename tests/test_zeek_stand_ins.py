"""The btests' daemon stand-ins (``zeek-tests/Scripts``) against real peers playing Zeek.

Zeek itself is not installable here, so a real Broker endpoint (Debian's Broker 1.4) and the
in-repo WebSocket peer (``tests/zeek_ws_server.py``) do what the Zeek package does on the wire:
publish ``NetAnom::flows`` and ``NetAnom::drain`` built in ``api.zeek``'s argument order (parsed
from the script, not taken from netanomd's mirror) and decode what comes back in that order.
Each stand-in must answer every flow with a verdict for the same connection and the drain
with ``drained``, then exit once Zeek is gone. A stand-in that disagrees with ``api.zeek``
fails here, in CI, as the last test shows with a stand-in reading a tampered contract.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from netanomd.flow import FlowBatch
from netanomd.zeek import api, binding, brokerjson, brokerpy
from tests.test_zeek_scripts import api_zeek_specs
from tests.waiting import wait
from tests.zeek_wire import flow_values
from tests.zeek_ws_server import FakeZeek

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "zeek-tests" / "Scripts"
SPECS = api_zeek_specs()
FLOWS, DRAIN = SPECS[api.FLOWS.name], SPECS[api.DRAIN.name]
VERDICT, DRAINED = SPECS[api.VERDICT.name], SPECS[api.DRAINED.name]


def expect_echo(batch: FlowBatch, verdicts: list[dict[str, Any]]) -> None:
    """One verdict per flow, in order, naming that flow's connection."""
    sent = flow_values(batch)
    assert [v["uid"] for v in verdicts] == sent["uid"]
    for i, v in enumerate(verdicts):
        for key in ("orig_h", "orig_p", "resp_h", "resp_p"):
            want = sent[key][i]
            if key.endswith("_p"):
                want = (want[0], want[1] if want[1] in ("tcp", "udp", "icmp") else "?")
            assert v[key] == want, (key, i)
        assert v["contract"] == api.VERSION and v["model"] == "btest"


def recorded_uids(cwd: Path) -> list[str]:
    return [line.split()[0] for line in (cwd / "flows.txt").read_text().splitlines()]


def test_broker_stand_in(remcos: FlowBatch, tmp_path: Path) -> None:
    broker = binding.load_broker()
    bindings = tmp_path / "bindings"  # only `broker` importable, as from zeek-config
    bindings.mkdir()
    (bindings / "broker").symlink_to(Path(broker.__file__).parent)
    batch = remcos.slice(0, 9)
    ep = broker.Endpoint()
    proc = None
    try:
        sub = ep.make_subscriber(api.VERDICTS_TOPIC)
        status = ep.make_status_subscriber(True)
        port = ep.listen("127.0.0.1", 0)
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPTS / "daemon-peer.py"), f"{port}/tcp", "20"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(bindings)},
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 20
        while not any(
            getattr(s, "code", lambda: None)() == broker.SC.PeerAdded for s in status.poll()
        ):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
            time.sleep(0.05)
        time.sleep(0.3)  # subscriptions propagate
        for part in (batch.slice(0, 5), batch.slice(5)):
            ep.publish(
                api.FLOWS_TOPIC + "/0", brokerpy.encode_event(broker, FLOWS, flow_values(part))
            )
        ep.publish(api.FLOWS_TOPIC + "/0", brokerpy.encode_event(broker, DRAIN, {"token": 0}))
        got: list[tuple[str, dict[str, Any]]] = []
        while len(got) < 10 and time.monotonic() < deadline + 10:
            msg = sub.get(0.2)
            if msg is not None:
                name, args = brokerpy.parse_event(msg[1])
                got.append((name, brokerpy.decode_event(SPECS[name], args)))
    finally:
        ep.shutdown()  # Zeek goes away: the stand-in exits
    assert proc is not None
    assert proc.wait(20) == 0, proc.stderr.read() if proc.stderr else ""
    assert [n for n, _ in got] == [api.VERDICT.name] * 9 + [api.DRAINED.name]
    expect_echo(batch, [v for _, v in got[:9]])
    assert got[9][1] == {"contract": api.VERSION, "token": 0}
    assert recorded_uids(tmp_path) == batch.column("uid").to_pylist()


def run_ws_stand_in(batch: FlowBatch, scripts: Path, cwd: Path) -> list[dict[str, Any]]:
    """Run ``scripts/daemon-ws.py`` against the in-repo WebSocket peer; the decoded events it
    sent back, the answer to the drain last."""
    zeek = FakeZeek()
    zeek.start()
    proc = subprocess.Popen(
        [sys.executable, str(scripts / "daemon-ws.py"), f"{zeek.port}/tcp", "20"],
        cwd=cwd,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait(lambda: len(zeek.clients) == 1 or proc.poll() is not None)
        assert proc.poll() is None, proc.stderr
        for part in (batch.slice(0, 5), batch.slice(5)):
            zeek.publish(brokerjson.encode_event(FLOWS, flow_values(part), api.FLOWS_TOPIC + "/0"))
        zeek.publish(brokerjson.encode_event(DRAIN, {"token": 7}, api.FLOWS_TOPIC + "/0"))
        wait(lambda: len(zeek.received) + len(zeek.errors_sent) == len(batch) + 1)
    finally:
        zeek.stop()  # Zeek terminates: the stand-in exits
    assert proc.wait(20) == 0, proc.stderr.read() if proc.stderr else ""
    assert not zeek.errors_sent  # Zeek would have created every event
    out = []
    for msg in zeek.received:
        _, name, args = brokerjson.parse_event(orjson.loads(orjson.dumps(msg)))
        out.append({"name": name, **brokerjson.decode_event(SPECS[name], args)})
    return out


def test_websocket_stand_in(remcos: FlowBatch, tmp_path: Path) -> None:
    batch = remcos.slice(0, 9)
    got = run_ws_stand_in(batch, SCRIPTS, tmp_path)
    assert [v.pop("name") for v in got] == [api.VERDICT.name] * 9 + [api.DRAINED.name]
    expect_echo(batch, got[:9])
    assert got[9] == {"contract": api.VERSION, "token": 7}
    assert recorded_uids(tmp_path) == batch.column("uid").to_pylist()


def test_a_stand_in_that_disagrees_with_api_zeek_fails(remcos: FlowBatch, tmp_path: Path) -> None:
    """The check above can fail: the stand-in run on a contract whose verdict swaps the two
    addresses (both still addresses, so Zeek would create the event) answers wrongly."""
    tree = tmp_path / "tree"
    shutil.copytree(SCRIPTS, tree / "zeek-tests" / "Scripts")
    (tree / "netanomd" / "zeek").mkdir(parents=True)
    source = (REPO / "netanomd/zeek/api.py").read_text()
    swapped = source.replace('("orig_h", "addr"),', '("tmp", "addr"),')
    swapped = swapped.replace('("resp_h", "addr"),', '("orig_h", "addr"),')
    swapped = swapped.replace('("tmp", "addr"),', '("resp_h", "addr"),')
    assert swapped != source
    (tree / "netanomd/zeek/api.py").write_text(swapped)
    batch = remcos.slice(0, 9)
    got = run_ws_stand_in(batch, tree / "zeek-tests" / "Scripts", tmp_path)
    with pytest.raises(AssertionError):
        expect_echo(batch, [v for v in got if v.pop("name") == api.VERDICT.name])
