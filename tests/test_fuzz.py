"""Fuzzing in CI: a short, bounded pass over every parser (the targets of
tests/fuzz_targets.py; ``benchmarks/fuzz.py`` runs the long passes), and every input a pass
found, kept as a regression test of the fix."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netanomd.config import load_config
from netanomd.daemon.score_api import score_json
from netanomd.errors import ConfigError, InputError
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.sources import MAX_COUNT, ReadStats
from netanomd.sources.formats import LineDecoder
from netanomd.sources.zeek_ws import ZeekWebSocketClient
from netanomd.zeek import brokerjson
from netanomd.zeek.brokerjson import DecodeError
from tests.fuzz_targets import (
    TARGETS,
    broker_seeds,
    check,
    cic_header,
    cic_seeds,
    eve_flow_seeds,
    mutate,
    tsv_header,
    tsv_seeds,
    zeek_json_seeds,
)

#: Inputs per parser in CI, sized so that each pass takes a few seconds (~40 s in all).
CI_EXAMPLES = {
    "zeek-tsv": 800,
    "zeek-json": 800,
    "eve": 1500,
    "cicflowmeter": 600,
    "zeek-csv": 600,
    "broker-json": 1000,
    "config": 200,
    "score-api": 3000,
}


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_seed_holds_the_contract(name: str) -> None:
    target = TARGETS[name]
    seeds = target.seeds()
    assert len(seeds) >= 3
    for seed in seeds:
        crash = check(target, seed)
        assert crash is None, crash.traceback


@pytest.mark.parametrize("name", list(TARGETS))
def test_short_fuzz_pass(name: str) -> None:
    """Mutations of the real seeds: the parser returns or raises its documented error, keeps
    the good records around a bad one, and hands on only flows the model can score."""
    target = TARGETS[name]
    seeds = target.seeds()
    logging.disable(logging.WARNING)  # thousands of "line skipped" warnings
    try:

        @settings(
            max_examples=CI_EXAMPLES[name],
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(rng=st.randoms(use_true_random=False), seed=st.sampled_from(seeds))
        def one(rng: Any, seed: bytes) -> None:
            crash = check(target, mutate(seed, rng, seeds))
            assert crash is None, f"{crash.signature}\n{crash.traceback}"

        one()
    finally:
        logging.disable(logging.NOTSET)


# -- regressions: Zeek WebSocket frames (issue 14 point 2, and what the passes found) ---------
def _frames(n: int = 2) -> list[dict[str, Any]]:
    return [orjson.loads(f) for f in broker_seeds() if b"NetAnom::flows" in f][:n]


def _uids(frame: dict[str, Any]) -> list[str]:
    acc = brokerjson.FlowsAccumulator()
    assert acc.add_frame(orjson.dumps(frame))
    return list(acc.build().column("uid").to_pylist())


def _flow_vectors(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """The argument vectors of a NetAnom::flows message (version first)."""
    vectors: list[dict[str, Any]] = frame["data"][2]["data"][1]["data"]
    return vectors


def _through_client(bad: dict[str, Any] | bytes) -> tuple[ZeekWebSocketClient, FlowBatch]:
    """A bad frame between two good ones, handled as the client handles frames that arrive
    together; returns the client (counters) and what it emitted."""
    good1, good2 = _frames()
    got: list[FlowBatch] = []

    def emit(batch: FlowBatch, ack: Any = None, *, arrived: float | None = None) -> bool:
        got.append(batch)
        return True

    client = ZeekWebSocketClient("ws://127.0.0.1:9/", emit)
    raw = bad if isinstance(bad, bytes) else orjson.dumps(bad)
    client.take_frames([orjson.dumps(good1), raw, orjson.dumps(good2)])
    batch = FlowBatch.concat(got)
    assert batch.column("uid").to_pylist() == _uids(good1) + _uids(good2)
    return client, batch


def test_ws_element_whose_data_type_is_a_list_is_malformed_not_fatal() -> None:
    frame = _frames(1)[0]
    _flow_vectors(frame)[3]["data"][0]["@data-type"] = ["address"]
    with pytest.raises(DecodeError, match=r"orig_h\[0\]: expected address, got \['address'\]"):
        brokerjson.columns_of(_flow_vectors(frame))
    client, _ = _through_client(frame)
    assert client.counters.malformed == 1


def test_ws_frame_with_zero_flows_emits_nothing_and_keeps_the_others() -> None:
    frame = _frames(1)[0]
    for vector in _flow_vectors(frame)[1:]:
        vector["data"] = []
    assert brokerjson.flows_to_batch(_flow_vectors(frame)).table.num_rows == 0
    client, batch = _through_client(frame)
    assert client.counters.malformed == 0
    assert client.counters.flows == len(batch)


@pytest.mark.parametrize("port", ["٣/tcp", "99999/tcp", "-1/udp", "\uff18\uff10/tcp"])
def test_ws_port_that_is_not_ascii_digits_in_range_is_refused(port: str) -> None:
    frame = _frames(1)[0]
    names = [name for name, _ in brokerjson._COLUMNS]
    _flow_vectors(frame)[1 + names.index("resp_p")]["data"][0]["data"] = port
    with pytest.raises(DecodeError, match=rf"resp_p\[0\]: bad port '{port}'"):
        brokerjson.flows_to_batch(_flow_vectors(frame))
    client, _ = _through_client(frame)
    assert client.counters.malformed == 1


@pytest.mark.parametrize("count", [2**60, 2**53 + 1, 2**64 - 1])
def test_ws_count_beyond_what_features_hold_is_refused(count: int) -> None:
    frame = _frames(1)[0]
    names = [name for name, _ in brokerjson._COLUMNS]
    _flow_vectors(frame)[1 + names.index("orig_bytes")]["data"][0]["data"] = count
    with pytest.raises(DecodeError, match=rf"orig_bytes\[0\]: {count} is not a count from 0"):
        brokerjson.flows_to_batch(_flow_vectors(frame))
    client, _ = _through_client(frame)
    assert client.counters.malformed == 1


def test_ws_version_that_is_not_a_number_is_refused() -> None:
    frame = _frames(1)[0]
    _flow_vectors(frame)[0]["data"] = "2/0"
    with pytest.raises(brokerjson.VersionError, match="no netanomd contract version"):
        brokerjson.columns_of(_flow_vectors(frame))
    client, _ = _through_client(frame)
    assert client.counters.refused == 1


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (b"[" * 1000 + b"]" * 1000, "not a data-message: [[[[...]]]]"),
        (
            b'{"type":"data-message","topic":"t","@data-type":' + b"[" * 900 + b"]" * 900 + b"}",
            "message: expected vector, got [[[[...]]]]",
        ),
        (b'{"type":"error","code":' + b"[" * 900 + b"]" * 900 + b"}", None),
    ],
)
def test_ws_frame_nested_a_thousand_levels_is_named_without_walking_it(
    frame: bytes, why: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the long pass: the error message took ``str()`` of the whole frame."""
    client, _ = _through_client(frame)
    if why is None:  # Zeek's error message, logged
        assert client.counters.server_errors == 1
        assert "Zeek says: [[[[...]]]] (None)" in caplog.messages
    else:
        assert client.counters.malformed == 1
        assert any(why in m for m in caplog.messages)


