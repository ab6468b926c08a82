"""Elasticsearch delivery against tests/es_server.py with the official client: normal delivery,
outage and recovery (exactly once), per-item 429s, a bad document, spool overflow, restart."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pytest
from elasticsearch import Elasticsearch

from netanomd.behaviour.incidents import Incident
from netanomd.behaviour.measure import halves, load, run
from netanomd.behaviour.pipeline import BehaviourPipeline, learn
from netanomd.cli import main
from netanomd.data import attack_files, baseline_files, demo_model
from netanomd.decision import Alert
from netanomd.ecs import ObserverInfo
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.sinks import IncidentSink, Sink, SinkSet
from netanomd.sinks.elasticsearch import ElasticsearchSink
from netanomd.sinks.incident_ids import IncidentIds
from netanomd.sinks.sqlite import IncidentQuery, SQLiteSink, query_incidents
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches
from netanomd.spool import Spool
from tests.es_server import FakeElasticsearch

OBSERVER = ObserverInfo(name="sensor-1", hostname="sensor-1.example")
INDEX = "logs-netanomd.alert-default"


@pytest.fixture(scope="module")
def alerts() -> list[Alert]:
    model = demo_model()
    out: list[Alert] = []
    for batch in read_batches(attack_files(), ReadStats()):
        out += model.run(batch)[1]
    assert len(out) > 500
    return out


class Clock:
    """Simulated time: sleeping advances it instead of waiting."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, secs: float) -> None:
        self.slept.append(secs)
        self.now += secs


_OPEN: list[ElasticsearchSink] = []


@pytest.fixture(autouse=True)
def _close_sinks() -> None:
    yield  # type: ignore[misc]
    while _OPEN:
        sink = _OPEN.pop()
        if not sink.spool._fh.closed:
            sink.close()


def make_sink(
    url: str, tmp_path: Path, clock: Clock, ids: IncidentIds | None = None, **kw: object
) -> ElasticsearchSink:
    client = Elasticsearch(url, max_retries=0, request_timeout=5)
    spool = Spool(tmp_path / "spool", **kw)  # type: ignore[arg-type]
    sink = ElasticsearchSink(
        client,
        spool,
        OBSERVER,
        clock=clock.time,
        sleep=clock.sleep,
        batch_size=500,
        initial_backoff=1.0,
        max_backoff=30.0,
        ids=ids,
    )
    _OPEN.append(sink)
    return sink


def test_normal_delivery(es: FakeElasticsearch, tmp_path: Path, alerts: list[Alert]) -> None:
    clock = Clock()
    sink = make_sink(f"http://127.0.0.1:{es.port}", tmp_path, clock)
    assert isinstance(sink, Sink)
    sink.write(alerts)
    assert sink.drain(timeout=60)
    assert set(es.docs[INDEX]) == {a.alert_id for a in alerts}
    assert max(es.creates.values()) == 1 and sink.sent == len(alerts)
    doc = es.docs[INDEX][alerts[0].alert_id]
    assert doc["event"]["kind"] == "alert" and doc["netanomd"]["model"]["id"] == alerts[0].model_id
    bulk = [h for m, p, h in es.requests if p.startswith("/_bulk")]
    ctypes = [{k.lower(): v for k, v in h.items()}["content-type"] for h in bulk]
    assert bulk and all("x-ndjson" in c and "compatible-with=" in c for c in ctypes)


def test_outage_then_recovery_exactly_once(tmp_path: Path, alerts: list[Alert]) -> None:
    """A 10-minute outage (simulated clock) with 50,000 alerts, then recovery."""
    es = FakeElasticsearch()
    url = es.start()
    port = es.port
    es.stop()  # connection refused from now on
    clock = Clock()
    sink = make_sink(url, tmp_path, clock)
    many = [
        dataclasses.replace(alerts[i % len(alerts)], model_id=f"iforest-m{i // len(alerts)}")
        for i in range(50_000)
    ]
    for i in range(0, len(many), 5000):
        sink.write(many[i : i + 5000])  # scoring goes on: write never waits
        sink.deliver_once()
    while clock.now < 1_700_000_000.0 + 600:
        assert sink.deliver_once() == 0
    assert sink.retries > 5 and max(clock.slept) == 30.0  # capped exponential backoff
    es.start(port)
    try:
        assert sink.drain(timeout=10_000)
        ids = {a.alert_id for a in many}
        assert len(ids) == 50_000
        assert set(es.docs[INDEX]) == ids
        assert es.creates.total() == 50_000 and max(es.creates.values()) == 1
    finally:
        es.stop()


