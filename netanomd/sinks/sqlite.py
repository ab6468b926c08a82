"""SQLite alert store: one row per alert, deduplicated by the alert's deterministic id, and one
row per incident, replaced whenever the incident grows.

Owns the schema (versioned with ``PRAGMA user_version`` and migrated in place, one step per
version; opened in WAL mode so readers such as ``netanomd alerts`` never block the writer) and
the queries the CLI runs against it. Incidents are stored under their stable id
(:mod:`netanomd.sinks.incident_ids`); ``incident_flows`` links each incident to the uids of its
flows, so the flow alerts underneath an incident stay queryable (:func:`query_alerts` with
``incident=``).
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
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from netanomd.decision import Alert
from netanomd.errors import InputError
from netanomd.fsutil import open_append
from netanomd.sinks.incident_ids import IncidentIds

if TYPE_CHECKING:
    from netanomd.behaviour.incidents import Incident

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3

_V1 = """
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

_V2 = """
CREATE TABLE IF NOT EXISTS incidents (
    incident_id   TEXT PRIMARY KEY,
    role          TEXT NOT NULL,   -- orig, resp or service
    host          TEXT NOT NULL,
    behaviour     TEXT NOT NULL,
    detail        TEXT NOT NULL,
    title         TEXT NOT NULL,
    severity      INTEGER NOT NULL, -- 0-100, as ECS event.severity
    severity_label TEXT NOT NULL,
    score         REAL NOT NULL,
    first_seen    REAL NOT NULL,   -- flow time
    last_seen     REAL NOT NULL,
    flows         INTEGER NOT NULL,
    detections    INTEGER NOT NULL,
    peer          TEXT NOT NULL,
    port          INTEGER NOT NULL,
    proto         TEXT NOT NULL,
    top_peers     TEXT NOT NULL,   -- JSON [[peer, flows], ...]
    uids          TEXT NOT NULL,   -- JSON list (a sample)
    community_ids TEXT NOT NULL,   -- JSON list (a sample)
    evidence      TEXT NOT NULL,   -- JSON object of numbers
    closed        INTEGER NOT NULL,
    observer      TEXT NOT NULL,
    created_at    REAL NOT NULL,   -- wall clock of the first write
    updated_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_last_seen ON incidents (last_seen);
CREATE INDEX IF NOT EXISTS incidents_host ON incidents (host);
CREATE TABLE IF NOT EXISTS incident_flows (
    incident_id   TEXT NOT NULL,
    uid           TEXT NOT NULL,
    PRIMARY KEY (incident_id, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS incident_flows_uid ON incident_flows (uid);
CREATE INDEX IF NOT EXISTS alerts_uid ON alerts (uid);
"""

_V3 = """
ALTER TABLE alerts ADD COLUMN signatures TEXT;  -- JSON list of Suricata's signatures, or NULL
"""

#: The script that brings a database from version ``v - 1`` to ``v``.
_MIGRATIONS: dict[int, str] = {1: _V1, 2: _V2, 3: _V3}

_INCIDENT_COLUMNS = (
    "incident_id",
    "role",
    "host",
    "behaviour",
    "detail",
    "title",
    "severity",
    "severity_label",
    "score",
    "first_seen",
    "last_seen",
    "flows",
    "detections",
    "peer",
    "port",
    "proto",
    "top_peers",
    "uids",
    "community_ids",
    "evidence",
    "closed",
    "observer",
    "created_at",
    "updated_at",
)
#: The columns stored as JSON (and read back as lists and objects).
_INCIDENT_JSON = ("top_peers", "uids", "community_ids", "evidence")
#: Where the JSON columns and ``closed`` sit in a row (and in what an incident reports, whose
#: order the columns keep, ``incident_id`` in place of its ``id``).
_JSON_AT = _INCIDENT_COLUMNS.index(_INCIDENT_JSON[0])
_CLOSED_AT = _INCIDENT_COLUMNS.index("closed")

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
    "signatures",
)


