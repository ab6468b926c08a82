"""Live sources against the real pipeline and a real SQLite sink: a followed log's offsets are
exact byte positions (CRLF included), a Zeek log that is empty when first opened is read as TSV
once its header arrives, a read that yields no flows is acknowledged only after the flows before
it were written, and one failing sink neither stops the others nor is counted as written."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from netanomd.daemon.pipeline import Pipeline
from netanomd.data import demo_model
from netanomd.decision import Alert
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.sinks import SinkSet
from netanomd.sinks.sqlite import SQLiteSink
from netanomd.sources.files import open_source
from netanomd.sources.follow import LogFollower, OffsetStore
from tests.waiting import wait

DATA = Path(__file__).parent / "data" / "zeek"
TSV = DATA / "ssh_sshguess.tsv.conn.log"
JSON_LOG = DATA / "ssh_sshguess.json.conn.log"


@pytest.fixture(scope="module")
def model() -> Model:
    return demo_model()


class Running:
    """A pipeline scoring into SQLite in its own thread, and one follower feeding it."""

    def __init__(self, model: Model, path: Path, state: Path, *, threshold: float) -> None:
        self.sqlite = SQLiteSink(state / "alerts.db")
        self.pipeline = Pipeline(
            model, SinkSet([self.sqlite]), batch_size=100, batch_timeout=0.01, threshold=threshold
        )
        self.offsets = OffsetStore(state / "offsets.json")
        self.follower = LogFollower(
            path,
            self.pipeline.emitter("follow", block=True),
            self.offsets,
            from_start=True,
            poll=0.02,
        )
        self.threads = [
            threading.Thread(target=t, daemon=True) for t in (self.pipeline.run, self.follower.run)
        ]
        for t in self.threads:
            t.start()

    def committed(self) -> int:
        got = self.offsets.get(str(self.follower.path))
        return got["offset"] if got else -1

    def stop(self) -> None:
        self.follower.stop()
        assert self.pipeline.drain(10)
        self.pipeline.stop()
        for t in self.threads:
            t.join(10)
        self.sqlite.close()


def uids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return sorted(r[0] for r in conn.execute("SELECT uid FROM alerts"))


def data_lines(path: Path) -> list[bytes]:
    return [ln for ln in path.read_bytes().splitlines(keepends=True) if not ln.startswith(b"#")]


def test_crlf_offsets_are_exact_and_a_restart_resumes_on_a_line(
    tmp_path: Path, model: Model
) -> None:
    lines = [ln.rstrip(b"\n") + b"\r\n" for ln in data_lines(JSON_LOG)]
    log = tmp_path / "conn.log"
    log.write_bytes(b"".join(lines[:7]))
    # threshold 0: every flow is an alert, so SQLite holds every flow that was scored
    run = Running(model, log, tmp_path, threshold=0.0)
    wait(lambda: run.committed() == log.stat().st_size, 20, "first part committed")
    run.stop()
    assert run.follower.stats.malformed == 0
    with log.open("ab") as fh:
        fh.write(b"".join(lines[7:]))
    again = Running(model, log, tmp_path, threshold=0.0)
    wait(lambda: again.committed() == log.stat().st_size, 20, "rest committed")
    again.stop()
    assert again.follower.stats.malformed == 0  # resumed on a line boundary, not mid-line
    expected = sorted(json.loads(ln)["uid"] for ln in lines)
    assert uids(tmp_path / "alerts.db") == expected  # each flow once, none skipped


def test_zeek_log_empty_when_opened_is_read_as_tsv(tmp_path: Path, model: Model) -> None:
    log = tmp_path / "conn.log"
    log.write_bytes(b"")  # as right after Zeek opens a new conn.log
    run = Running(model, log, tmp_path, threshold=0.0)
    wait(lambda: run.follower.ready.is_set(), 5, "follower ready")
    raw = TSV.read_bytes().splitlines(keepends=True)
    header = [ln for ln in raw if ln.startswith(b"#") and not ln.startswith(b"#close")]
    with log.open("ab") as fh:
        fh.write(b"".join(header[:3]))  # the header arrives in pieces
        fh.flush()
        time.sleep(0.3)  # the follower polls (every 0.02 s) and sees only part of the header
        fh.write(b"".join(header[3:]))
        fh.write(b"".join(data_lines(TSV)))
        fh.write(b"#close\t2026-11-23-04-56-53\n")
    wait(lambda: run.committed() == log.stat().st_size, 20, "whole log committed")
    run.stop()
    source = open_source(TSV)
    expected = sorted(uid for b in source.batches() for uid in b.column("uid").to_pylist())
    assert run.follower.stats.malformed == 0
    assert uids(tmp_path / "alerts.db") == expected


class Gate:
    """A sink that holds every write until the test opens the gate."""

    name = "gate"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.written = 0

    def open(self) -> None: ...

    def write(self, alerts: Sequence[Alert]) -> None:
        self.entered.set()
        self.gate.wait(30)
        self.written += len(alerts)

    def flush(self) -> None: ...

    def close(self, timeout: float = 30.0) -> bool:
        return True


def batches(path: Path) -> Iterator[FlowBatch]:
    yield from open_source(path).batches()


def test_an_empty_read_is_acknowledged_after_the_flows_before_it(model: Model) -> None:
    gate = Gate()
    pipeline = Pipeline(model, SinkSet([gate]), batch_size=10_000, batch_timeout=0.0)
    acks: list[str] = []
    emit = pipeline.emitter("follow", block=True)
    flows = next(batches(TSV))
    assert emit(flows, lambda: acks.append("flows"))
    t = threading.Thread(target=pipeline.run, daemon=True)
    t.start()
    wait(gate.entered.is_set, 10, "the sink is writing")
    assert emit(FlowBatch.empty(), lambda: acks.append("#close"))
    assert not pipeline.drain(0.3)  # the sink still holds the flows
    assert acks == []  # the #close line's offset must not be committed ahead of the flows
    gate.gate.set()
    assert pipeline.drain(10)
    pipeline.stop()
    t.join(10)
    assert acks == ["flows", "#close"]


class Broken:
    name = "broken"

    def open(self) -> None: ...

    def write(self, alerts: Sequence[Alert]) -> None:
        raise OSError("disk full")

    def flush(self) -> None: ...

    def close(self, timeout: float = 30.0) -> bool:
        return True


def test_one_failing_sink_does_not_stop_the_others(tmp_path: Path, model: Model) -> None:
    sqlite = SQLiteSink(tmp_path / "alerts.db")
    broken = Broken()
    sinks = SinkSet([broken, sqlite])
    batch = next(batches(TSV))
    _, alerts = model.run(batch, 0.0)
    assert sinks.write(alerts) == [broken]
    assert sinks.written == {"broken": 0, "sqlite": len(alerts)}
    assert sinks.errors == {"broken": 1, "sqlite": 0}
    assert list(sinks.failing) == ["broken"]
    assert sinks.close(5)
    assert len(uids(tmp_path / "alerts.db")) == len(alerts) == len(batch)


EVE = Path(__file__).parent / "data" / "eve" / "test6-malicious-head400.json"


def eve_flows() -> list[bytes]:
    return [ln for ln in EVE.read_bytes().splitlines() if b'"event_type":"flow"' in ln]


def poison(line: bytes) -> list[bytes]:
    """Records that once killed a source thread: a list where an object belongs, and worse."""
    ev = json.loads(line)
    return [
        json.dumps({**ev, "flow": [1, 2]}).encode(),
        json.dumps({**ev, "tcp": "x"}).encode(),
        json.dumps({**ev, "flow": {**ev["flow"], "bytes_toserver": "many"}}).encode(),
        json.dumps({**ev, "src_port": {"a": 1}}).encode(),
        b'{"event_type": "flow"}',
        b"[1, 2, 3]",
    ]


def test_eve_dgram_queue_too_short_for_suricata_is_named(tmp_path: Path) -> None:
    """The kernel's Unix datagram queue length: a short one is named with its value and the
    remedy; a long enough one, or none to read (not Linux), is no problem."""
    from netanomd.sources.suricata_socket import DGRAM_QLEN_ENOUGH, dgram_queue_problem

    setting = tmp_path / "max_dgram_qlen"
    setting.write_text("10\n")
    problem = dgram_queue_problem(setting)
    assert problem is not None
    assert problem.startswith("net.unix.max_dgram_qlen is 10: ")
    assert "kind: stream" in problem and f"{DGRAM_QLEN_ENOUGH} or more" in problem
    setting.write_text(f"{DGRAM_QLEN_ENOUGH}\n")
    assert dgram_queue_problem(setting) is None
    assert dgram_queue_problem(tmp_path / "missing") is None


def test_eve_dgram_socket_warns_of_this_machines_short_queue(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A datagram socket says at start whether this machine's queue is too short (and a stream
    socket, whose queue is bytes, never does)."""
    from netanomd.sources.suricata_socket import EveSocket, dgram_queue_problem

    expected = dgram_queue_problem()
    for kind in ("dgram", "stream"):
        caplog.clear()
        src = EveSocket(tmp_path / f"{kind}.sock", kind, lambda *a, **k: True)
        t = threading.Thread(target=src.run, daemon=True)
        with caplog.at_level("WARNING", logger="netanomd.sources.suricata_socket"):
            t.start()
            assert src.ready.wait(5)
            src.stop()
            t.join(5)
        said = [r.getMessage() for r in caplog.records if "max_dgram_qlen" in r.getMessage()]
        if kind == "dgram" and expected is not None:
            assert said == [f"{src.name}: {expected}"]
        else:
            assert said == []