def test_item_429_retried_and_bad_document_dead_lettered(
    es: FakeElasticsearch, tmp_path: Path, alerts: list[Alert]
) -> None:
    clock = Clock()
    sink = make_sink(f"http://127.0.0.1:{es.port}", tmp_path, clock)
    batch = alerts[:300]
    for a in batch[:20]:
        es.throttle_items[a.alert_id] = 2
    bad = batch[50].alert_id
    es.reject_ids.add(bad)
    es.fail_requests = 1  # and one whole-request 503
    sink.write(batch)
    assert sink.drain(timeout=100)
    assert set(es.docs[INDEX]) == {a.alert_id for a in batch} - {bad}
    assert max(es.creates.values()) == 1
    assert sink.dead_lettered == 1 and sink.duplicates > 0
    dead = [
        orjson.loads(x)
        for x in (tmp_path / "spool" / "dead-letter.jsonl").read_bytes().splitlines()
    ]
    assert [d["document"]["_id"] for d in dead] == [bad]
    assert "failed to parse field" in dead[0]["reason"]["reason"]


def test_spool_survives_restart(es: FakeElasticsearch, tmp_path: Path, alerts: list[Alert]) -> None:
    clock = Clock()
    sink = make_sink(f"http://127.0.0.1:{es.port}", tmp_path, clock)
    sink.write(alerts[:400])
    sink.batch_size = 100
    assert sink.deliver_once() == 100
    sink.spool.close()  # the process goes away with 300 undelivered
    again = make_sink(f"http://127.0.0.1:{es.port}", tmp_path, clock)
    again.write(alerts[400:500])
    assert again.drain(timeout=100)
    assert set(es.docs[INDEX]) == {a.alert_id for a in alerts[:500]}
    assert max(es.creates.values()) == 1


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_spool_full_drops_are_counted(tmp_path: Path, alerts: list[Alert], policy: str) -> None:
    clock = Clock()
    sink = make_sink(
        "http://127.0.0.1:9",
        tmp_path,
        clock,
        max_bytes=400_000,
        overflow=policy,
        segment_bytes=50_000,
    )
    for i in range(0, 900, 100):
        sink.write(alerts[i : i + 100])
    spool = sink.spool
    assert spool.dropped > 0 and spool.size() <= 400_000
    kept, _ = spool.peek(10_000)
    assert len(kept) + spool.dropped == 900
    ids = [d["_id"] for d in kept]
    if policy == "drop_newest":
        assert ids == [a.alert_id for a in alerts[: len(ids)]]
    else:
        assert ids == [a.alert_id for a in alerts[900 - len(ids) : 900]]


def test_sender_killed_mid_flush_and_restarted(
    es: FakeElasticsearch, tmp_path: Path, alerts: list[Alert]
) -> None:
    """SIGKILL the sending process mid-flush; a new one finishes: nothing lost or duplicated."""
    import os
    import signal
    import subprocess
    import sys
    import time

    clock = Clock()
    sink = make_sink(f"http://127.0.0.1:{es.port}", tmp_path, clock)
    batch = [
        dataclasses.replace(alerts[i % len(alerts)], model_id=f"iforest-k{i // len(alerts)}")
        for i in range(3000)
    ]
    sink.write(batch)
    sink.spool.close()
    es.delay = 0.02  # each bulk request takes a while, so the kill lands inside one
    url, spool_dir = f"http://127.0.0.1:{es.port}", str(tmp_path / "spool")
    cmd = [sys.executable, "-m", "tests.es_sender_proc", url, spool_dir]
    cwd = Path(__file__).parent.parent
    proc = subprocess.Popen(cmd, cwd=cwd)
    deadline = time.monotonic() + 60
    while es.creates.total() < 600 and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    delivered_before = es.creates.total()
    assert 600 <= delivered_before < 3000
    assert subprocess.run(cmd, cwd=cwd, timeout=120).returncode == 0
    assert set(es.docs[INDEX]) == {a.alert_id for a in batch}
    assert es.creates.total() == 3000 and max(es.creates.values()) == 1
    assert not Spool(spool_dir).peek(1)[0]


