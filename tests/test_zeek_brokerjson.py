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
    VersionError,
    columns_of,
    decode_event,
    encode_event,
    encode_timespan,
    fast_flows_columns,
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
    assert fast_flows_columns(frame) is None
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
    # type-valid values pass the fast path (Arrow checks them); mistyped ones do not
    assert (fast_flows_columns(frame) is None) == (arg in ("orig_bytes", "ts"))
    with pytest.raises(DecodeError, match=message):
        flows_to_batch(parse_event(loads(frame))[2])


def test_fast_path_matches_general_path(real_batch: FlowBatch) -> None:
    """The msgspec fast path and the general decoder give the same columns; frames the fast
    path does not take (metadata element, another event, wrong types) return None."""
    msg = flows_message(real_batch)
    frame = orjson.dumps(msg)
    assert fast_flows_columns(frame) == columns_of(parse_event(msg)[2])
    with_meta = copy.deepcopy(msg)
    with_meta["data"][2]["data"].append({"@data-type": "vector", "data": []})
    other = copy.deepcopy(msg)
    other["data"][2]["data"][0]["data"] = "NetAnom::other"
    wrong = copy.deepcopy(msg)
    _arg(wrong, "orig_bytes")["data"][0] = {"@data-type": "string", "data": "1"}
    for m in (with_meta, other, wrong):
        assert fast_flows_columns(orjson.dumps(m)) is None
    assert fast_flows_columns(b"[") is None