@pytest.mark.parametrize("kind", ["dgram", "stream"])
def test_eve_socket_survives_poison_records(tmp_path: Path, model: Model, kind: str) -> None:
    import socket as so

    from netanomd.sources.suricata_socket import EveSocket

    sqlite = SQLiteSink(tmp_path / "alerts.db")
    pipeline = Pipeline(model, SinkSet([sqlite]), batch_size=100, batch_timeout=0.01, threshold=0.0)
    path = tmp_path / "eve.sock"
    src = EveSocket(path, kind, pipeline.emitter("eve", block=False), batch_wait=0.01)
    threads = [threading.Thread(target=t, daemon=True) for t in (pipeline.run, src.run)]
    for t in threads:
        t.start()
    assert src.ready.wait(5)
    good = eve_flows()
    bad = poison(good[0])
    interleaved = zip(good, [*bad, *bad], strict=False)
    mixed = [x for pair in interleaved for x in pair] + good[len(bad) * 2 :]
    if kind == "dgram":
        with so.socket(so.AF_UNIX, so.SOCK_DGRAM) as c:
            for rec in mixed:
                c.sendto(rec + b"\n", str(path))
    else:
        with so.socket(so.AF_UNIX, so.SOCK_STREAM) as c:
            c.connect(str(path))
            c.sendall(b"\n".join(mixed) + b"\n")
    wait(lambda: pipeline.stats.scored == len(good), 10, "every good flow scored")
    assert src.stats.malformed == 2 * len(bad)
    # the source is still alive: a later good record is scored too
    with so.socket(so.AF_UNIX, so.SOCK_DGRAM if kind == "dgram" else so.SOCK_STREAM) as c:
        if kind == "dgram":
            c.sendto(good[0] + b"\n", str(path))
        else:
            c.connect(str(path))
            c.sendall(good[0] + b"\n")
    wait(lambda: pipeline.stats.scored == len(good) + 1, 10, "the source survived")
    src.stop()
    assert pipeline.drain(10)
    pipeline.stop()
    for t in threads:
        t.join(10)
    sqlite.close()