def test_slow_responses_time_out_and_are_retried(
    es: FakeElasticsearch, tmp_path: Path, alerts: list[Alert]
) -> None:
    clock = Clock()
    client = Elasticsearch(f"http://127.0.0.1:{es.port}", max_retries=0, request_timeout=0.3)
    sink = ElasticsearchSink(
        client, Spool(tmp_path / "spool"), OBSERVER, clock=clock.time, sleep=clock.sleep
    )
    _OPEN.append(sink)
    sink.write(alerts[:50])
    es.delay = 0.6  # longer than the client's timeout: the server may still store the batch
    assert sink.deliver_once() == 0 and sink.retries == 1
    es.delay = 0.0
    assert sink.drain(timeout=100)
    assert set(es.docs[INDEX]) == {a.alert_id for a in alerts[:50]}
    assert max(es.creates.values()) == 1


def test_score_command_sends_alerts(
    es: FakeElasticsearch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from netanomd.cli import main

    model = tmp_path / "m.npz"
    train = ["train", "--model", str(model), "--features", "flow", "--vetted"]
    train += ["--threshold-quantile", "0.995"]  # many flow alerts to deliver
    assert main([*train, "--input", *map(str, baseline_files())]) == 0
    attacks = [str(p) for p in attack_files()]
    args = [
        "score",
        "--model",
        str(model),
        "--input",
        *attacks,
        "--db",
        str(tmp_path / "a.db"),
        "--es-url",
        f"http://127.0.0.1:{es.port}",
        "--top",
        "0",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    n = len(es.docs[INDEX])
    assert n > 500 and f"elasticsearch: {n} alerts sent to {INDEX}" in out
    assert main(args) == 0  # scoring the same files again duplicates nothing
    assert len(es.docs[INDEX]) == n and max(es.creates.values()) == 1
    assert f"0 alerts sent to {INDEX}, {n} already there" in capsys.readouterr().out


def test_a_torn_spool_tail_is_cut_off_and_delivery_goes_on(
    es: FakeElasticsearch, tmp_path: Path, alerts: list[Alert]
) -> None:
    clock = Clock()
    sink = make_sink(f"http://127.0.0.1:{es.port}", tmp_path, clock)
    sink.write(alerts[:100])
    sink.spool.close()
    seg = sorted((tmp_path / "spool").glob("seg-*.jsonl"))[-1]
    with seg.open("ab") as fh:  # killed (or out of space) half-way through an append
        fh.write(b'{"_id": "half-written", "event": {"kin')
    again = make_sink(f"http://127.0.0.1:{es.port}", tmp_path, clock)
    assert again.spool.torn == 1
    again.write(alerts[100:200])
    assert again.drain(timeout=100)
    assert len(es.docs[INDEX]) == 200 and again.spool.corrupt == 0


def test_a_corrupt_spool_line_is_skipped_not_fatal(
    es: FakeElasticsearch, tmp_path: Path, alerts: list[Alert]
) -> None:
    clock = Clock()
    sink = make_sink(f"http://127.0.0.1:{es.port}", tmp_path, clock)
    sink.write(alerts[:10])
    seg = sorted((tmp_path / "spool").glob("seg-*.jsonl"))[-1]
    with seg.open("ab") as fh:
        fh.write(b"\x00\x00 not json\n")
    sink.write(alerts[10:20])
    assert sink.drain(timeout=100)
    assert len(es.docs[INDEX]) == 20 and sink.spool.corrupt == 1


def test_spool_files_are_not_world_readable(
    es: FakeElasticsearch, tmp_path: Path, alerts: list[Alert]
) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        sink = make_sink(f"http://127.0.0.1:{es.port}", tmp_path, Clock())
        sink.write(alerts[:10])
        assert sink.drain(timeout=100)
    finally:
        os.umask(old)
    files = list((tmp_path / "spool").iterdir())
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o640 for f in files)


def test_incidents_are_one_document_each_replaced_as_they_grow(
    es: FakeElasticsearch, tmp_path: Path
) -> None:
    """After ``netanomd es setup``, every incident is one ECS alert document under its stable
    id in the incident alias's index, replaced as the incident grows; the same ids as in
    SQLite."""
    url = f"http://127.0.0.1:{es.port}"
    assert main(["es", "setup", "--url", url]) == 0
    assert main(["es", "setup", "--url", url]) == 0  # idempotent: the alias exists
    alias = "logs-netanomd.incident-default"
    assert es.aliases == {alias: f"{alias}-000001"}
    clock = Clock()
    sink = make_sink(url, tmp_path, clock)
    assert isinstance(sink, IncidentSink)
    sqlite = SQLiteSink(tmp_path / "a.db", ids=IncidentIds(OBSERVER.name))
    sinks = SinkSet([sink, sqlite])
    thresholds = learn([halves(load(baseline_files()[0]))[0]])
    batch = load(Path(__file__).parent / "data/behaviour/portscan-002.conn.log.gz")
    pipe = BehaviourPipeline(thresholds)
    for off in range(0, len(batch), 200):
        assert sinks.write_incidents(pipe.process(batch.slice(off, 200))) == []
        sink.deliver_once()  # delivered while the incidents still grow
    sinks.write_incidents(pipe.flush())
    assert sink.drain(timeout=60)
    sqlite.close()
    incidents = pipe.tracker.all()
    docs = es.docs[f"{alias}-000001"]
    stored = query_incidents(tmp_path / "a.db", IncidentQuery()).items
    assert set(docs) == {s.incident_id for s in stored}
    assert len(docs) == len(incidents) and max(es.indexed.values()) > 1  # replaced in place
    for s in stored:  # the latest version of each
        doc = docs[s.incident_id]
        assert doc["netanomd"]["incident"]["flows"] == s.flows
        assert doc["event"]["reason"] == s.title and doc["rule"]["name"] == s.behaviour
        assert doc["event"]["id"] == s.incident_id and doc["event"]["kind"] == "alert"
    assert sink.dead_lettered == 0 and not es.creates  # no alert, no create


@pytest.mark.parametrize("restart", [False, True], ids=["same-sink", "restarted-sink"])
def test_an_incident_growing_across_a_rollover_stays_one_document(
    es: FakeElasticsearch, tmp_path: Path, restart: bool
) -> None:
    """The incident alias rolls over (ILM) while incidents still grow: each is replaced in the
    index that already holds it, never copied into the new write index (two documents for one
    incident), also by a sink started after the rollover that has to search for it."""
    url = f"http://127.0.0.1:{es.port}"
    assert main(["es", "setup", "--url", url]) == 0
    alias = "logs-netanomd.incident-default"
    clock = Clock()
    sink = make_sink(url, tmp_path, clock)
    thresholds = learn([halves(load(baseline_files()[0]))[0]])
    batch = load(Path(__file__).parent / "data/behaviour/portscan-002.conn.log.gz")
    pipe = BehaviourPipeline(thresholds)
    half = len(batch) // 2
    for off in range(0, half, 200):
        sink.write_incidents(pipe.process(batch.slice(off, min(200, half - off))))
    assert sink.drain(timeout=60)
    before = set(es.docs[f"{alias}-000001"])
    assert before
    es.rollover(alias)
    assert es.aliases[alias] == f"{alias}-000002"
    if restart:
        sink.stop()
        sink = make_sink(url, tmp_path, clock)
    for off in range(half, len(batch), 200):
        sink.write_incidents(pipe.process(batch.slice(off, 200)))
    sink.write_incidents(pipe.flush())
    assert sink.drain(timeout=60)
    old, new = es.docs[f"{alias}-000001"], es.docs.get(f"{alias}-000002", {})
    assert not set(old) & set(new)  # no incident in both
    assert set(old) == before  # the grown ones were replaced where they were
    assert max(es.indexed[i] for i in before) > 1
    assert len(old) + len(new) == len(pipe.tracker.all())
    for inc in pipe.tracker.all():  # the latest version of each, wherever it lives
        doc = {**old, **new}[sink.ids(inc)]
        assert doc["netanomd"]["incident"]["flows"] == inc.flows
    assert sink.dead_lettered == 0


def test_incidents_without_setup_are_dead_lettered_not_lost(
    es: FakeElasticsearch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the incident template the alias name falls to the built-in logs-*-* data stream
    template, which refuses an update in place: the documents are dead-lettered, with reason."""
    clock = Clock()
    sink = make_sink(f"http://127.0.0.1:{es.port}", tmp_path, clock)
    thresholds = learn([halves(load(baseline_files()[0]))[0]])
    incidents = run(
        BehaviourPipeline(thresholds),
        load(Path(__file__).parent / "data/behaviour/zeek-traces-nmap-vsn.conn.log"),
    )
    sink.write_incidents(incidents)
    assert sink.drain(timeout=10)
    assert sink.dead_lettered == len(incidents) == 1
    (line,) = sink.dead_letter.read_bytes().splitlines()
    assert "data streams" in orjson.loads(line)["reason"]["reason"]
    assert "netanomd es setup" in caplog.text  # the log says what to do


def _stream_batches(name: str, step: int = 200) -> list[FlowBatch]:
    """A capture (attack corpus or tests/data/behaviour) cut into batches of ``step`` flows."""
    files = [*attack_files(), *(Path(__file__).parent / "data/behaviour").glob("*.conn.log*")]
    path = next(p for p in files if p.name.startswith(name))
    batch = FlowBatch.concat(list(read_batches([str(path)], ReadStats())))
    return [batch.slice(off, step) for off in range(0, len(batch), step)]


def _where(es: FakeElasticsearch, alias: str) -> dict[str, str]:
    """incident id -> the index holding it (each id must be in one index only)."""
    held = [(i, index) for index in es.members[alias] for i in es.docs.get(index, {})]
    assert len(held) == len(dict(held)), "an incident in two indices"
    return dict(held)


@pytest.mark.parametrize(
    ("capture", "mode"),
    [
        ("portscan-002", "one-index"),
        ("portscan-002", "rollover-each-batch"),
        ("portscan-002", "rollover-restarted-sink"),
        ("njrat-001", "rollover-each-batch"),
    ],
)
def test_a_retracted_incident_is_deleted_where_it_is_stored(
    es: FakeElasticsearch, tmp_path: Path, demo: Model, capture: str, mode: str
) -> None:
    """Incidents the stream retracts (their alerts went to the named incident that covers them:
    mid-stream in portscan-002, at the end in njrat-001) are deleted from the index that holds
    them, also after the alias rolled over (every batch here, so each retraction hits an older
    index) and by a sink restarted since, which has to search for it: what stays is what SQLite
    keeps, one document each."""
    url = f"http://127.0.0.1:{es.port}"
    assert main(["es", "setup", "--url", url]) == 0
    alias = "logs-netanomd.incident-default"
    clock = Clock()
    ids = IncidentIds(OBSERVER.name)  # one run: its sinks (and a restarted one) share the ids
    sink = make_sink(url, tmp_path, clock, ids=ids)
    sqlite = SQLiteSink(tmp_path / "a.db", ids=ids)
    stream = demo.stream()
    retracted: dict[str, str] = {}  # id -> the index it was deleted from

    def deliver(incidents: list[Incident]) -> None:
        nonlocal sink
        before = _where(es, alias)
        for inc in incidents:
            if inc.retracted:
                sid = sink.ids(inc)
                assert sid in before, "retracted before it was ever written"
                retracted[sid] = before[sid]
                if mode != "one-index":  # not where a delete through the alias would go
                    assert before[sid] != es.aliases[alias]
        assert SinkSet([sink, sqlite]).write_incidents(incidents) == []
        assert sink.drain(timeout=60)
        assert not set(retracted) & set(_where(es, alias))
        if mode != "one-index":
            es.rollover(alias)
        if mode == "rollover-restarted-sink":
            assert sink.close(0)
            sink = make_sink(url, tmp_path, clock, ids=ids)

    for part in _stream_batches(capture):
        deliver(stream.process(part)[2])
    deliver([*stream.finish(), *stream.retracted])
    sqlite.close()
    assert retracted and all(es.indexed[i] >= 1 and es.deleted[i] == 1 for i in retracted)
    stored = query_incidents(tmp_path / "a.db", IncidentQuery()).items
    assert set(_where(es, alias)) == {s.incident_id for s in stored}
    assert sink.dead_lettered == 0


def _njrat_retraction(model: Model) -> tuple[int, Incident]:
    """njrat-001 streamed: the one incident its end retracts, and the batch that first reported
    it."""
    stream = model.stream()
    first = {}
    for k, part in enumerate(_stream_batches("njrat-001")):
        for inc in stream.process(part)[2]:
            first.setdefault(id(inc), k)
    stream.finish()
    (gone,) = stream.retracted
    return first[id(gone)], gone


@pytest.mark.parametrize("setup", [True, False], ids=["alias", "no-index"])
def test_retracting_an_incident_never_written_is_a_no_op(
    es: FakeElasticsearch, tmp_path: Path, demo: Model, setup: bool
) -> None:
    """The delete of an incident Elasticsearch never got answers 404 (``not_found``, or no such
    index before ``es setup``): done, neither retried nor dead-lettered."""
    url = f"http://127.0.0.1:{es.port}"
    if setup:
        assert main(["es", "setup", "--url", url]) == 0
    sink = make_sink(url, tmp_path, Clock())
    _, gone = _njrat_retraction(demo)
    sink.write_incidents([gone])
    assert sink.deliver_once() == 1
    assert not sink.spool.peek(1)[0]
    assert sink.deleted == 1 and sink.retries == 0 and sink.dead_lettered == 0
    assert not es.deleted and not any(es.docs.values())
    assert not sink.dead_letter.exists()


def test_a_retraction_waits_in_the_spool_through_an_outage(
    es: FakeElasticsearch, tmp_path: Path, demo: Model
) -> None:
    """Elasticsearch answers 503 from the batch that first reports the njrat incident retracted
    at the end: its index and its delete wait in the spool, through a restart, in order, and
    once Elasticsearch answers the incident is not stored (a delete sent ahead of its index
    would leave it there); the other incidents are."""
    url = f"http://127.0.0.1:{es.port}"
    assert main(["es", "setup", "--url", url]) == 0
    alias = "logs-netanomd.incident-default"
    first, _ = _njrat_retraction(demo)
    ids = IncidentIds(OBSERVER.name)
    clock = Clock()
    sink = make_sink(url, tmp_path, clock, ids=ids)
    stream = demo.stream()
    for k, part in enumerate(_stream_batches("njrat-001")):
        if k == first:
            es.fail_requests = 1000
        sink.write_incidents(stream.process(part)[2])
        sink.deliver_once()
    assert first > 0 and len(es.docs[f"{alias}-000001"]) > 0  # some went out before
    final = stream.finish()
    (gone,) = stream.retracted
    sink.write_incidents([*final, gone])
    sink.deliver_once()
    sid = ids(gone)
    assert sink.retries >= 2 and sid not in _where(es, alias)
    assert sink.close(0) is False  # stopped with the index and the delete spooled
    es.fail_requests = 0
    sink = make_sink(url, tmp_path, clock, ids=ids)
    assert sink.drain(timeout=60)
    assert es.indexed[sid] == 1 and es.deleted[sid] == 1 and sink.deleted == 1
    assert set(_where(es, alias)) == {ids(i) for i in final}
    assert sink.dead_lettered == 0
