"""SQLite alert store: one row per alert, deduplicated by the alert's deterministic id.

Owns the schema (versioned with ``PRAGMA user_version``; opened in WAL mode so readers such as
``netanomd alerts`` never block the writer) and the queries the CLI runs against it.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netanomd.decision import Alert
from netanomd.errors import InputError
from netanomd.fsutil import open_append

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id            INTEGER PRIMARY KEY,
    alert_id      TEXT NOT NULL UNIQUE,
    ts            REAL,
    uid           TEXT,
    orig_h        TEXT,
    orig_p        INTEGER,
    resp_h        TEXT,
    resp_p        INTEGER,
    proto         TEXT,
    service       TEXT,
    score         REAL NOT NULL,
    threshold     REAL NOT NULL,
    model_id      TEXT NOT NULL,
    reason        TEXT NOT NULL,
    explanation   TEXT NOT NULL,   -- JSON list of contributions
    source        TEXT,
    community_id  TEXT,
    flow_id       INTEGER,
    label         TEXT,            -- ground truth when the input carried it (evaluation only)
    created_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_ts ON alerts (ts);
CREATE INDEX IF NOT EXISTS alerts_score ON alerts (score);
"""

_COLUMNS = (
    "alert_id",
    "ts",
    "uid",
    "orig_h",
    "orig_p",
    "resp_h",
    "resp_p",
    "proto",
    "service",
    "score",
    "threshold",
    "model_id",
    "reason",
    "explanation",
    "source",
    "community_id",
    "flow_id",
    "label",
    "created_at",
)


def default_db_path() -> Path:
    """``$XDG_DATA_HOME/netanomd/alerts.db`` (``~/.local/share/netanomd/alerts.db``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "netanomd" / "alerts.db"


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open (creating or upgrading) the alert database."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():  # SQLite gives its -wal and -shm files the database file's mode
        open_append(path).close()
    try:
        conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path}: not a netanomd alert database ({exc})") from exc
    if version > SCHEMA_VERSION:
        raise InputError(
            f"{path}: alert database schema version {version} is newer than this netanomd "
            f"understands ({SCHEMA_VERSION})"
        )
    if version < SCHEMA_VERSION:
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.commit()
    return conn


def _row(alert: Alert, now: float) -> tuple[Any, ...]:
    f = alert.flow
    return (
        alert.alert_id,
        f.ts,
        f.uid,
        f.orig_h,
        f.orig_p,
        f.resp_h,
        f.resp_p,
        f.proto,
        f.service,
        alert.score,
        alert.threshold,
        alert.model_id,
        alert.reason,
        json.dumps([c.to_dict() for c in alert.contributions]),
        f.source,
        f.community_id,
        f.flow_id,
        f.label,
        now,
    )


class SQLiteSink:
    """Stores alerts in SQLite (implements :class:`netanomd.sinks.Sink`)."""

    name = "sqlite"

    def __init__(self, path: str | os.PathLike[str], clock: Any = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._conn = connect(self.path)
        self.written = 0
        self.duplicates = 0

    def write(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        now = float(self._clock())
        sql = (
            f"INSERT OR IGNORE INTO alerts ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_COLUMNS))})"
        )
        with self._conn:
            before = self._conn.total_changes
            self._conn.executemany(sql, [_row(a, now) for a in alerts])
            added = self._conn.total_changes - before
        self.written += added
        self.duplicates += len(alerts) - added

    def open(self) -> None:
        """The database is opened (and its schema checked) by the constructor."""

    def flush(self) -> None:
        self._conn.commit()

    def close(self, timeout: float = 30.0) -> bool:
        self._conn.commit()
        self._conn.close()
        return True


@dataclass(frozen=True)
class StoredAlert:
    """An alert row as read back from the database."""

    alert_id: str
    ts: float | None
    uid: str | None
    orig_h: str | None
    orig_p: int | None
    resp_h: str | None
    resp_p: int | None
    proto: str | None
    service: str | None
    score: float
    threshold: float
    model_id: str
    reason: str
    explanation: list[dict[str, Any]]
    source: str | None
    community_id: str | None
    flow_id: int | None
    label: str | None
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def query_alerts(
    path: str | os.PathLike[str],
    *,
    since: float | None = None,
    min_score: float | None = None,
    limit: int | None = None,
    order: str = "score",
) -> list[StoredAlert]:
    """Alerts from the database, highest score first (or newest first with ``order="ts"``)."""
    if not Path(path).exists():
        raise InputError(f"{path}: no alert database (run 'netanomd score' or 'netanomd demo')")
    conn = connect(path)
    try:
        where, params = [], []
        if since is not None:
            where.append("ts >= ?")
            params.append(since)
        if min_score is not None:
            where.append("score >= ?")
            params.append(min_score)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM alerts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY score DESC, ts" if order == "score" else " ORDER BY ts DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = conn.execute(sql, params).fetchall()
    finally:
        conn.close()
    out = []
    for r in rows:
        d = dict(zip(_COLUMNS, r, strict=True))
        d["explanation"] = json.loads(d["explanation"])
        out.append(StoredAlert(**d))
    return out
