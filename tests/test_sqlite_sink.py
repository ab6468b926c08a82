"""SQLite alert store: schema version, WAL, deduplication, queries."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from netanomd.data import attack_files, baseline_files
from netanomd.decision import Alert, Contribution, verdicts
from netanomd.errors import InputError
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.sinks import Sink
from netanomd.sinks.sqlite import SCHEMA_VERSION, SQLiteSink, query_alerts
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches
from tests.test_features import HTTP, REJ


def alert(flow=REJ, score: float = 0.7) -> Alert:  # type: ignore[no-untyped-def]
    why = Contribution("state_REJ", "conn_state REJ", 1.0, 0.002, "share", "rare", 2.7)
    return Alert(flow, score, threshold=0.6, model_id="iforest-test", contributions=(why,))


def test_write_query_and_dedup(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    sink = SQLiteSink(db, clock=lambda: 1234.5)
    assert isinstance(sink, Sink)
    sink.write([alert(REJ, 0.7), alert(HTTP, 0.65)])
    sink.write([alert(REJ, 0.7)])  # the same alert again: a retry must not duplicate it
    sink.close()
    assert sink.written == 2 and sink.duplicates == 1
    rows = query_alerts(db)
    assert [r.uid for r in rows] == [REJ.uid, HTTP.uid]  # highest score first
    top = rows[0]
    assert (top.orig_h, top.orig_p, top.resp_h, top.resp_p, top.proto) == (
        "192.168.1.107",
        65164,
        "66.63.168.35",
        5888,
        "tcp",
    )
    assert top.reason == "5888/tcp: rejected; conn_state REJ in only 0.20% of training flows"
    assert top.explanation[0]["feature"] == "state_REJ"
    assert top.label == "Malicious" and top.created_at == 1234.5
    assert [r.uid for r in query_alerts(db, min_score=0.68)] == [REJ.uid]
    assert [r.uid for r in query_alerts(db, since=1677000000.0)] == [REJ.uid]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_refuses_newer_schema_and_non_database(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(InputError, match="newer"):
        SQLiteSink(db)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InputError, match=r"junk\.db"):
        SQLiteSink(junk)
    with pytest.raises(InputError, match="no alert database"):
        query_alerts(tmp_path / "missing.db")


def test_batch_alerts_are_the_alerts_made_one_by_one(demo: Model, tmp_path: Path) -> None:
    """make_alerts words, ids and explains a batch's alerts column-wise, the wording of flow
    shapes and contributions shared; an alert copied with dataclasses.replace recomputes each
    from its own flow, and a reason worded with nothing shared is the same: they must agree on
    real traffic, and the store must hold exactly those values."""
    files = [*baseline_files(), *attack_files()]
    flows = FlowBatch.concat(list(read_batches(files, ReadStats())))
    # A low threshold, so ordinary services (with their own baselines) alert too.
    low = float(np.quantile(demo.score(flows, fresh=True), 0.9))
    _, alerts = demo.run(flows, low, fresh=True)
    assert len(alerts) > 500
    assert {a.flow.proto for a in alerts} >= {"tcp", "udp", "icmp"}
    assert any(" for " in c.baseline_name for a in alerts for c in a.contributions)
    assert 20 < len({a.reason for a in alerts}) < len(alerts)  # shared wording, not one for all
    again = [dataclasses.replace(a) for a in alerts]
    assert [a.reason for a in again] == [a.reason for a in alerts]
    assert [verdicts._reason(a, {}, {}) for a in again] == [a.reason for a in alerts]
    assert [a.alert_id for a in again] == [a.alert_id for a in alerts]
    assert [json.loads(a.explanation_json) for a in alerts] == [
        [c.to_dict() for c in a.contributions] for a in alerts
    ]
    sink = SQLiteSink(tmp_path / "a.db")
    sink.write(alerts)
    sink.close()
    stored = {r.alert_id: r for r in query_alerts(tmp_path / "a.db")}
    assert sink.written == len(stored) == len(alerts)
    for a in again:
        r = stored[a.alert_id]
        assert (r.reason, r.score, r.uid) == (a.reason, a.score, a.flow.uid)
        assert r.explanation == [c.to_dict() for c in a.contributions]


def test_incident_columns_are_what_an_incident_reports_in_order() -> None:
    """An incident's row is sliced from :meth:`Incident.reported` by position, so the table's
    columns must name what it reports, in its order (``incident_id`` for its ``id``): a column
    moved in one list and not the other would store values under the wrong names."""
    from netanomd.behaviour.incidents import REPORTED
    from netanomd.sinks import sqlite

    assert sqlite._INCIDENT_COLUMNS[: len(REPORTED)] == ("incident_id", *REPORTED[1:])
