"""Watching an interface for real (issue 20, "Live"): a network namespace pair the test makes,
joined by a veth pair whose only addresses are inside it (10.231.0.1/30 and 10.231.0.2/30, no
other route); Suricata 7 in af-packet mode on the sensor's end with netanomd's live
configuration, writing EVE to a running ``netanomd run``'s stream socket; shared attack captures
replayed onto the other end with tcpreplay (their frames cross only the veth link); and the
incidents in the daemon's SQLite database naming the attacks. The namespaces go away even when
the test fails."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from netanomd.data import demo_model
from netanomd.errors import SensorError
from netanomd.sensors.suricata import Suricata, render_live
from tests.conftest import free_port
from tests.waiting import wait

PCAPS = Path(__file__).parent / "data" / "pcaps"
SURICATA = shutil.which("suricata") or "/usr/bin/suricata"
TAP, SENSOR = "veth-tap", "veth-sensor"  # the link's two ends, each in its own namespace

#: The captures replayed, one after the other, and what the incidents must say.
ATTACKS = [
    ("malicious-ssh-bruteforce.pcap", "brute force", "147.32.80.40 opened 67 connections"),
    ("nmap-vsn.pcap", "horizontal scan", "192.168.1.71 sent lone SYNs"),
]


def ip(*args: str) -> str:
    out = subprocess.run(["ip", *args], capture_output=True, text=True)
    assert out.returncode == 0, f"ip {' '.join(args)}: {out.stderr.strip()}"
    return out.stdout


def namespaces() -> set[str]:
    return {line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()}


@contextmanager
def namespace_pair(tag: str) -> Iterator[tuple[str, str]]:
    """Two namespaces (the tap's, the sensor's) joined by a veth pair, IPv6 off so that the
    link carries only what is replayed, no forwarding; both removed on the way out, whatever
    happened."""
    pair = (f"netanomd-{tag}-{os.getpid()}-tap", f"netanomd-{tag}-{os.getpid()}-sensor")
    try:
        for ns in pair:
            ip("netns", "add", ns)
            ip("netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            ip("netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
            ip("netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=0")  # may be inherited
        ip(
            "link",
            "add",
            "name",
            TAP,
            "netns",
            pair[0],
            "type",
            "veth",
            "peer",
            "name",
            SENSOR,
            "netns",
            pair[1],
        )
        for ns, dev, addr in [(pair[0], TAP, "10.231.0.1/30"), (pair[1], SENSOR, "10.231.0.2/30")]:
            ip("-n", ns, "addr", "add", addr, "dev", dev)
            # jumbo frames: a capture taken where the card merged segments (GRO, TSO) holds
            # frames bigger than 1500 bytes, which a link of the usual MTU refuses to send
            ip("-n", ns, "link", "set", dev, "mtu", "9000", "up")
        yield pair
    finally:
        for ns in pair:
            if ns in namespaces():
                subprocess.run(["ip", "netns", "del", ns], check=False)


def routes(ns: str) -> list[str]:
    return sorted(
        r["dst"]
        for r in json.loads(ip("-j", "-n", ns, "route", "show", "table", "all"))
        if r.get("type", "unicast") == "unicast"
    )


def test_the_namespace_pair_is_closed_and_goes_away_on_failure() -> None:
    """Each end has its /30 and nothing else: no route out, no forwarding. An exception in the
    middle still removes both namespaces (and the veth pair with them)."""
    with pytest.raises(RuntimeError, match="boom"), namespace_pair("closed") as pair:
        assert pair[0] in namespaces() and pair[1] in namespaces()
        for ns in pair:
            assert routes(ns) == ["10.231.0.0/30"], ip("-n", ns, "route", "show", "table", "all")
            forwarding = ip("netns", "exec", ns, "sysctl", "-n", "net.ipv4.ip_forward")
            assert forwarding.strip() == "0"
        raise RuntimeError("boom")
    assert not {*pair} & namespaces()


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    with namespace_pair("live") as names:
        yield names


def offline_flows(capture: Path, log_dir: Path) -> list[dict[str, Any]]:
    """The flow events Suricata writes for ``capture`` read as a file: what the link must give."""
    eve = Suricata(SURICATA, rules=[]).read(capture, log_dir)
    return [
        ev for ev in map(json.loads, eve.read_text().splitlines()) if ev["event_type"] == "flow"
    ]


def span_of(flows: list[dict[str, Any]]) -> float:
    """Seconds from the first flow's start to the last flow's end."""
    times = [
        datetime.strptime(f["flow"][k], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
        for f in flows
        for k in ("start", "end")
    ]
    return max(times) - min(times)


def clear_of_a_minute_edge(seconds: float) -> None:
    """Wait, when needed, so that a replay lasting ``seconds`` ends within the wall-clock minute
    it starts in. Replayed frames carry the time they cross the link, and the host windows
    (1, 10 and 60 minutes) are aligned on minutes: a short attack replayed across an edge is cut
    in two windows, each holding part of it (a 2-second scan: about one run in 30), which its
    original capture times do not do."""
    need = seconds + 3.0
    left = 60.0 - time.time() % 60.0
    if need < 60.0 and left < need:
        time.sleep(left + 0.5)


class Notify:
    """The NOTIFY_SOCKET a daemon reports READY=1 on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def ready(self) -> bool:
        with suppress(TimeoutError):
            self.messages.append(self.sock.recv(4096).decode())
        return any(m.startswith("READY=1") for m in self.messages)