def test_redis_backlog_is_read_oldest_first(redis_url: str, model: Model) -> None:
    import redis

    from netanomd.sources.redis_list import RedisInput

    good = eve_flows()
    client = redis.Redis.from_url(redis_url)
    for rec in [good[0], poison(good[0])[0], *good[1:]]:
        client.lpush("suricata", rec)  # what Suricata's `mode: list` does
    got: list[FlowBatch] = []

    def emit(batch: FlowBatch, ack: object = None, *, arrived: float | None = None) -> bool:
        got.append(batch)
        return True

    src = RedisInput(redis_url, "suricata", "list", emit, batch_lines=5)
    t = threading.Thread(target=src.run, daemon=True)
    t.start()
    wait(lambda: sum(len(b) for b in got) == len(good), 10, "every good record")
    src.stop()
    t.join(10)
    assert src.stats.malformed == 1  # the poison record, and only it, was skipped
    ids = [fid for b in got for fid in b.column("flow_id").to_pylist()]
    assert ids == [json.loads(g)["flow_id"] for g in good]  # oldest first


def test_every_declared_source_type_can_be_built() -> None:
    from netanomd.config import SOURCE_TYPES
    from netanomd.daemon.wiring import SOURCE_FACTORIES

    assert set(SOURCE_FACTORIES) == set(SOURCE_TYPES)


