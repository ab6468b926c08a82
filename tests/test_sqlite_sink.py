"""SQLite alert store: schema version, WAL, deduplication, queries."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from netanomd.decision import Alert, Contribution
from netanomd.errors import InputError
from netanomd.sinks import Sink
from netanomd.sinks.sqlite import SCHEMA_VERSION, SQLiteSink, query_alerts
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