def received(port: int) -> int:
    """Flows the daemon received from its Suricata socket (its /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    got = re.search(
        r'^netanomd_flows_received_total\{source="suricata_socket\[0\]"\} (\S+)$', text, re.M
    )
    return int(float(got.group(1))) if got else 0


def test_suricata_on_an_interface_feeds_the_daemon_and_incidents_name_the_attacks(
    tmp_path: Path, pair: tuple[str, str]
) -> None:
    tap, sensor = pair
    expected = {
        name: offline_flows(PCAPS / name, tmp_path / "offline" / name) for name, *_ in ATTACKS
    }
    total = sum(map(len, expected.values()))
    # Flows that ended (FIN, RST) time out of Suricata's table within seconds; the rest (a
    # lone SYN, a UDP exchange) only after a minute or more, or when Suricata stops.
    ended = sum(f["flow"]["state"] == "closed" for flows in expected.values() for f in flows)

    # The frames as they were on the wire: the SSH capture was taken on a host whose card
    # filled in checksums on send (offloading), so its own packets carry unfinished ones.
    wire = {name: tmp_path / name for name, *_ in ATTACKS}
    for name, path in wire.items():
        subprocess.run(
            ["tcprewrite", "--fixcsum", f"--infile={PCAPS / name}", f"--outfile={path}"],
            check=True,
        )
    model = tmp_path / "model.npz"
    demo_model().save(model)
    sock = tmp_path / "eve.sock"
    port = free_port()
    config = {
        "model": {"path": str(model), "reload_check_seconds": 0},
        "sources": [{"type": "suricata_socket", "path": str(sock), "kind": "stream"}],
        "sinks": {
            "sqlite": {"path": str(tmp_path / "alerts.db")},
            "metrics": {"listen": f"127.0.0.1:{port}"},
            "zeek_notice": {"enabled": False},
        },
        "state_dir": str(tmp_path / "state"),
    }
    (tmp_path / "netanomd.yaml").write_text(json.dumps(config))  # JSON is YAML
    notify = Notify(tmp_path / "notify.sock")
    daemon_out = (tmp_path / "daemon.out").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "netanomd", "run", "-c", str(tmp_path / "netanomd.yaml")],
        env={**os.environ, "NOTIFY_SOCKET": str(notify.path)},
        stdout=daemon_out,
        stderr=subprocess.STDOUT,
    )
    suricata: subprocess.Popen[bytes] | None = None
    try:
        wait(lambda: notify.ready() or daemon.poll() is not None, 120, "the daemon's READY=1")
        assert daemon.poll() is None, (tmp_path / "daemon.out").read_text()
        notify.sock.close()  # unread, its queue (10 datagrams) would fill and block the daemon
        suricata = Suricata(SURICATA, rules=[]).watch(
            SENSOR, sock, tmp_path / "suricata", ["ip", "netns", "exec", sensor]
        )
        packets = 0
        for name, *_ in ATTACKS:  # at the captures' own pace
            clear_of_a_minute_edge(span_of(expected[name]))
            out = subprocess.run(
                ["ip", "netns", "exec", tap, "tcpreplay", "-i", TAP, str(wire[name])],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert out.returncode == 0, out.stdout + out.stderr
            sent = re.search(r"Successful packets:\s+(\d+)", out.stdout)
            assert sent and re.search(r"Failed packets:\s+0\n", out.stdout), out.stdout
            packets += int(sent.group(1))
        wait(lambda: received(port) >= ended, 90, "the ended flows to time out into the daemon")
        suricata.send_signal(signal.SIGTERM)  # it logs the flows still open
        assert suricata.wait(60) == 0
        console = (tmp_path / "suricata" / "suricata.out").read_text()
        # Every replayed frame was captured, none dropped, no checksum called bad.
        assert f"{SENSOR}: packets: {packets}, drops: 0 (0.00%), invalid chksum: 0" in console, (
            console
        )
        wait(lambda: received(port) == total, 30, "every flow in the daemon")
        daemon.send_signal(signal.SIGTERM)  # closes the incidents and writes them
        assert daemon.wait(60) == 0, (tmp_path / "daemon.out").read_text()
    finally:
        for proc in (suricata, daemon):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        daemon_out.close()
    with sqlite3.connect(tmp_path / "alerts.db") as db:
        rows = db.execute("SELECT behaviour, title, flows, community_ids FROM incidents").fetchall()
    # One incident per attack, holding all of its connections, and they are the connections
    # Suricata finds reading the capture from file: the same Community IDs.
    assert len(rows) == len(ATTACKS), rows
    for name, behaviour, who in ATTACKS:
        ids = {f["community_id"] for f in expected[name]}
        found = [r for r in rows if r[0] == behaviour and who in r[1]]
        assert len(found) == 1, (name, rows)
        _, _, flows, sample = found[0]
        assert flows == len(expected[name]) and set(json.loads(sample)) <= ids, (name, found)


def test_watching_an_interface_that_is_not_there_fails_naming_it(
    tmp_path: Path, pair: tuple[str, str]
) -> None:
    """Suricata's own words on why it could not capture, in the error."""
    why = r"(?s)did not start watching eth9 .*eth9: failed to find interface: No such device"
    with pytest.raises(SensorError, match=why):
        Suricata(SURICATA, rules=[]).watch(
            "eth9", tmp_path / "eve.sock", tmp_path / "s", ["ip", "netns", "exec", pair[1]]
        )
    with pytest.raises(SensorError, match="is not an interface name"):
        render_live("eth0 --x", tmp_path / "eve.sock")