def test_ws_frame_nested_too_deep_to_parse_is_malformed() -> None:
    deep = b'{"type":"data-message","topic":"t","@data-type":"vector","data":' + b"[" * 5000
    assert not brokerjson.FlowsAccumulator().add_frame(deep + b"]" * 5000 + b"}")
    client, _ = _through_client(deep)
    assert client.counters.malformed == 1


def test_ws_client_on_a_real_socket_survives_every_frame_of_the_issue(remcos: FlowBatch) -> None:
    """Issue 14 point 2 end to end: the frames that killed the client thread (closed 1011,
    never reconnected), sent by the in-repo Zeek peer between good ones; every good flow
    arrives and the first connection stays up."""
    import threading

    from tests.waiting import wait
    from tests.zeek_wire import flows_message
    from tests.zeek_ws_server import FakeZeek

    good = [flows_message(remcos.slice(i * 10, 10)) for i in range(5)]
    names = [name for name, _ in brokerjson._COLUMNS]
    list_tag = flows_message(remcos.slice(50, 3))
    _flow_vectors(list_tag)[1]["data"][0]["@data-type"] = ["string"]
    empty = flows_message(remcos.slice(0, 0))
    digit = flows_message(remcos.slice(53, 3))
    _flow_vectors(digit)[1 + names.index("orig_p")]["data"][1]["data"] = "٣/tcp"
    huge = flows_message(remcos.slice(56, 3))
    _flow_vectors(huge)[1 + names.index("orig_bytes")]["data"][2]["data"] = 2**60
    got: list[FlowBatch] = []

    def emit(batch: FlowBatch, ack: Any = None, *, arrived: float | None = None) -> bool:
        got.append(batch)
        return True

    zeek = FakeZeek()
    url = zeek.start()
    client = ZeekWebSocketClient(url, emit, initial_backoff=0.05, max_backoff=0.2)
    thread = threading.Thread(target=client.run, daemon=True)
    thread.start()
    try:
        assert client.ready.wait(10)
        wait(lambda: len(zeek.clients) == 1)
        for frame in (good[0], list_tag, good[1], empty, good[2], digit, good[3], huge, good[4]):
            zeek.publish(frame)
        wait(lambda: sum(len(b) for b in got) == 50)
        uids = [u for b in got for u in b.column("uid").to_pylist()]
        assert uids == remcos.slice(0, 50).column("uid").to_pylist()
        assert client.counters.malformed == 3
        assert client.counters.connects == 1 and client.counters.disconnects == 0
        assert thread.is_alive()
    finally:
        client.stop()
        thread.join(10)
        zeek.stop()


