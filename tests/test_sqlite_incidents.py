"""Incidents in SQLite and ``netanomd incidents``: upsert by stable id, linked flow alerts,
schema migration, filters, JSON lines and the time-filter hint."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from netanomd.behaviour.detectors import Thresholds
from netanomd.behaviour.incidents import Incident
from netanomd.behaviour.measure import halves, load
from netanomd.behaviour.pipeline import BehaviourPipeline, learn
from netanomd.cli import main
from netanomd.data import baseline_files
from netanomd.decision import Alert
from netanomd.flow import FlowBatch
from netanomd.sinks import IncidentSink, SinkSet
from netanomd.sinks.incident_ids import IncidentIds
from netanomd.sinks.sqlite import (
    _V1,
    SCHEMA_VERSION,
    IncidentQuery,
    SQLiteSink,
    query_alerts,
    query_incidents,
)

DATA = Path(__file__).parent / "data"
SSH = DATA / "behaviour/slips-malicious-ssh-bruteforce.conn.log"
NMAP = DATA / "behaviour/zeek-traces-nmap-vsn.conn.log"
PORTSCAN = DATA / "behaviour/portscan-002.conn.log.gz"  # a scan updated as it goes on


@pytest.fixture(scope="module")
def thresholds() -> Thresholds:
    return learn([halves(load(baseline_files()[0]))[0]])


def stream(
    thresholds: Thresholds, batch: FlowBatch, sinks: SinkSet, step: int = 7
) -> list[Incident]:
    """Feed ``batch`` a few flows at a time, writing what each step opened or updated."""
    pipe = BehaviourPipeline(thresholds)
    for off in range(0, len(batch), step):
        sinks.write_incidents(pipe.process(batch.slice(off, step)))
    sinks.write_incidents(pipe.flush())
    return pipe.tracker.all()


def test_incidents_are_upserted_by_stable_id_with_their_flows(
    tmp_path: Path, thresholds: Thresholds
) -> None:
    batch = load(PORTSCAN)
    db = tmp_path / "a.db"
    sink = SQLiteSink(db, clock=lambda: 100.0, ids=IncidentIds("sensor-1"))
    assert isinstance(sink, IncidentSink)
    # The scan's flows are alerts too (as the Isolation Forest would raise them).
    sink.write([Alert(f, 0.7, 0.6, "iforest-t") for f in batch.records()])
    incidents = stream(thresholds, batch, SinkSet([sink]), step=200)
    inc = max(incidents, key=lambda i: i.flows)
    assert sink.incidents_written > len(incidents)  # written when opened, again as they grew
    page = query_incidents(db, IncidentQuery())
    assert page.total == len(incidents)
    (row,) = [r for r in page.items if r.host == inc.host and r.behaviour == inc.behaviour]
    # The stored version is the latest one.
    assert (row.flows, row.detections, row.title) == (inc.flows, inc.detections, inc.title)
    assert row.behaviour == "scan" and row.severity == inc.severity >= 47
    assert row.first_seen == inc.first_seen and row.last_seen == inc.last_seen
    assert row.evidence == inc.evidence and row.observer == "sensor-1"
    # Every column holds what the incident reports (JSON read back: pairs come back as lists).
    reported = inc.to_dict()
    reported["top_peers"] = [list(p) for p in reported["top_peers"]]
    del reported["id"]
    assert {k: row.to_dict()[k] for k in reported} == reported
    assert len(row.incident_id) == 32
    # The flow alerts underneath stay queryable, by the incident's id or a prefix of it.
    linked = query_alerts(db, incident=row.incident_id[:8], limit=None)
    assert {a.uid for a in linked} >= set(inc.uids) and len(linked) >= len(inc.uids) > 0
    assert {a.uid for a in linked} <= set(batch.column("uid").to_pylist())
    sink.close()

    # The same traffic on the same sensor (a restart, a replay) gives the same id; another
    # sensor another.
    for observer, same in (("sensor-1", True), ("sensor-2", False)):
        again = SQLiteSink(tmp_path / f"{observer}.db", ids=IncidentIds(observer))
        stream(thresholds, batch, SinkSet([again]), step=200)
        again.close()
        other = query_incidents(tmp_path / f"{observer}.db", IncidentQuery()).items
        assert ({o.incident_id for o in other} == {r.incident_id for r in page.items}) is same


def test_links_are_those_of_every_version_written(tmp_path: Path, thresholds: Thresholds) -> None:
    """An open incident's sample already linked is not linked again as it grows: the table
    still holds exactly what linking every version's sample and flow alerts gives, with
    released uids unlinked (and linked again while in the sample), a retracted incident's links
    gone, and a write that SQLite rolled back linking everything when retried."""
    db = tmp_path / "a.db"
    sink = SQLiteSink(db, ids=IncidentIds("sensor-1"))
    expected: set[tuple[str, str]] = set()

    def write(incidents: list[Incident]) -> None:
        sink.write_incidents(incidents)  # what every version of every incident links:
        for inc in incidents:
            sid = sink.ids(inc)
            expected.difference_update((sid, uid) for uid in inc.released_uids)
            if inc.retracted:
                expected.difference_update([link for link in expected if link[0] == sid])
            else:
                expected.update((sid, uid) for uid in (*inc.uids, *inc.alert_uids) if uid)

    def stored() -> set[tuple[str, str]]:
        with sqlite3.connect(db) as conn:
            return set(conn.execute("SELECT incident_id, uid FROM incident_flows"))

    with sqlite3.connect(db) as conn:  # a failure inside the write's transaction
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON incident_flows WHEN NEW.uid = 'boom' "
            "BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
    pipe = BehaviourPipeline(thresholds)
    batch = load(PORTSCAN)
    first = pipe.process(batch.slice(0, 300))
    assert first and first[0].uids
    first[0].alert_uids = ["boom"]
    with pytest.raises(sqlite3.IntegrityError, match="boom"):
        sink.write_incidents(first)
    assert stored() == set()  # rolled back: nothing of it is linked, nor remembered as linked
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER boom")
    write(first)
    first[0].alert_uids = []
    for off in range(300, len(batch), 300):
        write(pipe.process(batch.slice(off, 300)))
        assert stored() == expected
    held = max(pipe.tracker.open.values(), key=lambda i: len(i.uids))
    assert len(held.uids) == 10  # a full sample, linked already
    held.alert_uids = ["C-alert-1", "C-alert-2"]
    write([held])
    held.alert_uids, held.released_uids = [], [held.uids[0], "C-alert-1"]
    write([held])
    assert (sink.ids(held), held.uids[0]) in stored() == expected
    assert (sink.ids(held), "C-alert-1") not in expected
    held.released_uids, held.retracted = [], True
    write([held])
    write(pipe.flush())
    assert stored() == expected and not any(link[0] == sink.ids(held) for link in expected)
    sink.close()


def test_v1_database_is_migrated_in_place(tmp_path: Path, thresholds: Thresholds) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(_V1)
    conn.execute(
        "INSERT INTO alerts (alert_id, ts, uid, score, threshold, model_id, reason, explanation,"
        " created_at) VALUES ('a1', 1.0, 'C1', 0.9, 0.6, 'm', 'r', '[]', 2.0)"
    )
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    sink = SQLiteSink(db)
    stream(thresholds, load(NMAP), SinkSet([sink]), step=100)
    sink.close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    conn.close()
    assert [(a.alert_id, a.signatures) for a in query_alerts(db)] == [("a1", None)]
    assert query_incidents(db, IncidentQuery()).total == 1


def test_incidents_command(
    tmp_path: Path, thresholds: Thresholds, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "a.db"
    sink = SQLiteSink(db)
    ssh = stream(thresholds, load(SSH), SinkSet([sink]))
    nmap = stream(thresholds, load(NMAP), SinkSet([sink]))
    sink.close()
    (brute,), (scan,) = ssh, nmap
    oldest, newest = sorted((brute, scan), key=lambda i: i.last_seen)

    assert main(["incidents", "--db", str(db), "--json"]) == 0
    out, err = capsys.readouterr()
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert [d["title"] for d in lines] == [newest.title, oldest.title]  # newest first
    assert {d["behaviour"] for d in lines} == {brute.behaviour, scan.behaviour}
    assert "showing 2 of 2 incidents" in err

    main(["incidents", "--db", str(db), "--json", "--behaviour", "Brute Force"])
    out, _ = capsys.readouterr()
    assert [orjson.loads(x)["host"] for x in out.splitlines()] == [brute.host]
    main(["incidents", "--db", str(db), "--json", "--host", scan.host, "--limit", "0"])
    out, _ = capsys.readouterr()
    assert [orjson.loads(x)["host"] for x in out.splitlines()] == [scan.host]
    main(["incidents", "--db", str(db), "--severity", "high", "--json"])
    out, _ = capsys.readouterr()
    assert all(orjson.loads(x)["severity"] >= 70 for x in out.splitlines())
    assert len(out.splitlines()) == sum(i.severity >= 70 for i in (brute, scan))

    main(["incidents", "--db", str(db), "--limit", "1"])
    out, _ = capsys.readouterr()
    header, first, footer = out.splitlines()
    assert header.split()[:4] == ["LAST", "SEEN", "(UTC)", "SEVERITY"]
    assert first.endswith(newest.title) and footer == "showing 1 of 2 incidents"

    # A time filter that hides everything says so, and where the incidents lie in flow time.
    main(["incidents", "--db", str(db), "--since", "1h"])
    out, _ = capsys.readouterr()
    assert "time filter hides all 2" in out and "flow time" in out
    lo = min(brute.first_seen, scan.first_seen)
    main(["incidents", "--db", str(db), "--json", "--until", str(lo), "--since", str(lo)])
    out, _ = capsys.readouterr()
    assert len(out.splitlines()) == 1

    assert main(["incidents", "--db", str(db), "--severity", "urgent"]) == 2
    assert "--severity 'urgent'" in capsys.readouterr().err


def test_every_flow_alert_is_linked_to_its_incident(tmp_path: Path) -> None:
    """Each stored flow alert is linked to the incident holding it (not only a sample of 10
    uids per incident): ``alerts --incident`` lists all of an incident's flow alerts."""
    from netanomd.commands.score import score_files
    from netanomd.data import attack_files, demo_model

    db = tmp_path / "a.db"
    score_files(demo_model(), [str(p) for p in attack_files()], SinkSet([SQLiteSink(db)]))
    with sqlite3.connect(db) as conn:
        alerted = {u for (u,) in conn.execute("SELECT uid FROM alerts")}
        linked = {u for (u,) in conn.execute("SELECT DISTINCT uid FROM incident_flows")}
    assert len(alerted) > 900 and alerted <= linked
    incidents = query_incidents(db, IncidentQuery()).items
    cc = next(i for i in incidents if i.behaviour == "repeated failed connections")
    under = query_alerts(db, incident=cc.incident_id)
    assert len(under) > 100  # the C&C's flow alerts, where the sample holds 10
    assert {(a.orig_h, a.resp_h) for a in under} == {(cc.host, cc.peer)}
    # each alert sits under one incident
    total = sum(len(query_alerts(db, incident=i.incident_id)) for i in incidents)
    assert total == len(alerted)