def default_db_path() -> Path:
    """``$XDG_DATA_HOME/netanomd/alerts.db`` (``~/.local/share/netanomd/alerts.db``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "netanomd" / "alerts.db"


def daemon_db_path() -> Path:
    """Where the daemon keeps its database unless configured otherwise."""
    from netanomd.config import SqliteSinkConfig

    return Path(SqliteSinkConfig().path)


def reading_db_path(given: str | os.PathLike[str] | None) -> Path:
    """The database a reading command (``netanomd alerts``, ``incidents``) opens: the one
    given; else the user's (:func:`default_db_path`, where ``score`` and ``demo`` write) when
    it exists; else the daemon's when that exists; else the user's (to say it is missing)."""
    if given is not None:
        return Path(given)
    for path in (default_db_path(), daemon_db_path()):
        if path.exists():
            return path
    return default_db_path()


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
    for step in range(version + 1, SCHEMA_VERSION + 1):
        if version > 0:  # an existing database, not a new one
            log.info("%s: upgrading the alert database to schema version %d", path, step)
        # executescript commits first; BEGIN makes the step and its version one transaction.
        conn.executescript(f"BEGIN; {_MIGRATIONS[step]} PRAGMA user_version={step}; COMMIT;")
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
        alert.explanation_json,
        f.source,
        f.community_id,
        f.flow_id,
        f.label,
        now,
        json.dumps([s.to_dict() for s in f.signatures]) if f.signatures else None,
    )


def _incident_row(inc: Incident, incident_id: str, observer: str, now: float) -> tuple[Any, ...]:
    """The ``incidents`` row of ``inc``: what it reports (:meth:`Incident.reported`, in the
    order of :data:`_INCIDENT_COLUMNS`) under ``incident_id``, the lists and the evidence as
    JSON."""
    v = inc.reported()
    return (
        incident_id,
        *v[1:_JSON_AT],
        *map(json.dumps, v[_JSON_AT:_CLOSED_AT]),
        int(v[_CLOSED_AT]),
        observer,
        now,
        now,
    )


#: Past this many open incidents remembered, :attr:`SQLiteSink._linked` starts again.
_LINKED_MAX = 1 << 16
_UIDS_AT = _INCIDENT_COLUMNS.index("uids")
#: Links an incident to the uids of a JSON list (empty ones and nulls left out; :func:`json.dumps`
#: writes what ``json_each`` reads back as the same strings).
_LINK_UIDS = (
    "INSERT OR IGNORE INTO incident_flows (incident_id, uid) "
    "SELECT ?, value FROM json_each(?) WHERE value != ''"
)

_UPSERT_INCIDENT = (
    f"INSERT INTO incidents ({', '.join(_INCIDENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_INCIDENT_COLUMNS))}) ON CONFLICT (incident_id) DO UPDATE SET "
    + ", ".join(
        f"{c} = excluded.{c}" for c in _INCIDENT_COLUMNS if c not in ("incident_id", "created_at")
    )
)


class SQLiteSink:
    """Stores alerts and incidents in SQLite (implements
    :class:`netanomd.sinks.IncidentSink`)."""

    name = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        clock: Any = time.time,
        ids: IncidentIds | None = None,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._conn = connect(self.path)
        self.ids = ids if ids is not None else IncidentIds()
        self.written = 0
        self.duplicates = 0
        #: Incident versions written (an update of a stored incident counts again).
        self.incidents_written = 0
        #: Per open incident written (by stored id), the JSON list of sample uids last linked
        #: to it (a cache, never more than the database holds): a later version with the same
        #: sample does not link it again.
        self._linked: dict[str, str] = {}

    def write_incidents(self, incidents: Sequence[Incident]) -> None:
        """Insert new incidents and replace the stored version of updated ones (by id); link
        each to the uids of its flows: its sample (unless that sample is linked already) and
        the flow alerts of the latest batch."""
        if not incidents:
            return
        now = float(self._clock())
        observer = self.ids.observer
        rows: list[tuple[Any, ...]] = []
        links: list[tuple[str, str]] = []  # (incident id, JSON list of uids)
        unlink: list[tuple[str, str]] = []  # alerts a named incident took over
        gone: list[tuple[str]] = []
        linked: dict[str, str | None] = {}  # what self._linked becomes once committed
        for inc in incidents:
            sid = self.ids(inc)
            last = self._linked.get(sid)
            if inc.released_uids:
                unlink.extend((sid, uid) for uid in inc.released_uids)
                last = None
            if inc.retracted:
                gone.append((sid,))
                linked[sid] = None
                continue
            row = _incident_row(inc, sid, observer, now)
            rows.append(row)
            sample = row[_UIDS_AT]
            if sample != last:
                links.append((sid, sample))
            if inc.alert_uids:
                links.append((sid, json.dumps(inc.alert_uids)))
            # (a closed incident that reopens links its sample again: no harm)
            linked[sid] = None if inc.closed else sample
        with self._conn:
            self._conn.executemany(
                "DELETE FROM incident_flows WHERE incident_id = ? AND uid = ?", unlink
            )
            self._conn.executemany("DELETE FROM incident_flows WHERE incident_id = ?", gone)
            self._conn.executemany("DELETE FROM incidents WHERE incident_id = ?", gone)
            self._conn.executemany(_UPSERT_INCIDENT, rows)
            # by incident id: the rows of the key's index are written in its order
            self._conn.executemany(_LINK_UIDS, sorted(links))
        self.incidents_written += len(rows)
        if len(self._linked) > _LINKED_MAX:  # a cache: what it forgets is linked again
            self._linked.clear()
        for sid, sample in linked.items():
            if sample is None:
                self._linked.pop(sid, None)
            else:
                self._linked[sid] = sample

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
    #: Suricata's signatures that fired on the flow (signature, signature_id, severity,
    #: category), when the sensor was Suricata with alert output on.
    signatures: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class AlertQuery:
    """Which alerts to list (every filter optional; times are flow time, epoch seconds)."""

    since: float | None = None
    until: float | None = None
    min_score: float | None = None
    host: str | None = None  # either end
    port: int | None = None  # the responder's
    incident: str | None = None  # an incident id, or a prefix of it

    def where(self, *, with_time: bool = True) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.incident is not None:
            text = self.incident.lower()
            if not text or any(c not in "0123456789abcdef" for c in text):
                raise InputError(
                    f"incident id {self.incident!r}: expected hex digits (a prefix will do)"
                )
            clauses.append("uid IN (SELECT uid FROM incident_flows WHERE incident_id LIKE ?)")
            params.append(text + "%")
        if self.min_score is not None:
            clauses.append("score >= ?")
            params.append(self.min_score)
        if self.host is not None:
            clauses.append("(orig_h = ? OR resp_h = ?)")
            params += [self.host, self.host]
        if self.port is not None:
            clauses.append("resp_p = ?")
            params.append(self.port)
        if with_time and self.since is not None:
            clauses.append("ts >= ?")
            params.append(self.since)
        if with_time and self.until is not None:
            clauses.append("ts <= ?")
            params.append(self.until)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    @property
    def timed(self) -> bool:
        return self.since is not None or self.until is not None


def query_alerts(
    path: str | os.PathLike[str],
    *,
    since: float | None = None,
    min_score: float | None = None,
    limit: int | None = None,
    order: str = "score",
    incident: str | None = None,
) -> list[StoredAlert]:
    """Alerts from the database, highest score first (or newest first with ``order="ts"``);
    with ``incident``, only the flow alerts linked to that incident (by uid)."""
    query = AlertQuery(since=since, min_score=min_score, incident=incident)
    return alert_page(path, query, limit=limit, order=order).items


_ALERT_ORDER = {"score": "score DESC, ts", "ts": "ts DESC, score DESC"}


def alert_page(
    path: str | os.PathLike[str],
    query: AlertQuery,
    *,
    limit: int | None = None,
    order: str = "score",
) -> Page[StoredAlert]:
    """Alerts matching ``query``, highest score first (``order="ts"``: newest first), at most
    ``limit`` (None: all), with how many matched in all."""
    if order not in _ALERT_ORDER:
        raise ValueError(f"order must be one of {sorted(_ALERT_ORDER)}, not {order!r}")
    conn = _open_existing(path)
    try:
        rows, page = _page(
            conn, "alerts", _COLUMNS, query, query.timed, _ALERT_ORDER[order], limit, "ts", "ts"
        )
    finally:
        conn.close()
    out = []
    for r in rows:
        d = dict(zip(_COLUMNS, r, strict=True))
        d["explanation"] = json.loads(d["explanation"])
        d["signatures"] = json.loads(d["signatures"]) if d["signatures"] else None
        out.append(StoredAlert(**d))
    return page.with_items(out)


class _Filter(Protocol):
    def where(self, *, with_time: bool = True) -> tuple[str, list[Any]]: ...


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing: the items, how many matched in all and, when a time filter hid
    every match, how many it hid and their flow-time span."""

    items: list[T]
    total: int
    hidden_by_time: int = 0
    span: tuple[float, float] | None = None

    def with_items(self, items: list[Any]) -> Page[Any]:
        return Page(items, self.total, self.hidden_by_time, self.span)


