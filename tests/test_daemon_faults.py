"""Faults a sensor meets, on a real `netanomd run` daemon (followed Zeek log, SQLite, HTTP):
a count the model cannot hold is refused by the reader, and not read again after a restart; a sink
that cannot write holds the files' positions back and health says so until it writes again; a
source thread that dies is restarted and counted."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from netanomd.daemon.service import Daemon
from netanomd.sdnotify import Notifier
from tests.test_daemon import model_path, tsv_header, tsv_rows, write_config
from tests.waiting import wait

POISON_BYTES = str(2**60).encode()  # a count Zeek can log; above float64's exact integers


def poisoned(row: bytes) -> bytes:
    fields = row.split(b"\t")
    fields[9] = POISON_BYTES  # orig_bytes
    fields[1] = b"CPoison000000000001"
    return b"\t".join(fields)


def healthz(d: Daemon) -> tuple[int, dict[str, Any]]:
    assert d.server is not None
    try:
        r = urllib.request.urlopen(f"http://127.0.0.1:{d.server.port}/healthz")
        return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stored(db: Path) -> set[str]:
    with sqlite3.connect(db) as con:
        return {r[0] for r in con.execute("SELECT uid FROM alerts")}


def test_a_count_the_model_cannot_hold_is_refused_by_the_reader(
    tmp_path: Path, model_path: Path
) -> None:
    """orig_bytes 2**60 once reached the scorer and was set aside there; the readers now refuse
    it as a malformed line (tests/test_fuzz.py), so nothing is quarantined. (No input is known
    any more that passes a reader and makes the model fail.)"""
    rows = tsv_rows()[:200]
    log = tmp_path / "conn.log"
    log.write_bytes(tsv_header() + b"".join(rows[:50]) + poisoned(rows[50]) + b"".join(rows[51:]))
    cfg = write_config(
        tmp_path,
        model_path,
        [{"type": "zeek_log", "path": str(log), "from_start": True}],
        model={"threshold": 0.0},  # every scored flow is stored
    )
    d = Daemon(str(cfg), notifier=Notifier(env={}))
    d.start()
    try:
        p = d.pipeline
        assert p is not None
        wait(lambda: p.stats.scored == len(rows) - 1, 30, "every good flow scored")
        assert p.stats.quarantined == 0
        status, health = healthz(d)
        assert status == 200 and health["ready"] and health["quarantined"] == 0
    finally:
        assert d.shutdown() == 0
    assert not (tmp_path / "state" / "quarantine.jsonl").exists()
    expected = {r.split(b"\t")[1].decode() for i, r in enumerate(rows) if i != 50}
    assert stored(tmp_path / "alerts.db") == expected
    # A restart resumes after the poison line: nothing is set aside (or scored) again.
    again = Daemon(str(cfg), notifier=Notifier(env={}))
    again.start()
    try:
        with log.open("ab") as fh:
            fh.write(tsv_rows()[300])
        assert again.pipeline is not None
        wait(lambda: again.pipeline is not None and again.pipeline.stats.scored == 1, 30)
        assert again.pipeline.stats.quarantined == 0
    finally:
        assert again.shutdown() == 0


def test_a_sink_that_cannot_write_holds_positions_back(tmp_path: Path, model_path: Path) -> None:
    rows = tsv_rows()[:300]
    log = tmp_path / "conn.log"
    log.write_bytes(tsv_header() + b"".join(rows[:100]))
    cfg = write_config(
        tmp_path,
        model_path,
        [{"type": "zeek_log", "path": str(log), "from_start": True}],
        model={"threshold": 0.0},
    )
    d = Daemon(str(cfg), notifier=Notifier(env={}))
    d.start()
    offsets = tmp_path / "state" / "offsets.json"
    try:
        p = d.pipeline
        assert p is not None
        first = log.stat().st_size
        wait(lambda: offsets.exists() and str(log) in offsets.read_text(), 30, "first 100")
        wait(lambda: json.loads(offsets.read_text())[str(log)]["offset"] == first, 30)
        committed = json.loads(offsets.read_text())
        sqlite = next(s for s in p.sinks if s.name == "sqlite")
        real_write = sqlite.write
        full = {"on": True}

        def write(alerts: Any) -> None:
            if full["on"]:
                raise sqlite3.OperationalError("database or disk is full")
            real_write(alerts)

        sqlite.write = write  # type: ignore[method-assign]
        with log.open("ab") as fh:
            fh.write(b"".join(rows[100:]))
        wait(lambda: "sqlite" in p.sinks.failing, 30, "the sink fails")
        status, health = healthz(d)
        assert status == 503 and not health["ready"]
        assert health["problems"] == ["sink sqlite cannot write"]
        assert json.loads(offsets.read_text()) == committed  # positions held back
        full["on"] = False  # space freed
        wait(lambda: p.stats.scored == 300, 30, "resumes by itself")
        wait(lambda: healthz(d)[0] == 200, 10, "ready again")
    finally:
        assert d.shutdown() == 0
    assert len(stored(tmp_path / "alerts.db")) == 300  # none lost
    assert json.loads(offsets.read_text())[str(log)]["offset"] == log.stat().st_size


def test_a_dead_source_thread_is_restarted(tmp_path: Path, model_path: Path) -> None:
    log = tmp_path / "conn.log"
    rows = tsv_rows()[:100]
    log.write_bytes(tsv_header() + b"".join(rows[:50]))
    cfg = write_config(
        tmp_path, model_path, [{"type": "zeek_log", "path": str(log), "from_start": True}]
    )
    d = Daemon(str(cfg), notifier=Notifier(env={}))
    d.start()
    try:
        p = d.pipeline
        assert p is not None
        wait(lambda: p.stats.scored == 50, 30, "first 50")
        src = d.sources[0]
        thread, run = d.threads[src.name]
        d.threads[src.name] = (thread, _crashing(run))  # its next run hits "a bug" once
        src.stop()  # the running thread ends
        wait(lambda: not thread.is_alive(), 10, "thread ended")
        src._stop.clear()  # type: ignore[attr-defined]
        d._supervise()  # what the daemon's main loop does every second
        wait(lambda: not d.threads[src.name][0].is_alive(), 10, "the bug")
        d._supervise()
        with log.open("ab") as fh:
            fh.write(b"".join(rows[50:]))
        wait(lambda: p.stats.scored == 100, 30, "scoring goes on")
        assert healthz(d)[1]["sources"][src.name]["restarts"] == 2
    finally:
        assert d.shutdown() == 0


def _crashing(run: Any) -> Any:
    state = {"n": 0}

    def wrapped() -> None:
        state["n"] += 1
        if state["n"] == 1:
            raise RuntimeError("a bug in a source")
        run()

    return wrapped


__all__ = ["model_path"]  # the fixture, shared with test_daemon
