"""Broker WebSocket JSON: the documented encoding, the contract's messages, malformed frames."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import orjson
import pytest

from netanomd.flow import FlowBatch
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches
from netanomd.zeek import api
from netanomd.zeek.brokerjson import (
    DecodeError,
    FlowsAccumulator,
    VersionError,
    columns_of,
    decode_event,
    encode_event,
    encode_timespan,
    flows_to_batch,
    loads,
    parse_event,
    timespan,
    timestamp,
)
from tests.zeek_wire import flows_message

DATA = Path(__file__).parent / "data"

# The VERIFIED example from the integration notes (a Zeek event with timestamp metadata).
EXAMPLE = (
    '{"type":"data-message","topic":"netsec/events","@data-type":"vector","data":['
    '{"@data-type":"count","data":1},{"@data-type":"count","data":1},'
    '{"@data-type":"vector","data":[{"@data-type":"string","data":"NetSec::flow_finished"},'
    '{"@data-type":"vector","data":[{"@data-type":"string","data":"CHhAvVGS1DHFjwGM9"},'
    '{"@data-type":"count","data":136},{"@data-type":"address","data":"141.142.228.5"},'
    '{"@data-type":"port","data":"80/tcp"},{"@data-type":"timespan","data":"211484us"}]},'
    '{"@data-type":"vector","data":[{"@data-type":"vector","data":[{"@data-type":"count",'
    '"data":1},{"@data-type":"timestamp","data":"2013-03-07T21:42:07.080"}]}]}]}]}'
)


def test_documented_example_with_metadata() -> None:
    topic, name, args = parse_event(loads(EXAMPLE))
    assert (topic, name, len(args)) == ("netsec/events", "NetSec::flow_finished", 5)
    assert timespan(args[4]["data"]) == pytest.approx(0.211484)


def test_values() -> None:
    assert [encode_timespan(x) for x in (0, 1.5, 0.211484, 60, 1e-9)] == [
        "0s",
        "1500ms",
        "211484us",
        "60s",
        "1ns",
    ]
    assert timespan("1500ms") == 1.5 and timespan("3min") == 180
    assert timestamp("2013-03-07T21:42:07.080") == pytest.approx(1362692527.08)


@pytest.fixture(scope="module")
def real_batch() -> FlowBatch:
    return FlowBatch.concat(
        list(read_batches([DATA / "zeek/ssh_sshguess.json.conn.log"], ReadStats()))
    )


def test_flows_round_trip_on_real_flows(real_batch: FlowBatch) -> None:
    frame = orjson.dumps(flows_message(real_batch))
    topic, name, args = parse_event(loads(frame))
    assert (topic, name) == ("netanom/flows/0", api.FLOWS.name)
    back = flows_to_batch(args)
    assert len(back) == len(real_batch) == 15
    for col in (
        "uid",
        "orig_h",
        "orig_p",
        "resp_h",
        "resp_p",
        "proto",
        "conn_state",
        "history",
        "orig_bytes",
        "orig_ip_bytes",
        "resp_pkts",
        "community_id",
    ):
        assert back.column(col).to_pylist() == real_batch.column(col).to_pylist(), col
    # Timestamps travel as doubles (a Broker time would be cut to milliseconds), durations
    # exactly to the microsecond.
    assert back.column("ts").to_pylist() == real_batch.column("ts").to_pylist()
    assert any(t * 1000 != int(t * 1000) for t in back.column("ts").to_pylist())
    for a, b in zip(back.numeric("duration"), real_batch.numeric("duration"), strict=True):
        assert a == pytest.approx(b, abs=1e-6)


def test_two_element_event_is_accepted(real_batch: FlowBatch) -> None:
    msg = flows_message(real_batch)
    assert len(msg["data"][2]["data"]) == 2  # what Zeek 8.2 sends without metadata
    with_meta = copy.deepcopy(msg)
    with_meta["data"][2]["data"].append({"@data-type": "vector", "data": []})
    assert len(flows_to_batch(parse_event(with_meta)[2])) == 15


def _arg(msg: dict, name: str) -> dict:  # type: ignore[type-arg]
    """The wrapped argument ``name`` of a NetAnom::flows message, found by the declaration."""
    return msg["data"][2]["data"][1]["data"][api.FLOWS.position(name)]  # type: ignore[no-any-return]


def test_verdict_round_trip_follows_the_declaration() -> None:
    values = {
        "uid": "C1",
        "orig_h": "2001:db8::1",
        "orig_p": (5555, "tcp"),
        "resp_h": "10.0.0.2",
        "resp_p": (22, "tcp"),
        "score": 0.71,
        "threshold": 0.66,
        "model": "m1",
        "reason": "why",
    }
    msg = encode_event(api.VERDICT, values, api.VERDICTS_TOPIC)
    topic, name, args = parse_event(loads(orjson.dumps(msg)))
    assert (topic, name) == (api.VERDICTS_TOPIC, "NetAnom::verdict")
    assert [a["@data-type"] for a in args] == [api.BROKER_TYPES[t] for _, t in api.VERDICT.args]
    assert args[api.VERDICT.position("orig_p")]["data"] == "5555/tcp"
    assert decode_event(api.VERDICT, args) == {"contract": api.VERSION, **values}


def test_another_major_version_is_refused_with_a_clear_message(real_batch: FlowBatch) -> None:
    msg = flows_message(real_batch)
    _arg(msg, "contract")["data"] = "1.7"
    frame = orjson.dumps(msg)
    assert not FlowsAccumulator().add_frame(frame)
    speaks = re.escape(api.VERSION)
    with pytest.raises(VersionError, match=rf"contract 1\.7, this daemon speaks {speaks}.*upgrade"):
        columns_of(parse_event(loads(frame))[2])
    _arg(msg, "contract")["data"] = "2.9"  # same major: accepted
    assert len(flows_to_batch(parse_event(msg)[2])) == 15
    old = flows_message(real_batch)  # a 1.x package sent no version: uid vector first
    old["data"][2]["data"][1]["data"].pop(0)
    with pytest.raises(VersionError, match="carries no netanomd contract version"):
        flows_to_batch(parse_event(old)[2])


def test_malformed_frames_are_named(real_batch: FlowBatch) -> None:
    with pytest.raises(DecodeError, match="not JSON"):
        loads(b'{"type": "data-message", ')
    bad_type = flows_message(real_batch)
    _arg(bad_type, "uid")["data"][0]["@data-type"] = "count"
    with pytest.raises(DecodeError, match=r"uid\[0\]: expected string, got 'count'"):
        flows_to_batch(parse_event(bad_type)[2])
    short = flows_message(real_batch)
    short["data"][2]["data"][1]["data"].pop()
    with pytest.raises(DecodeError, match="expected 20 arguments, got 19"):
        flows_to_batch(parse_event(short)[2])
    ragged = flows_message(real_batch)
    _arg(ragged, "orig_p")["data"].pop()
    with pytest.raises(DecodeError, match="orig_p has 14 elements, not 15"):
        flows_to_batch(parse_event(ragged)[2])
    with pytest.raises(DecodeError, match="not a data-message"):
        parse_event({"type": "ack", "endpoint": "x", "version": "8.2.2"})


@pytest.mark.parametrize(
    ("arg", "index", "value", "message"),
    [
        ("orig_p", 4, "http/tcp", r"orig_p\[4\]: bad port 'http/tcp'"),
        ("resp_p", 2, "80", r"resp_p\[2\]: bad port '80'"),
        ("resp_p", 1, "80/sctp", r"resp_p\[1\]: bad port '80/sctp'"),
        ("duration", 3, "12 parsecs", r"duration\[3\]: bad timespan '12 parsecs'"),
        ("duration", 0, "5fortnights", r"duration\[0\]: bad timespan '5fortnights'"),
        ("orig_h", 6, "10.0.0.1; rm -rf /", r"orig_h\[6\]: bad address"),
        ("ts", 0, "yesterday", r"NetAnom::flows ts: "),
        ("orig_bytes", 0, "12", r"orig_bytes\[0\]: '12' is not a count from 0"),
    ],
)
def test_bad_values_are_named(
    real_batch: FlowBatch, arg: str, index: int, value: str, message: str
) -> None:
    msg = flows_message(real_batch)
    _arg(msg, arg)["data"][index]["data"] = value
    frame = orjson.dumps(msg)
    assert not FlowsAccumulator().add_frame(frame)  # the general path names it
    with pytest.raises(DecodeError, match=message):
        flows_to_batch(parse_event(loads(frame))[2])


def _both(frame: bytes) -> tuple[FlowBatch | None, FlowBatch]:
    """The frame's batch from the canonical-layout scanner (None when it does not take the
    frame) and from the general decoder."""
    acc = FlowsAccumulator()
    fast = acc.build() if acc.add_frame(frame) else None
    return fast, flows_to_batch(parse_event(loads(frame))[2])


def test_fast_path_gives_the_general_paths_table(real_batch: FlowBatch) -> None:
    """The scanner and the general decoder give identical tables on real flows; frames the
    scanner does not take (metadata element, another event, wrong types, other layouts, JSON
    escapes) are left to the general path, which decodes the valid ones."""
    msg = flows_message(real_batch)
    fast, slow = _both(orjson.dumps(msg))
    assert fast is not None and fast.table.equals(slow.table) and len(fast) == 15
    with_meta = copy.deepcopy(msg)
    with_meta["data"][2]["data"].append({"@data-type": "vector", "data": []})
    other = copy.deepcopy(msg)
    other["data"][2]["data"][0]["data"] = "NetAnom::other"
    wrong = copy.deepcopy(msg)
    _arg(wrong, "orig_bytes")["data"][0] = {"@data-type": "string", "data": "1"}
    for m in (with_meta, other, wrong):
        assert not FlowsAccumulator().add_frame(orjson.dumps(m))
    assert not FlowsAccumulator().add_frame(b"[")
    escaped = copy.deepcopy(msg)
    _arg(escaped, "uid")["data"][3]["data"] = 'C"q\\é\u0001'
    _arg(escaped, "service")["data"][0]["data"] = "ünï"
    spaced = orjson.dumps(msg, option=orjson.OPT_INDENT_2)
    reordered = orjson.dumps({k: msg[k] for k in ("topic", "type", "data", "@data-type")})
    for frame in (orjson.dumps(escaped), spaced, reordered):
        fast, slow = _both(frame)
        assert fast is None and len(slow) == 15
    assert _both(orjson.dumps(escaped))[1].column("uid")[3].as_py() == 'C"q\\é\u0001'


@pytest.mark.parametrize(
    ("arg", "values"),
    [
        ("ts", [0, -1.5, 1e-7, 1.7e9, 2.5e-320, 1362692527.0800001, 1e300, 123456789.123456789]),
        ("duration", ["-3s", "0ns", "7min", "2h", "1d", "999999999999999999us", "-0ms"]),
        ("orig_p", ["0/tcp", "65535/udp", "00080/icmp", "7/unknown", "9/?"]),
        ("resp_h", ["2001:DB8::1", "::ffff:10.0.0.1", "FE80:0:0:0:0:0:0:1", "10.1.2.3"]),
        ("orig_bytes", [0, 2**53, 7, 10**15]),
        ("history", ["", "ShADadFf", "~!#$%&'()*+,-./:;<=>?@[]^_`{|}"]),
    ],
)
def test_fast_path_takes_edge_values_as_the_general_path_does(
    real_batch: FlowBatch, arg: str, values: list[object]
) -> None:
    msg = flows_message(real_batch)
    kind = _arg(msg, arg)["data"][0]["@data-type"]
    for i, v in enumerate(values):
        _arg(msg, arg)["data"][i] = {"@data-type": kind, "data": v}
    fast, slow = _both(orjson.dumps(msg))
    assert fast is not None and fast.table.equals(slow.table), arg
    assert [x for x in fast.column(arg).to_pylist()[: len(values)] if x is not None]


@pytest.mark.parametrize(
    ("arg", "value", "message"),
    [
        ("orig_bytes", 2**53 + 1, r"orig_bytes\[2\]: 9007199254740993 is not a count from 0"),
        ("orig_bytes", -1, r"orig_bytes\[2\]: -1 is not a count"),
        ("orig_p", "65536/tcp", r"orig_p\[2\]: bad port '65536/tcp'"),
        ("orig_p", "123456/tcp", r"orig_p\[2\]: bad port"),
        ("orig_p", "80/tcp/x", r"orig_p\[2\]: bad port"),
        ("duration", "1234567890123456789s", r"duration\[2\]: bad timespan"),
        ("duration", "5S", r"duration\[2\]: bad timespan '5S'"),
        ("duration", "--5s", r"duration\[2\]: bad timespan"),
        ("resp_h", "", r"resp_h\[2\]: bad address ''"),
        ("resp_h", "10.0.0.1 ", r"resp_h\[2\]: bad address"),
    ],
)
def test_values_the_fast_path_refuses_are_named_by_the_general_path(
    real_batch: FlowBatch, arg: str, value: object, message: str
) -> None:
    msg = flows_message(real_batch)
    _arg(msg, arg)["data"][2]["data"] = value
    frame = orjson.dumps(msg)
    assert not FlowsAccumulator().add_frame(frame)
    with pytest.raises(DecodeError, match=message):
        flows_to_batch(parse_event(loads(frame))[2])


def _with_ts(batch: FlowBatch, number: bytes) -> bytes:
    """The batch's frame with ``number`` written for its first timestamp."""
    frame = orjson.dumps(flows_message(batch))
    ts = _arg(flows_message(batch), "ts")["data"][0]["data"]
    out = frame.replace(orjson.dumps(ts), number, 1)
    assert out != frame
    return out