# -- regressions: log lines ---------------------------------------------------------------------
def _tsv_with(field: str, value: bytes) -> tuple[list[bytes], list[bytes]]:
    names = tsv_header()[-2].split(b"\t")[1:]
    good = tsv_seeds()[:3]
    parts = good[1].split(b"\t")
    parts[names.index(field.encode())] = value
    return [*tsv_header(), good[0], b"\t".join(parts), good[2]], [good[0], good[2]]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"1152921504606846976", "orig_bytes: 1152921504606846976 is not an integer from 0 to"),
        (b"-1", "orig_bytes: -1 is not an integer from 0 to 9007199254740992"),
    ],
)
def test_zeek_tsv_count_out_of_range_skips_the_line_only(
    demo: Model, value: bytes, why: str
) -> None:
    lines, good = _tsv_with("orig_bytes", value)
    stats = ReadStats()
    batch = LineDecoder("conn.log", stats).decode(lines)
    assert batch is not None
    assert batch.column("uid").to_pylist() == [g.split(b"\t")[1].decode() for g in good]
    assert stats.malformed == 1
    assert len(stats.problems) == 1 and stats.problems[0].startswith(f"conn.log:10: {why}")
    scores, _ = demo.run(batch, None, fresh=True)
    assert len(scores) == 2


def test_zeek_json_count_of_2_to_the_60_skips_the_line_and_the_rest_scores(demo: Model) -> None:
    lines = list(zeek_json_seeds()[:3])
    bad = orjson.loads(lines[1])
    bad["orig_bytes"] = 2**60
    lines[1] = orjson.dumps(bad)
    stats = ReadStats()
    batch = LineDecoder("conn.json", stats).decode(lines)
    assert batch is not None and len(batch) == 2
    assert stats.problems == [
        f"conn.json:2: orig_bytes: 1152921504606846976 is not an integer from 0 to {MAX_COUNT}"
    ]
    assert len(demo.run(batch, None, fresh=True)[0]) == 2


@pytest.mark.parametrize(
    ("path", "value", "why"),
    [
        (("flow_id",), 2**64, "flow_id: 1.8446744073709552e+19 is not an integer"),
        (("flow_id",), -(2**63), "flow_id: -9223372036854775808 is not an integer"),
        (("flow", "pkts_toserver"), 2**63, "pkts_toserver: 9223372036854775808 is not"),
        (("flow", "bytes_toclient"), 1e308, "bytes_toclient: 1e+308 is not an integer"),
        (("community_id",), [1], "community_id: [1] is not a string"),
    ],
)
def test_eve_value_out_of_range_skips_the_record_only(
    path: tuple[str, ...], value: Any, why: str
) -> None:
    good = eve_flow_seeds()[:3]
    ev = orjson.loads(good[1])
    node = ev
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    stats = ReadStats()
    bad = json.dumps(ev).encode()  # orjson refuses integers beyond 64 bits
    batch = LineDecoder("eve.json", stats).decode([good[0], bad, good[2]])
    assert batch is not None
    want = [f"S{orjson.loads(g)['flow_id']}" for g in (good[0], good[2])]
    assert batch.column("uid").to_pylist() == want
    assert stats.malformed == 1 and why in stats.problems[0]


def test_cicflowmeter_protocol_and_time_oddities_do_not_stop_the_file(tmp_path: Any) -> None:
    from netanomd.sources.files import open_source

    rows = [r.split(b",") for r in cic_seeds()[:3]]
    rows[0][5] = b"Infinity"  # Protocol
    rows[1][6] = b"7/17 1:56"  # Timestamp: parsed as year 1, beyond nanosecond range
    path = tmp_path / "cic.csv"
    path.write_bytes(b"\n".join([cic_header(), *(b",".join(r) for r in rows)]) + b"\n")
    source = open_source(path)
    batch = FlowBatch.concat(list(source.batches()))
    assert len(batch) == 3
    assert batch.column("proto").to_pylist() == [None, "tcp", "tcp"]
    assert batch.column("ts")[1].as_py() < -6e10  # 0001-07-17


