"""The read side of the alert database shared by ``netanomd alerts``, ``netanomd incidents``
and the analyst's page.

Owns reading a time filter (:func:`parse_since`) and a severity floor (:func:`min_severity`)
from text, and the summaries the page draws: counts per hour (:func:`hourly`), a host's peers
in the order it first reached them (:func:`host_peers`), the score histogram of the stored
alerts (:func:`score_histogram`) and the flow alerts underneath an incident
(:func:`incident_alerts`). Several databases (one per daemon sharing the work) read as one:
:func:`alerts_of`, :func:`incidents_of`. The listings themselves
(:func:`netanomd.sinks.sqlite.query_incidents`, :func:`netanomd.sinks.sqlite.alert_page`) stay
next to the schema that writes them.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from netanomd.errors import InputError
from netanomd.sinks.sqlite import (
    AlertQuery,
    IncidentQuery,
    Page,
    StoredAlert,
    StoredIncident,
    _open_existing,
    alert_page,
    query_incidents,
)

T = TypeVar("T")

HOUR = 3600.0
#: Flow times below this are relative seconds (some captures), not dates: left out of charts.
ABSOLUTE = 1e9


def merge_pages(
    pages: Sequence[Page[T]], ident: Callable[[T], str], rank: Callable[[T], Any], limit: int | None
) -> Page[T]:
    """Complete pages (every match) of the same listing from several databases as one: each
    item once (by ``ident``; a flow scored by two daemons, once each, is one alert), ordered by
    ``rank``, at most ``limit``, with the total of distinct matches."""
    seen: dict[str, T] = {}
    for page in pages:
        for item in page.items:
            seen.setdefault(ident(item), item)
    dupes = sum(len(p.items) for p in pages) - len(seen)
    items = sorted(seen.values(), key=rank)[:limit]
    spans = [p.span for p in pages if p.span is not None]
    span = (min(s[0] for s in spans), max(s[1] for s in spans)) if spans else None
    total = sum(p.total for p in pages) - dupes
    return Page(items, total, sum(p.hidden_by_time for p in pages), span)


#: How ``alert_page`` orders (its ``order``), as a sort key over the stored alerts.
_ALERT_RANK: dict[str, Callable[[StoredAlert], Any]] = {
    "score": lambda a: (-a.score, a.ts if a.ts is not None else 0.0),
    "ts": lambda a: (-(a.ts if a.ts is not None else 0.0), -a.score),
}


def alerts_of(
    paths: Sequence[str | os.PathLike[str]],
    query: AlertQuery,
    *,
    limit: int | None = None,
    order: str = "score",
) -> Page[StoredAlert]:
    """:func:`~netanomd.sinks.sqlite.alert_page` over several databases, merged."""
    if len(paths) == 1:
        return alert_page(paths[0], query, limit=limit, order=order)
    # Every match of each: the distinct total needs them all (read once per command).
    pages = [alert_page(p, query, limit=None, order=order) for p in paths]
    return merge_pages(pages, lambda a: a.alert_id, _ALERT_RANK[order], limit)


def incidents_of(
    paths: Sequence[str | os.PathLike[str]], query: IncidentQuery, *, limit: int | None = None
) -> Page[StoredIncident]:
    """:func:`~netanomd.sinks.sqlite.query_incidents` over several databases, merged (newest
    last seen first)."""
    if len(paths) == 1:
        return query_incidents(paths[0], query, limit=limit)
    pages = [query_incidents(p, query, limit=None) for p in paths]
    return merge_pages(pages, lambda i: i.incident_id, lambda i: -i.last_seen, limit)


#: The units of a duration or an age on the command line.
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration(text: str, option: str) -> float:
    """Seconds from ``90``, ``15s``, ``5m``, ``1h``, ``1d`` (> 0)."""
    t = text.strip()
    scale = UNITS.get(t[-1:])
    number = t[:-1] if scale is not None else t
    try:
        seconds = float(number) * (scale or 1.0)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or not math.isfinite(seconds):
        raise InputError(f"{option} {text!r}: expected a duration such as 15s, 5m, 1h")
    return seconds


def parse_since(text: str, option: str = "--since") -> float:
    """Epoch seconds from an ISO date/time (UTC unless it says otherwise), epoch seconds, or a
    relative age such as ``90m``, ``24h``, ``7d`` (:data:`UNITS`)."""
    if text and text[-1] in UNITS and text[:-1].replace(".", "", 1).isdigit():
        return dt.datetime.now(dt.UTC).timestamp() - float(text[:-1]) * UNITS[text[-1]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InputError(
            f"{option} {text!r}: expected an ISO date/time, epoch seconds, or an age like 24h"
        ) from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


def min_severity(text: str, option: str = "--severity") -> int:
    """A severity floor from a label (low, medium, high, critical) or a number 0-100."""
    from netanomd.behaviour.incidents import SEVERITY_LABELS

    floors = {label: floor for floor, label in SEVERITY_LABELS}
    if text.lower() in floors:
        return floors[text.lower()]
    if text.isdigit() and 0 <= int(text) <= 100:
        return int(text)
    raise InputError(
        f"{option} {text!r}: expected one of {', '.join(reversed(floors))} or a number 0-100"
    )


@dataclass(frozen=True)
class Bucket:
    """One hour: its start (epoch seconds, flow time) and how many fell in it."""

    start: float
    count: int


def hourly(
    path: str | os.PathLike[str],
    table: str,
    *,
    incidents: IncidentQuery | None = None,
    host: str | None = None,
    incident: str | None = None,
    days: int = 14,
) -> list[Bucket]:
    """Counts per hour of flow time (dates only, see :data:`ABSOLUTE`), oldest first, without
    gaps, for the ``days`` up to the latest: incidents by first seen
    (``table="incidents"``, filtered by ``incidents``) or flow alerts by flow time
    (``table="alerts"``, optionally of one host or one incident)."""
    params: list[Any] = []
    if table == "incidents":
        where, params = (incidents or IncidentQuery()).where()
        where = f"{where} AND" if where else " WHERE"
        sql = (
            "SELECT CAST(first_seen / 3600 AS INTEGER), count(*) FROM incidents"
            f"{where} first_seen >= {ABSOLUTE}"
        )
    elif table == "alerts":
        clauses = [f"ts >= {ABSOLUTE}"]
        if host is not None:
            clauses.append("(orig_h = ? OR resp_h = ?)")
            params += [host, host]
        if incident is not None:
            clauses.append("uid IN (SELECT uid FROM incident_flows WHERE incident_id = ?)")
            params.append(incident)
        sql = (
            f"SELECT CAST(ts / 3600 AS INTEGER), count(*) FROM alerts WHERE {' AND '.join(clauses)}"
        )
    else:
        raise ValueError(f"table must be incidents or alerts, not {table!r}")
    conn = _open_existing(path)
    try:
        rows = conn.execute(sql + " GROUP BY 1 ORDER BY 1", params).fetchall()
    finally:
        conn.close()
    counts = {int(h): int(n) for h, n in rows if h is not None}
    if not counts:
        return []
    hi = max(counts)
    lo = max(min(counts), hi - days * 24 + 1)
    return [Bucket(h * HOUR, counts.get(h, 0)) for h in range(lo, hi + 1)]


@dataclass(frozen=True)
class Peer:
    """A peer of a host in the flow alerts: when first and last seen, how many alerts, ports."""

    address: str
    first: float
    last: float
    alerts: int
    ports: str


def host_peers(path: str | os.PathLike[str], host: str, limit: int = 50) -> list[Peer]:
    """The peers of ``host`` in its flow alerts, newest first-contact first."""
    sql = """
        SELECT CASE WHEN orig_h = ?1 THEN resp_h ELSE orig_h END AS peer,
               min(ts), max(ts), count(*),
               group_concat(DISTINCT CASE WHEN orig_h = ?1 THEN resp_p ELSE orig_p END)
        FROM alerts WHERE (orig_h = ?1 OR resp_h = ?1) AND ts IS NOT NULL
        GROUP BY peer ORDER BY min(ts) DESC LIMIT ?2
    """
    conn = _open_existing(path)
    try:
        rows = conn.execute(sql, (host, limit)).fetchall()
    finally:
        conn.close()
    return [Peer(str(p), float(f), float(la), int(n), _ports(ports)) for p, f, la, n, ports in rows]


def _ports(text: str | None, most: int = 8) -> str:
    ports = sorted({int(p) for p in (text or "").split(",") if p.strip().lstrip("-").isdigit()})
    shown = ", ".join(map(str, ports[:most]))
    return shown + (f" (+{len(ports) - most} more)" if len(ports) > most else "")


def score_histogram(
    path: str | os.PathLike[str], lo: float, hi: float, bins: int, since: float | None = None
) -> list[int]:
    """How many stored flow alerts fall in each of ``bins`` equal bins from ``lo`` to ``hi``
    (scores outside go to the end bins), flow time at or after ``since`` when given."""
    width = (hi - lo) / bins
    sql = "SELECT max(min(CAST((score - ?) / ? AS INTEGER), ?), 0), count(*) FROM alerts"
    params: list[Any] = [lo, width, bins - 1]
    if since is not None:
        sql += " WHERE ts >= ?"
        params.append(since)
    conn = _open_existing(path)
    try:
        rows = conn.execute(sql + " GROUP BY 1", params).fetchall()
    finally:
        conn.close()
    counts = [0] * bins
    for b, n in rows:
        counts[int(b)] += int(n)
    return counts


def score_range(path: str | os.PathLike[str]) -> tuple[float, float, float] | None:
    """(lowest score, highest score, latest flow time) of the stored alerts; None if none."""
    conn = _open_existing(path)
    try:
        lo, hi, last = conn.execute("SELECT min(score), max(score), max(ts) FROM alerts").fetchone()
    finally:
        conn.close()
    return None if lo is None else (float(lo), float(hi), float(last or 0.0))


def behaviours(path: str | os.PathLike[str]) -> list[str]:
    """The behaviours the stored incidents name, most frequent first."""
    conn = _open_existing(path)
    try:
        rows = conn.execute(
            "SELECT behaviour FROM incidents GROUP BY behaviour ORDER BY count(*) DESC"
        ).fetchall()
    finally:
        conn.close()
    return [str(b) for (b,) in rows]


def latest_change(path: str | os.PathLike[str]) -> tuple[int, float, int]:
    """(incidents, latest incident write, flow alerts): changes when anything was written."""
    conn = _open_existing(path)
    try:
        n, at = conn.execute(
            "SELECT count(*), coalesce(max(updated_at), 0) FROM incidents"
        ).fetchone()
        (alerts,) = conn.execute("SELECT coalesce(max(id), 0) FROM alerts").fetchone()
    finally:
        conn.close()
    return int(n), float(at), int(alerts)


def incident(path: str | os.PathLike[str], incident_id: str) -> StoredIncident:
    """The incident whose id is or starts with ``incident_id`` (LookupError if none or several
    match; InputError if it is not hex)."""
    text = incident_id.lower()
    if not text or any(c not in "0123456789abcdef" for c in text):
        raise InputError(f"incident {incident_id!r}: expected hex digits (a prefix will do)")
    conn = _open_existing(path)
    try:
        rows = conn.execute(
            "SELECT incident_id, host FROM incidents WHERE incident_id LIKE ? LIMIT 2",
            (text + "%",),
        ).fetchall()
    finally:
        conn.close()
    if len(rows) != 1:
        raise LookupError(f"incident {incident_id}: {'no such' if not rows else 'ambiguous'} id")
    full, host = rows[0]
    for inc in query_incidents(path, IncidentQuery(host=host)).items:
        if inc.incident_id == full:
            return inc
    raise LookupError(f"incident {incident_id}: no such id")


def incident_alerts(
    path: str | os.PathLike[str], inc: StoredIncident, limit: int = 2000
) -> list[StoredAlert]:
    """The flow alerts underneath an incident, oldest first: those linked to it (a sample of
    uids) and the host's other alerts inside its first/last seen that match its peer and port
    (every alert of a behaviour on one peer, not only the sample)."""
    linked = alert_page(path, AlertQuery(incident=inc.incident_id), order="ts").items
    out = {a.alert_id: a for a in linked}
    if inc.role != "service":
        near = alert_page(
            path,
            AlertQuery(
                host=inc.host,
                port=inc.port if inc.port >= 0 and inc.role == "orig" else None,
                since=inc.first_seen,
                until=inc.last_seen,
            ),
            order="ts",
            limit=limit,
        ).items
        mine = "orig_h" if inc.role == "orig" else "resp_h"
        other = "resp_h" if inc.role == "orig" else "orig_h"
        for a in near:
            if getattr(a, mine) == inc.host and (not inc.peer or getattr(a, other) == inc.peer):
                out.setdefault(a.alert_id, a)
    return sorted(out.values(), key=lambda a: (a.ts or 0.0, a.alert_id))[:limit]