@pytest.mark.parametrize(
    "number", [b"1e400", b"-1E+309", b"01", b"1.", b".5", b"1e", b"+1", b"NaN", b"9007199254740993"]
)
def test_numbers_beyond_a_double_or_not_json_are_left_to_the_general_path(
    real_batch: FlowBatch, number: bytes
) -> None:
    bad = _with_ts(real_batch, number)
    assert not FlowsAccumulator().add_frame(bad)
    with pytest.raises(DecodeError):
        flows_to_batch(parse_event(loads(bad))[2])


@pytest.mark.parametrize(
    ("number", "taken", "value"),
    [
        (b"-0", False, "0.0"),
        (b"-0.0", True, "-0.0"),
        (b"9007199254740992", False, "9007199254740992.0"),
        (b"123456789012345", True, "123456789012345.0"),
    ],
)
def test_json_integers_for_a_double_give_what_the_general_path_gives(
    real_batch: FlowBatch, number: bytes, taken: bool, value: str
) -> None:
    """The general path reads a JSON integer as an integer (``-0`` is 0, and one that is not
    a double exactly is refused): the scanner takes only the integers that cannot differ."""
    fast, slow = _both(_with_ts(real_batch, number))
    assert str(slow.column("ts")[0].as_py()) == value
    assert (fast is not None) == taken
    if fast is not None:  # (the tables' equality does not tell -0.0 from 0.0)
        assert fast.table.equals(slow.table) and str(fast.column("ts")[0].as_py()) == value


def test_accumulator_keeps_arrival_order_across_paths_and_grows(real_batch: FlowBatch) -> None:
    """Frames the scanner takes and events the general path decodes, mixed in one batch,
    come out in the order they arrived, past the buffers' first size; the accumulator is
    empty after a build and takes the next batch."""
    frames = [orjson.dumps(flows_message(real_batch.slice(i, 5))) for i in range(0, 15, 5)]
    acc = FlowsAccumulator(rows=4)
    general = []
    for _ in range(3):
        for i, frame in enumerate(frames):
            if i == 1:
                acc.add(parse_event(loads(frame))[2])
            else:
                assert acc.add_frame(frame)
            general.append(flows_to_batch(parse_event(loads(frame))[2]))
    assert len(acc) == 45 and acc.events == 9
    batch = acc.build()
    assert batch.table.equals(FlowBatch.concat(general).table)
    assert batch.column("uid").to_pylist() == real_batch.column("uid").to_pylist() * 3
    assert len(acc) == 0 and len(acc.build()) == 0
    assert acc.add_frame(frames[0]) and acc.build().table.equals(general[0].table)