def _page(
    conn: sqlite3.Connection,
    table: str,
    columns: Sequence[str],
    query: _Filter,
    timed: bool,
    order: str,
    limit: int | None,
    first: str,
    last: str,
) -> tuple[list[Any], Page[Any]]:
    """The rows of one page and its counts (see :class:`Page`); ``first``/``last`` are the
    columns that bound a row in flow time."""
    where, params = query.where()
    total = int(conn.execute(f"SELECT count(*) FROM {table}{where}", params).fetchone()[0])
    sql = f"SELECT {', '.join(columns)} FROM {table}{where} ORDER BY {order}"
    if limit is not None:
        sql += " LIMIT ?"
        params = [*params, int(limit)]
    rows = conn.execute(sql, params).fetchall()
    hidden, span = 0, None
    if total == 0 and timed:
        untimed, uparams = query.where(with_time=False)
        n, lo, hi = conn.execute(
            f"SELECT count(*), min({first}), max({last}) FROM {table}{untimed}", uparams
        ).fetchone()
        if n and lo is not None:
            hidden, span = int(n), (float(lo), float(hi))
    return rows, Page([], total, hidden, span)


def _open_existing(path: str | os.PathLike[str]) -> sqlite3.Connection:
    if not Path(path).exists():
        raise InputError(
            f"{path}: no alert database (run 'netanomd score' or 'netanomd demo'; the daemon "
            f"writes {daemon_db_path()} unless configured otherwise: give it with --db)"
        )
    return connect(path)


