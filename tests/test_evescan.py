"""The EVE flow scanner (netanomd.sources.evescan) against the general decoder: the same
FlowBatch, the same skipped events and the same messages for bad lines, on every EVE capture
and on edge values of every field it reads; and it takes the flow events Suricata writes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from netanomd.sources import MAX_COUNT, ReadStats, evescan
from netanomd.sources.suricata_eve import eve_lines_to_batch
from tests.fuzz_targets import eve_disagreement

DATA = Path(__file__).parent / "data" / "eve"
#: The shared captures too where there are (``$SHARED_DATA``, as the benchmarks find them).
SHARED = Path(os.environ.get("SHARED_DATA", Path(__file__).parents[2] / "shared" / "data"))
CAPTURES = sorted(DATA.glob("*.json")) + sorted((SHARED / "suricata").glob("*.json"))


def _flow_lines(path: Path) -> list[bytes]:
    return [ln for ln in path.read_bytes().splitlines() if b'"event_type":"flow"' in ln]


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_captures_read_alike_and_every_flow_event_is_scanned(path: Path) -> None:
    lines = path.read_bytes().splitlines()
    for at in range(0, len(lines), 1000):
        assert eve_disagreement(lines[at : at + 1000]) is None
    flows = _flow_lines(path)
    assert flows, path
    assert evescan.scan(evescan.block_of_lines(flows)).lines.tolist() == list(range(len(flows)))
    taken = evescan.scan(
        evescan.block_of_lines(lines)
    ).lines.tolist()  # and nothing else: alerts, dns... are left
    assert [lines[i] for i in taken] == flows


def _base() -> dict[str, Any]:
    """A TCP flow event as Suricata 7 writes it (the sensor bench's layout)."""
    line = _flow_lines(DATA / "test6-malicious-head400.json")[0]
    ev: dict[str, Any] = json.loads(line)
    ev["community_id"] = "1:wG/o6Zb0nc+m0aE2n9JWzgd1QgQ="
    ev["app_proto"] = "http"
    ev["proto"] = "TCP"
    ev["tcp"] = {"tcp_flags": "1b", "tcp_flags_ts": "1b", "tcp_flags_tc": "1a", "syn": True}
    return ev


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, key = path.split(".")

    def edit(ev: dict[str, Any]) -> None:
        for p in parents:
            ev = ev[p]
        if value is _DROP:
            ev.pop(key, None)
        else:
            ev[key] = value

    return edit


_DROP = object()
_PORT_EDGES = [0, 65535, 65536, -1, 5.0, "80", None, True, 1e3, 0.5, "x", [], {}]
_COUNT_EDGES = [0, MAX_COUNT, MAX_COUNT + 1, -1, 2.0, "7", None, 10**19, 1e2]
_TIME_EDGES = [
    "2024-02-29T23:59:59.999999+0000",
    "2023-02-29T00:00:00.000000+0000",
    "2023-04-31T00:00:00.000000+0000",
    "2023-13-01T00:00:00.000000+0000",
    "2023-00-10T00:00:00.000000+0000",
    "2023-01-10T24:00:00.000000+0000",
    "2023-01-10T23:60:00.000000+0000",
    "2023-01-10T23:59:60.000000+0000",
    "1899-12-31T23:59:59.000000+0000",
    "1900-01-01T00:00:00.000000-1400",
    "2999-12-31T23:59:59.999999+1400",
    "3000-01-01T00:00:00.000000+0000",
    "2023-01-10T10:00:00.000000+1459",
    "2023-01-10T10:00:00.000000+1500",
    "2023-01-10T10:00:00.000000-0000",
    "2023-01-10T10:00:00.000000+2359",
    "2023-01-10T10:00:00.000000+0060",
    "2023-01-10T10:00:00.000000Z",
    "2023-01-10T10:00:00+0000",
    "2023-01-10 10:00:00.000000+0000",
    "2023-01-10T10:00:00.00000+00000",
    "0001-01-01T00:00:00.000000+0100",
    "\uff12\uff1023-01-10T10:00:00.000000+0000",  # full-width digits
    "",
    5,
    None,
]
_TEXT_EDGES: list[Any] = ["", 'a\\"b', "é", "tab\there", "\u2028", "x" * 300, None, 5, ["x"], {}]
_FLAG_EDGES = ["", "0", "ff", "FF", "0x1b", "1_b", " 1b", "zz", "f" * 15, "f" * 16, "-1", 27, None]

EDITS: list[tuple[str, Any]] = [
    *[("src_port", v) for v in _PORT_EDGES],
    *[("dest_port", v) for v in _PORT_EDGES],
    *[("icmp_type", v) for v in _PORT_EDGES],
    *[(f"flow.{c}", v) for c in ("pkts_toserver", "bytes_toclient") for v in _COUNT_EDGES],
    *[("flow_id", v) for v in [0, 2**63, 2**64 - 1, 2**64, 10**18 - 1, 10**18, -5, "12", None]],
    *[("flow.start", v) for v in _TIME_EDGES],
    *[("flow.end", v) for v in _TIME_EDGES[:8]],
    *[("timestamp", v) for v in _TIME_EDGES[-4:]],
    *[(f, v) for f in ("src_ip", "dest_ip", "proto", "app_proto", "label") for v in _TEXT_EDGES],
    *[("community_id", v) for v in _TEXT_EDGES],
    *[("event_type", v) for v in ["flow", "Flow", "dns", "alert", 5, None, ""]],
    *[(f"tcp.{f}", v) for f in ("tcp_flags", "tcp_flags_ts") for v in _FLAG_EDGES],
    *[("proto", v) for v in ["tcp", "Tcp", "UDP", "ICMP", "IPv6-ICMP", "tcpx"]],
    *[("app_proto", v) for v in ["failed", "FAILED", "dns"]],
    *[
        (f, _DROP)
        for f in (
            "src_port",
            "dest_port",
            "proto",
            "app_proto",
            "flow",
            "tcp",
            "flow.start",
            "flow.end",
            "flow.pkts_toserver",
            "tcp.tcp_flags_ts",
            "src_ip",
            "flow_id",
            "timestamp",
            "event_type",
        )
    ],
    ("flow", None),
    ("flow", []),
    ("tcp", None),
    ("tcp", "x"),
    ("tcp", {}),
    ("flow", {"start": "2023-01-10T10:00:00.000000+0000"}),
    ("metadata", {"flowbits": ["a", "b"], "flowints": {"x": 1}, "deep": [[[[]]]], "e": {}}),
    ("metadata", {"n": [1.5, -0.25, 0, -0, 1e5, 12345678901234567890, True, None]}),
    ("metadata", json.loads("[" * 40 + "]" * 40)),
    ("vlan", [10, 20]),
    ("in_iface", "eth0"),
    ("pkt_src", "wire/pcap"),
    ("host", "sensor-é"),
    ("flow.bypassed", {"pkts_toserver": 1, "bytes_toserver": 2}),
    ("flow.alerted", True),
    ("flow.age", 1.5),
]


#: Edits whose line the scanner takes (the rest may go either way, as long as both agree).
TAKEN: list[tuple[str, Any]] = [
    *[(f, v) for f in ("src_port", "dest_port", "icmp_type") for v in (0, 65535)],
    *[(f"flow.{c}", v) for c in ("pkts_toserver", "bytes_toclient") for v in (0, MAX_COUNT)],
    ("flow_id", 0),
    ("flow_id", 10**18 - 1),
    *[("flow.start", v) for v in _TIME_EDGES[:1] + _TIME_EDGES[9:11] + _TIME_EDGES[12:13]],
    ("flow.start", "2023-01-10T10:00:00.000000-0000"),
    *[("tcp.tcp_flags", v) for v in ("0", "ff", "FF", "f" * 15)],
    *[("proto", v) for v in ("tcp", "Tcp", "UDP", "ICMP", "IPv6-ICMP", "tcpx", "")],
    *[("app_proto", v) for v in ("failed", "FAILED", "dns", "")],
    *[
        (f, _DROP)
        for f in (
            "src_port",
            "dest_port",
            "proto",
            "app_proto",
            "tcp",
            "flow.end",
            "flow.pkts_toserver",
            "tcp.tcp_flags_ts",
            "timestamp",
        )
    ],
    ("tcp", {}),
    ("metadata", {"flowbits": ["a", "b"], "flowints": {"x": 1}, "deep": [[[[]]]], "e": {}}),
    ("vlan", [10, 20]),
    ("flow.bypassed", {"pkts_toserver": 1, "bytes_toserver": 2}),
    ("flow.age", 1.5),
]


def _line(edit: Callable[[dict[str, Any]], None], **dumps: Any) -> bytes:
    ev = _base()
    edit(ev)
    return json.dumps(ev, **dumps).encode()


@pytest.mark.parametrize(("field", "value"), EDITS, ids=lambda x: repr(x)[:40])
def test_edge_values_read_alike(field: str, value: Any) -> None:
    line = _line(_set(field, value), separators=(",", ":"))
    good = _line(lambda ev: None, separators=(",", ":"))
    assert eve_disagreement([line]) is None
    assert eve_disagreement([good, line, good]) is None
    if (field, value) in TAKEN:
        assert evescan.scan(evescan.block_of_lines([line])).lines.tolist() == [0]


def test_the_taken_edits_are_edits() -> None:
    assert all(edit in EDITS for edit in TAKEN)


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"   ",
        b"{}",
        b"[]",
        b"null",
        b"not json",
        b'{"event_type":"flow"',
        b'{"event_type":"flow"}}',
        b'{"event_type":"flow",}',
        b'{"event_type" "flow"}',
        b'{"event_type":"flow","flow_id":1}',
        b'{"event_type":"flow","event_type":"flow"}',
    ],
)
def test_broken_lines_read_alike(text: bytes) -> None:
    good = _line(lambda ev: None)
    assert eve_disagreement([text]) is None
    assert eve_disagreement([good, text, good]) is None