def test_one_sensor_repeating_a_community_id_is_not_a_duplicate(model: Model) -> None:
    """ssh_sshguess reuses client ports: 4 of its 15 connections repeat a community_id. They
    are new connections, all scored (the old de-duplication dropped them)."""
    batch = next(batches(TSV))
    ids = batch.column("community_id").to_pylist()
    assert len(set(ids)) == len(ids) - 4
    pipeline = Pipeline(model, SinkSet(), batch_size=10_000, batch_timeout=0.0, dedup_window=120)
    assert pipeline.emitter("zeek", block=True)(batch)
    t = threading.Thread(target=pipeline.run, daemon=True)
    t.start()
    assert pipeline.drain(10)
    pipeline.stop()
    t.join(10)
    assert (pipeline.stats.scored, pipeline.stats.duplicates) == (15, 0)


def test_one_connection_from_two_sensors_is_scored_once(model: Model) -> None:
    import pyarrow as pa

    zeek = next(batches(TSV))

    def as_suricata(shift: float) -> FlowBatch:
        t = zeek.table
        t = t.set_column(
            t.schema.get_field_index("source"), "source", pa.array(["suricata"] * len(zeek))
        )
        ts = pa.array([x + shift for x in zeek.column("ts").to_pylist()], pa.float64())
        return FlowBatch(t.set_column(t.schema.get_field_index("ts"), "ts", ts))

    pipeline = Pipeline(model, SinkSet(), batch_size=10_000, batch_timeout=0.0, dedup_window=120)
    emit = pipeline.emitter("both", block=True)
    assert emit(zeek) and emit(as_suricata(0.4)) and emit(as_suricata(300.0))
    t = threading.Thread(target=pipeline.run, daemon=True)
    t.start()
    assert pipeline.drain(10)
    pipeline.stop()
    t.join(10)
    # the Suricata copy 0.4 s apart is the same connection; 300 s apart it is another one
    assert (pipeline.stats.scored, pipeline.stats.duplicates) == (30, 15)


class Collect:
    """A sink that keeps what it is given."""

    name = "collect"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def open(self) -> None: ...

    def write(self, alerts: Sequence[Alert]) -> None:
        self.alerts.extend(alerts)

    def flush(self) -> None: ...

    def close(self, timeout: float = 30.0) -> bool:
        return True