@dataclass(frozen=True)
class StoredIncident:
    """An incident row as read back from the database (times are flow time)."""

    incident_id: str
    role: str
    host: str
    behaviour: str
    detail: str
    title: str
    severity: int
    severity_label: str
    score: float
    first_seen: float
    last_seen: float
    flows: int
    detections: int
    peer: str
    port: int
    proto: str
    top_peers: list[list[Any]]
    uids: list[str]
    community_ids: list[str]
    evidence: dict[str, float]
    closed: bool
    observer: str
    created_at: float
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class IncidentQuery:
    """Which incidents to list (every filter optional; times are flow time, epoch seconds)."""

    min_severity: int | None = None
    behaviour: str | None = None
    host: str | None = None
    since: float | None = None
    until: float | None = None

    def where(self, *, with_time: bool = True) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.min_severity is not None:
            clauses.append("severity >= ?")
            params.append(self.min_severity)
        if self.behaviour is not None:
            clauses.append("lower(behaviour) = lower(?)")
            params.append(self.behaviour)
        if self.host is not None:
            clauses.append("(host = ? OR peer = ?)")
            params += [self.host, self.host]
        if with_time and self.since is not None:
            clauses.append("last_seen >= ?")
            params.append(self.since)
        if with_time and self.until is not None:
            clauses.append("first_seen <= ?")
            params.append(self.until)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def query_incidents(
    path: str | os.PathLike[str], query: IncidentQuery, limit: int | None = None
) -> Page[StoredIncident]:
    """Incidents matching ``query``, newest (last seen) first, at most ``limit`` (None: all)."""
    conn = _open_existing(path)
    try:
        timed = query.since is not None or query.until is not None
        rows, page = _page(
            conn,
            "incidents",
            _INCIDENT_COLUMNS,
            query,
            timed,
            "last_seen DESC, incident_id",
            limit,
            "first_seen",
            "last_seen",
        )
    finally:
        conn.close()
    out = []
    for r in rows:
        d = dict(zip(_INCIDENT_COLUMNS, r, strict=True))
        for k in _INCIDENT_JSON:
            d[k] = json.loads(d[k])
        d["closed"] = bool(d["closed"])
        out.append(StoredIncident(**d))
    return page.with_items(out)