def test_layouts_the_scanner_takes() -> None:
    """Compact, re-encoded with spaces, pretty-printed on one line, keys in another order, a
    duplicate key in a skipped object, every optional key Suricata adds: all scanned, as the
    general decoder reads them."""
    ev = _base()
    ev.update(
        in_iface="eth0",
        vlan=[10],
        pkt_src="wire/pcap",
        metadata={"flowbits": ["x"]},
        community_id="1:abc=",
    )
    ev["flow"].update(bypassed={"pkts_toserver": 1}, alerted=True, state="closed")
    compact = json.dumps(ev, separators=(",", ":")).encode()
    lines = [
        compact,
        json.dumps(ev).encode(),
        b"  " + json.dumps(ev, indent=None, separators=(" , ", " : ")).encode() + b"\t\r",
        json.dumps(dict(reversed(list(ev.items())))).encode(),
        compact.replace(b'"metadata":{', b'"metadata":{"a":1,"a":2,'),
    ]
    assert evescan.scan(evescan.block_of_lines(lines)).lines.tolist() == list(range(len(lines)))
    assert eve_disagreement(lines) is None


def test_what_the_scanner_leaves_goes_to_the_general_decoder_in_line_order() -> None:
    """A block mixing scanned flows, flows the scanner leaves (an escape, a null), alerts,
    other events and a bad line: rows in line order, each line's problem named with its
    number."""
    flows = _flow_lines(DATA / "test6-malicious-head400.json")[:6]
    escaped = flows[1].replace(b'"event_type":"flow"', b'"event_type":"\\u0066low"')
    nulled = flows[3].replace(b'"proto":', b'"app_proto":null,"proto":')
    bad = flows[4].replace(b'"src_port":', b'"src_port":70000,"x":')
    block = [flows[0], escaped, b'{"event_type":"dns"}', flows[2], nulled, bad, flows[5]]
    assert evescan.scan(evescan.block_of_lines(block)).lines.tolist() == [0, 3, 6]
    stats = ReadStats()
    batch = eve_lines_to_batch(block, stats, "eve.json", 10)
    assert batch is not None
    ids = [json.loads(ln)["flow_id"] for ln in (flows[0], escaped, flows[2], nulled, flows[5])]
    assert batch.column("flow_id").to_pylist() == ids
    assert stats.skipped == {"dns": 1}
    assert len(stats.problems) == 1 and stats.problems[0].startswith("eve.json:15: ")
    assert "src_port" in stats.problems[0] and "70000" in stats.problems[0]
    assert eve_disagreement(block) is None