def test_zeek_and_suricata_on_one_pcap_give_one_alert_with_both_ids(model: Model) -> None:
    """Zeek's conn.log and Suricata's EVE of the same capture (ftp_bruteforce.pcap): every
    connection is scored once, as Zeek's record, and its alert names both the Zeek uid and the
    Suricata flow id, where Elastic's integrations put them (issue 17 point 3)."""
    from netanomd.ecs import ObserverInfo, alert_document

    zeek = FlowBatch.concat(list(batches(DATA / "ftp_bruteforce.json.conn.log")))
    eve = FlowBatch.concat(list(batches(EVE.parent / "ftp_bruteforce.eve.json")))
    flow_id = dict(
        zip(eve.column("community_id").to_pylist(), eve.column("flow_id").to_pylist(), strict=True)
    )
    uid = dict(
        zip(zeek.column("community_id").to_pylist(), zeek.column("uid").to_pylist(), strict=True)
    )
    assert len(zeek) == len(eve) == len(flow_id) == len(uid) == 30 and flow_id.keys() == uid.keys()
    sink = Collect()
    pipeline = Pipeline(
        model,
        SinkSet([sink]),
        batch_size=10_000,
        batch_timeout=0.0,
        dedup_window=120,
        threshold=0.0,
    )
    emit = pipeline.emitter("both", block=True)
    assert emit(eve) and emit(zeek)  # Suricata's records first, as in the issue
    t = threading.Thread(target=pipeline.run, daemon=True)
    t.start()
    assert pipeline.drain(10)
    pipeline.stop()
    t.join(10)
    assert (pipeline.stats.scored, pipeline.stats.duplicates) == (30, 30)
    assert len(sink.alerts) == 30  # threshold 0: every flow alerts
    observer = ObserverInfo(name="sensor", hostname="sensor")
    for a in sink.alerts:
        cid = a.flow.community_id
        assert (a.flow.source, a.flow.uid, a.flow.flow_id) == ("zeek", uid[cid], flow_id[cid])
        doc = alert_document(a, observer, now=1.7e9)
        assert doc["zeek"]["session_id"] == uid[cid]
        assert doc["suricata"]["eve"]["flow_id"] == str(flow_id[cid])


def test_suricata_ipv6_addresses_are_spelled_as_zeek_spells_them() -> None:
    """wikipedia.pcap through Zeek and through Suricata: Suricata writes
    ``ff02:0000:0000:0000:0000:0000:0000:00fb`` where Zeek writes ``ff02::fb``; read, both give
    each connection the same addresses, so one host has one spelling in the stores (issue 17
    point 3)."""
    zeek = FlowBatch.concat(list(batches(DATA / "wikipedia.json.conn.log")))
    eve = FlowBatch.concat(list(batches(EVE.parent / "wikipedia.eve.json")))

    def hosts(b: FlowBatch) -> dict[str, frozenset[str]]:
        # as a set: the two sensors disagree on which side opened one of the connections
        cols = [b.column(c).to_pylist() for c in ("community_id", "orig_h", "resp_h")]
        return {cid: frozenset((o, r)) for cid, o, r in zip(*cols, strict=True)}

    assert len(hosts(eve)) == len(eve) == 34
    assert hosts(eve) == hosts(zeek)
    assert frozenset(("fe80::217:f2ff:fed7:cf65", "ff02::fb")) in hosts(eve).values()


def _state_and_history(
    tcp: bool, ts: int, tc: int, both: int, pts: bool, ptc: bool, dts: bool, dtc: bool
) -> tuple[str, str]:
    """The conn_state/history rules of the module doc, one flow at a time (the reference the
    column-wise decoder must agree with)."""
    if not tcp:
        return ("SF" if ptc and pts else "S0"), ("Dd" if ptc else "D")
    if not ts and not tc:
        ts, tc = both, both if ptc else 0
    syn_ack = bool(tc & 0x02 and tc & 0x10)
    marks = [ts & 0x02, syn_ack, ts & 0x10, dts, dtc, ts & 0x01, tc & 0x01, ts & 0x04, tc & 0x04]
    history = "".join(c for c, on in zip("ShADdFfRr", marks, strict=True) if on)
    if not ptc:
        state = "S0" if ts & 0x02 else "OTH"
    elif tc & 0x04 and not syn_ack:
        state = "REJ" if ts & 0x02 else "RSTR"
    elif ts & 0x04:
        state = "RSTO"
    elif tc & 0x04:
        state = "RSTR"
    elif ts & 0x01 and tc & 0x01:
        state = "SF"
    elif ts & 0x02 and tc & 0x02:
        state = "S1"
    else:
        state = "OTH"
    return state, history