# -- regressions: the configuration loader -----------------------------------------------------
def test_config_billion_laughs_is_refused_at_once(tmp_path: Any) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):  # 10**9 values once expanded
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    path = tmp_path / "lol.yaml"
    path.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    with pytest.raises(ConfigError, match="too large for a configuration: more than 100000"):
        load_config(path, env={})
    assert time.monotonic() - start < 5


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("x: &a " + "[" * 2000 + "]" * 2000 + "\n", "nested deeper than 32 levels"),
        ("sinks:\n  sqlite: " + "{a: " * 40 + "1" + "}" * 40 + "\n", "nested deeper than 32"),
        ("sinks:\n  sqlite: \x00*a\n", "not valid YAML: unacceptable character #x0000"),
        (
            "model:\n  path: 2021-13-45T99:99:99\n",  # a YAML timestamp with month 13
            "2:9: not valid YAML: '2021-13-45T99:99:99' is not a valid date",
        ),
    ],
)
def test_config_that_is_not_a_config_is_a_config_error(tmp_path: Any, text: str, why: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=why) as err:
        load_config(path, env={})
    assert str(path) in str(err.value)


# -- regressions: POST /v1/score payloads -------------------------------------------------------
@pytest.mark.parametrize("count", [2**60, 2**53 + 1])
def test_score_api_count_beyond_what_features_hold_names_the_field(demo: Model, count: int) -> None:
    flow = orjson.loads(zeek_json_seeds()[0])
    flow["orig_bytes"] = count
    with pytest.raises(
        ValueError,
        match=rf"^\[0\]\.orig_bytes: expected an integer from 0 to "
        rf"{MAX_COUNT}, got {count}$",
    ):
        score_json(demo, None, [flow])
    flow["orig_bytes"] = MAX_COUNT
    assert score_json(demo, None, [flow])[0]["verdict"] in ("normal", "anomalous")


def test_zeek_tsv_stray_separator_line_keeps_the_header_in_force() -> None:
    """A lone ``#separator`` line (corrupt, or injected into a socket or list) must not
    silence every later record: the new header cannot be parsed, so the old one stays."""
    good = tsv_seeds()[:4]
    stats = ReadStats()
    decoder = LineDecoder("conn.log", stats)
    first = decoder.decode([*tsv_header(), good[0], b"#separator \\x2c", good[1]])
    later = decoder.decode([good[2], good[3]], 12)
    assert first is not None and later is not None
    uids = first.column("uid").to_pylist() + later.column("uid").to_pylist()
    assert uids == [g.split(b"\t")[1].decode() for g in good]
    assert stats.problems == [
        "conn.log: Zeek log header has no #fields line (header lines before line 11 ignored)"
    ]


def test_zeek_tsv_new_header_in_a_block_decodes_each_part_with_its_own() -> None:
    """A log truncated and rewritten with other columns: lines before the new header are
    decoded with the old one, lines after it with the new one."""
    head = tsv_header()
    fields = head[-2].split(b"\t")
    keep = [i for i, f in enumerate(fields[1:]) if f not in (b"service", b"history")]
    new_head = [*head[:-2], b"\t".join([fields[0]] + [fields[1:][i] for i in keep]), head[-1]]
    old, new = tsv_seeds()[0], tsv_seeds()[1]
    new_row = b"\t".join(new.split(b"\t")[i] for i in keep)
    stats = ReadStats()
    batch = LineDecoder("conn.log", stats).decode([*head, old, *new_head, new_row])
    assert batch is not None and stats.malformed == 0
    assert batch.column("uid").to_pylist() == [
        old.split(b"\t")[1].decode(),
        new.split(b"\t")[1].decode(),
    ]
    assert batch.column("history").to_pylist()[1] is None


@pytest.mark.parametrize(
    "line", [b"#separator \\x", b"#separator \\u1234", b"#separator \\N{x}", b"#separator \xff"]
)
def test_zeek_tsv_separator_that_is_not_one_character_is_refused(line: bytes) -> None:
    from netanomd.sources.zeek_log import ZeekTsvHeader

    with pytest.raises(InputError, match=r"conn.log: #separator .* is not one ASCII character"):
        ZeekTsvHeader.parse([line, *tsv_header()[1:]], "conn.log")
    good = tsv_seeds()[:2]
    stats = ReadStats()
    batch = LineDecoder("conn.log", stats).decode([*tsv_header(), good[0], line, good[1]])
    assert batch is not None and len(batch) == 2
    assert "is not one ASCII character (header lines before line 11 ignored)" in stats.problems[0]


def test_zeek_json_nested_value_skips_the_line_without_walking_it() -> None:
    """Found by the long pass: ``"ts": [{"a": {"a": ...}}]`` nested a thousand levels made
    ``str()`` of the value overflow the stack."""
    lines = list(zeek_json_seeds()[:3])
    deep = b'[{"a":' * 500 + b"1" + b"}]" * 500  # 1000 levels: orjson takes up to 1024
    lines[1] = lines[1].replace(b'"ts":', b'"ts":' + deep + b',"x":', 1)
    stats = ReadStats()
    batch = LineDecoder("conn.json", stats).decode(lines)
    assert batch is not None and len(batch) == 2
    assert stats.problems == ["conn.json:2: ts: a JSON array where a value belongs"]