@pytest.mark.parametrize(
    "text",
    [b"", b"\n", b"a", b"a\n", b"a\r\nb", b"a\r\n\r\nb\n", b"\r\n", b"a\rb\n", b"\n\na\r"],
)
def test_text_is_cut_into_the_lines_a_line_splitter_makes(text: bytes) -> None:
    from netanomd.sources._text import LineSplitter

    splitter = LineSplitter()
    lines = splitter.feed(text) + splitter.finish()
    block = evescan.block_of_text(text)
    assert [block.line(k) for k in range(len(block))] == lines
    joined = evescan.block_of_lines(lines)
    assert [joined.line(k) for k in range(len(joined))] == lines


def test_text_reads_as_its_lines() -> None:
    from netanomd.sources.suricata_eve import eve_text_to_batch

    lines = (DATA / "test6-malicious-head400.json").read_bytes().splitlines()
    text = b"\r\n".join(lines[:150]) + b"\n" + b"\n".join(lines[150:])
    by_text, by_lines = ReadStats(), ReadStats()
    batch = eve_text_to_batch(text, by_text, "eve")
    assert batch is not None
    expected = eve_lines_to_batch(lines, by_lines, "eve")
    assert expected is not None and batch.table.equals(expected.table)
    assert by_text == by_lines