def test_eve_conn_states_column_wise_follow_the_rules_for_every_flag_combination() -> None:
    """Every combination of the TCP flag bits that matter on each side (and of the combined
    flags when the sides are unknown), packets and payload each way, TCP or not."""
    import itertools

    import numpy as np

    from netanomd.sources.eve_states import conn_states

    bits = [0, 0x01, 0x02, 0x04, 0x10, 0x12, 0x11, 0x14, 0x17, 0x1F, 0x100]
    cases = list(
        itertools.product([True, False], bits, bits, [0, 0x12, 0x1B, 0x04], *[[True, False]] * 4)
    )
    cols = [np.array(c) for c in zip(*cases, strict=True)]
    states, histories = conn_states(*cols)
    want = [_state_and_history(*c) for c in cases]
    assert list(zip(states, histories, strict=True)) == want


def test_eve_times_column_wise_are_exactly_the_scalar_parse() -> None:
    """Suricata's timestamps in a real capture, and spellings Arrow must not take for them
    (other layouts, impossible dates, offsets out of range, far years): each the scalar
    parse's value, or its refusal."""
    import math

    from netanomd.sources.suricata_eve import parse_time, parse_times

    capture = Path(__file__).parent / "data" / "eve" / "test6-malicious-head400.json"
    texts = [json.loads(ln)["timestamp"] for ln in capture.read_bytes().splitlines()]
    texts += [
        "2021-06-06T16:38:55+02:00",
        "2021-06-06T16:38:55.8558+0200",
        "2020-02-29T16:38:55.855844+0200",
        "2021-02-29T16:38:55.855844+0200",
        "2021-06-06T24:00:00.000000+0200",
        "2021-06-06T23:59:60.000000+0200",
        "2021-06-06T16:38:55.855844+2400",
        "2021-06-06T16:38:55.855844+0099",
        "2021-06-06T16:38:55.855844-0130",
        "0001-01-01T00:00:00.000001+0100",
        "9999-12-31T23:59:59.999999-0100",
        "garbage",
    ]
    capture_only = len(texts) - 12
    for block, bad in ((texts[:capture_only], 0), (texts, 5), (texts[capture_only:], 5)):
        got, refused = parse_times(block)
        for i, text in enumerate(block):
            try:
                want = parse_time(text)
            except ValueError as exc:
                assert refused[i] == str(exc) and math.isnan(got[i])
            else:
                assert i not in refused and got[i] == want, text
        assert len(refused) == bad


def test_eve_long_block_decoded_in_pieces_is_the_block_decoded_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file's long block is decoded a piece at a time: the same flows, the same signatures
    joined (alerts placed after their flows, pieces away), the same bad lines in line order."""
    from netanomd.sources import ReadStats, suricata_eve
    from netanomd.sources.suricata_alerts import SignatureJoin

    capture = Path(__file__).parent / "data" / "eve" / "test6-malicious-signatures.json"
    lines = capture.read_bytes().splitlines()
    flows = [ln for ln in lines if b'"event_type":"flow"' in ln]
    alerts = [ln for ln in lines if b'"event_type":"alert"' in ln]
    block = [*flows[:20], b'{"event_type":"flow","src_port":70000}', *flows[20:], *alerts, b"{"]

    def decode(piece: int) -> tuple[dict[str, list[object]], list[str], int]:
        monkeypatch.setattr(suricata_eve, "PIECE", piece)
        stats = ReadStats()
        join = SignatureJoin(stats)
        batch = suricata_eve.eve_lines_to_batch(block, stats, "eve.json", 1, join)
        assert batch is not None
        return batch.table.to_pydict(), stats.problems, join.attached

    whole, pieces = decode(len(block)), decode(7)
    assert pieces == whole
    table, problems, attached = pieces
    assert len(table["uid"]) == len(flows) and attached > 0
    assert sum(1 for s in table["signatures"] if s) > 0
    assert [p.split(": ")[0] for p in problems] == ["eve.json:21", f"eve.json:{len(block)}"]
