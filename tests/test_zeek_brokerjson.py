"""Broker WebSocket JSON: the documented encoding, the contract's messages, malformed frames."""

from __future__ import annotations

import copy
from pathlib import Path

import orjson
import pytest

from netanomd.flow import FlowBatch
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches
from netanomd.zeek import api
from netanomd.zeek.brokerjson import (
    DecodeError,
    columns_of,
    encode_timespan,
    fast_flows_columns,
    flows_message,
    flows_to_batch,
    loads,
    parse_event,
    timespan,
    timestamp,
    verdict_message,
)

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
    # Timestamps travel with millisecond precision, durations exactly to the microsecond.
    for a, b in zip(back.numeric("ts"), real_batch.numeric("ts"), strict=True):
        assert a == pytest.approx(b, abs=1e-3)
    for a, b in zip(back.numeric("duration"), real_batch.numeric("duration"), strict=True):
        assert a == pytest.approx(b, abs=1e-6)


def test_two_element_event_is_accepted(real_batch: FlowBatch) -> None:
    msg = flows_message(real_batch)
    assert len(msg["data"][2]["data"]) == 2  # what Zeek 8.2 sends without metadata
    with_meta = copy.deepcopy(msg)
    with_meta["data"][2]["data"].append({"@data-type": "vector", "data": []})
    assert len(flows_to_batch(parse_event(with_meta)[2])) == 15


def test_verdict_message_shape() -> None:
    msg = verdict_message("C1", "10.0.0.1", 5555, "10.0.0.2", 22, "tcp", 0.71, 0.66, "m1", "why")
    topic, name, args = parse_event(msg)
    assert (topic, name) == (api.VERDICTS_TOPIC, "NetAnom::verdict")
    kinds = [a["@data-type"] for a in args]
    zeek_to_broker = {"string": "string", "addr": "address", "port": "port", "double": "real"}
    assert kinds == [zeek_to_broker[t] for _, t in api.VERDICT.args]
    assert args[2]["data"] == "5555/tcp"


def test_malformed_frames_are_named(real_batch: FlowBatch) -> None:
    with pytest.raises(DecodeError, match="not JSON"):
        loads(b'{"type": "data-message", ')
    bad_type = flows_message(real_batch)
    bad_type["data"][2]["data"][1]["data"][0]["data"][0]["@data-type"] = "count"
    with pytest.raises(DecodeError, match=r"uid\[0\]: expected string, got 'count'"):
        flows_to_batch(parse_event(bad_type)[2])
    short = flows_message(real_batch)
    short["data"][2]["data"][1]["data"].pop()
    with pytest.raises(DecodeError, match="expected 19 arguments, got 18"):
        flows_to_batch(parse_event(short)[2])
    ragged = flows_message(real_batch)
    ragged["data"][2]["data"][1]["data"][3]["data"].pop()
    with pytest.raises(DecodeError, match="orig_p has 14 elements, not 15"):
        flows_to_batch(parse_event(ragged)[2])
    with pytest.raises(DecodeError, match="not a data-message"):
        parse_event({"type": "ack", "endpoint": "x", "version": "8.2.2"})


@pytest.mark.parametrize(
    ("arg", "index", "value", "message"),
    [
        (3, 4, "http/tcp", r"orig_p\[4\]: bad port 'http/tcp'"),
        (5, 2, "80", r"resp_p\[2\]: bad port '80'"),
        (5, 1, "80/sctp", r"resp_p\[1\]: bad port '80/sctp'"),
        (8, 3, "12 parsecs", r"duration\[3\]: bad timespan '12 parsecs'"),
        (8, 0, "5fortnights", r"duration\[0\]: bad timespan '5fortnights'"),
        (2, 6, "10.0.0.1; rm -rf /", r"orig_h\[6\]: bad address"),
        (1, 0, "yesterday", r"NetAnom::flows ts: "),
        (9, 0, "12", r"orig_bytes\[0\]: expected count|orig_bytes: "),
    ],
)
def test_bad_values_are_named(
    real_batch: FlowBatch, arg: int, index: int, value: str, message: str
) -> None:
    msg = flows_message(real_batch)
    msg["data"][2]["data"][1]["data"][arg]["data"][index]["data"] = value
    frame = orjson.dumps(msg)
    assert fast_flows_columns(frame) is not None or arg == 9  # type-valid: fast path takes it
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
    wrong["data"][2]["data"][1]["data"][9]["data"][0] = {"@data-type": "string", "data": "1"}
    for m in (with_meta, other, wrong):
        assert fast_flows_columns(orjson.dumps(m)) is None
    assert fast_flows_columns(b"[") is None
