"""Feedback storage: allowlist rules, analyst actions and the flows they judged, in the alert
database's file, in tables of its own.

Owns the ``feedback_*`` tables (created on first use; the alert tables and their schema version
stay :mod:`netanomd.sinks.sqlite`'s):

* ``feedback_rules``: rules made on the page (origin ``analyst``), by name;
* ``feedback_settings``: which default rules are switched off;
* ``feedback_actions``: every action (mark benign, confirm, rule added, changed, removed,
  default switched) with who, when, what and a comment;
* ``feedback_flows``: the flows an action judged (``benign`` or ``malicious``), as conn.log
  JSON records, for the next training run (:func:`benign_conn_lines`);
* ``feedback_suppressed``: how many flow alerts and incidents each rule suppressed.

:meth:`FeedbackStore.mark_benign` and :meth:`FeedbackStore.confirm` are the two verdicts on an
incident; :meth:`FeedbackStore.export` is what ``netanomd feedback export`` writes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netanomd.errors import InputError
from netanomd.feedback.rules import Rule, RuleSet, rule_from_dict, with_defaults
from netanomd.sinks.sqlite import StoredAlert, StoredIncident, connect
from netanomd.store.read import incident_alerts

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback_rules (
    name      TEXT PRIMARY KEY,
    body      TEXT NOT NULL           -- JSON of the rule (Rule.to_dict)
);
CREATE TABLE IF NOT EXISTS feedback_settings (
    key       TEXT PRIMARY KEY,
    value     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback_actions (
    id        INTEGER PRIMARY KEY,
    at        REAL NOT NULL,          -- wall clock
    who       TEXT NOT NULL,
    action    TEXT NOT NULL,          -- benign, confirm, rule-add, rule-remove, rule-enable, ...
    target    TEXT NOT NULL,          -- an incident id or a rule name
    comment   TEXT NOT NULL,
    detail    TEXT NOT NULL           -- JSON
);
CREATE TABLE IF NOT EXISTS feedback_flows (
    incident_id TEXT NOT NULL,
    uid       TEXT NOT NULL,
    verdict   TEXT NOT NULL,          -- benign or malicious
    at        REAL NOT NULL,
    record    TEXT NOT NULL,          -- conn.log JSON record
    PRIMARY KEY (incident_id, uid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS feedback_suppressed (
    rule      TEXT NOT NULL,
    kind      TEXT NOT NULL,          -- alerts or incidents
    count     INTEGER NOT NULL,
    PRIMARY KEY (rule, kind)
) WITHOUT ROWID;
"""

VERDICTS = {"benign": "benign", "confirm": "malicious"}


@dataclass(frozen=True)
class Action:
    """One stored analyst action."""

    id: int
    at: float
    who: str
    action: str
    target: str
    comment: str
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def conn_record(a: StoredAlert) -> dict[str, Any]:
    """A stored flow alert as a Zeek conn.log JSON record (the fields the alert keeps)."""
    rec: dict[str, Any] = {
        "ts": a.ts,
        "uid": a.uid,
        "id.orig_h": a.orig_h,
        "id.orig_p": a.orig_p,
        "id.resp_h": a.resp_h,
        "id.resp_p": a.resp_p,
        "proto": a.proto,
        "service": a.service,
        "community_id": a.community_id,
    }
    return {k: v for k, v in rec.items() if v is not None}


def incident_rule(inc: StoredIncident, name: str, who: str, comment: str, now: float) -> Rule:
    """The rule that suppresses an incident's repeats: its host in its role, its behaviour, and
    its peer (when it has only one), port and protocol."""
    fields: dict[str, Any] = {"name": name, "behaviour": inc.behaviour}
    host_key, peer_key = ("peer", "host") if inc.role == "resp" else ("host", "peer")
    if inc.role == "service":
        proto, _, port = inc.host.partition("/")
        fields |= {"proto": proto, "port": port}
    else:
        fields[host_key] = inc.host
        if inc.peer and len(inc.top_peers) <= 1:
            fields[peer_key] = inc.peer
        if inc.port >= 0:
            fields["port"] = inc.port
        if inc.proto:
            fields["proto"] = inc.proto
    fields |= {
        "comment": comment,
        "who": who,
        "created": now,
        "learn": True,
        "incident_id": inc.incident_id,
    }
    return rule_from_dict(fields, f"incident {inc.incident_id[:12]}")


class FeedbackStore:
    """The feedback tables of one alert database (see the module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        config_rules: Iterable[Rule] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.config_rules = list(config_rules)
        self._clock = clock
        self._conn = connect(self.path)
        self._conn.executescript(f"BEGIN; {_SCHEMA} COMMIT;")

    def close(self) -> None:
        self._conn.close()

    # -- rules -----------------------------------------------------------------------------

    def stored_rules(self) -> list[Rule]:
        rows = self._conn.execute("SELECT name, body FROM feedback_rules ORDER BY name")
        return [rule_from_dict(json.loads(body), f"stored rule {name!r}") for name, body in rows]

    def disabled_defaults(self) -> set[str]:
        row = self._conn.execute(
            "SELECT value FROM feedback_settings WHERE key = 'disabled_defaults'"
        ).fetchone()
        return set(json.loads(row[0])) if row else set()

    def rules(self) -> RuleSet:
        """Every rule: the defaults (less those switched off), the config file's, the stored."""
        return RuleSet(
            with_defaults([*self.config_rules, *self.stored_rules()], self.disabled_defaults())
        )

    def add_rule(self, rule: Rule, who: str, comment: str = "") -> Rule:
        if rule.origin != "analyst":
            raise InputError(f"rule {rule.name!r}: only analyst rules are stored")
        if any(r.name == rule.name for r in self.config_rules):
            raise InputError(f"rule {rule.name!r}: a rule of the config file has that name")
        now = self._clock()
        rule = rule_from_dict(rule.to_dict() | {"who": who, "created": now}, f"rule {rule.name}")
        with self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO feedback_rules (name, body) VALUES (?, ?)",
                (rule.name, json.dumps(rule.to_dict())),
            )
            self._action(now, who, "rule-add", rule.name, comment or rule.comment, rule.to_dict())
        return rule

    def remove_rule(self, name: str, who: str, comment: str = "") -> None:
        with self._conn:
            gone = self._conn.execute("DELETE FROM feedback_rules WHERE name = ?", (name,))
            if not gone.rowcount:
                raise InputError(f"rule {name!r}: no such analyst rule")
            self._action(self._clock(), who, "rule-remove", name, comment, {})

    def set_default(self, name: str, enabled: bool, who: str, comment: str = "") -> None:
        from netanomd.feedback.rules import DEFAULT_RULES

        if name not in {r.name for r in DEFAULT_RULES}:
            raise InputError(f"default rule {name!r}: no such default rule")
        off = self.disabled_defaults()
        off = off - {name} if enabled else off | {name}
        with self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO feedback_settings (key, value) "
                "VALUES ('disabled_defaults', ?)",
                (json.dumps(sorted(off)),),
            )
            action = "default-on" if enabled else "default-off"
            self._action(self._clock(), who, action, name, comment, {})

    # -- verdicts on incidents -------------------------------------------------------------

    def mark_benign(self, inc: StoredIncident, who: str, comment: str = "") -> Rule:
        """Suppress the incident's repeats (a rule) and keep its flows that the rule covers for
        the next training."""
        now = self._clock()
        rule = incident_rule(inc, f"benign-{inc.incident_id[:10]}", who, comment, now)
        with self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO feedback_rules (name, body) VALUES (?, ?)",
                (rule.name, json.dumps(rule.to_dict())),
            )
            n = self._keep_flows(inc, "benign", now, rule)
            self._action(
                now,
                who,
                "benign",
                inc.incident_id,
                comment,
                {"rule": rule.name, "flows": n, "title": inc.title},
            )
        return rule

    def confirm(self, inc: StoredIncident, who: str, comment: str = "") -> int:
        """Record the incident as a true positive (its flows kept as malicious)."""
        now = self._clock()
        with self._conn:
            n = self._keep_flows(inc, "malicious", now)
            self._action(
                now, who, "confirm", inc.incident_id, comment, {"flows": n, "title": inc.title}
            )
        return n

    def verdict(self, incident_id: str) -> Action | None:
        """The latest verdict (benign or confirm) on an incident."""
        row = self._conn.execute(
            "SELECT id, at, who, action, target, comment, detail FROM feedback_actions "
            "WHERE target = ? AND action IN ('benign', 'confirm') ORDER BY id DESC LIMIT 1",
            (incident_id,),
        ).fetchone()
        return _action(row) if row else None

    def _keep_flows(
        self, inc: StoredIncident, verdict: str, now: float, rule: Rule | None = None
    ) -> int:
        """Keep the incident's flow alerts (those ``rule`` covers, when given: what is marked
        benign is what the rule will suppress, never another flow the incident swept in)."""
        alerts = incident_alerts(self.path, inc)
        if rule is not None:
            alerts = [
                a
                for a in alerts
                if rule.matches_flow(a.orig_h, a.resp_h, a.resp_p, a.proto, a.service)
            ]
        rows = [
            (inc.incident_id, a.uid, verdict, now, json.dumps(conn_record(a)))
            for a in alerts
            if a.uid
        ]
        self._conn.executemany(
            "INSERT OR REPLACE INTO feedback_flows (incident_id, uid, verdict, at, record) "
            "VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        return len(rows)

    def _action(
        self, at: float, who: str, action: str, target: str, comment: str, detail: Mapping[str, Any]
    ) -> None:
        self._conn.execute(
            "INSERT INTO feedback_actions (at, who, action, target, comment, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (at, who, action, target, comment, json.dumps(dict(detail))),
        )

    # -- reading ---------------------------------------------------------------------------

    def actions(self, limit: int | None = None) -> list[Action]:
        sql = (
            "SELECT id, at, who, action, target, comment, detail FROM feedback_actions "
            "ORDER BY id DESC"
        )
        params: list[Any] = []
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_action(r) for r in self._conn.execute(sql, params)]

    def flows(self, verdict: str | None = None) -> Iterator[dict[str, Any]]:
        """The kept flows (conn.log records), oldest first; only one verdict when given."""
        sql = "SELECT record, verdict, incident_id FROM feedback_flows"
        params: list[Any] = []
        if verdict is not None:
            sql += " WHERE verdict = ?"
            params.append(verdict)
        for record, v, incident in self._conn.execute(sql + " ORDER BY at, uid", params):
            yield json.loads(record) | {"netanomd.verdict": v, "netanomd.incident": incident}

    def add_suppressed(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Add suppression counts by (rule, kind)."""
        with self._conn:
            self._conn.executemany(
                "INSERT INTO feedback_suppressed (rule, kind, count) VALUES (?, ?, ?) "
                "ON CONFLICT (rule, kind) DO UPDATE SET count = count + excluded.count",
                [(r, k, n) for (r, k), n in counts.items() if n],
            )

    def suppressed(self) -> dict[tuple[str, str], int]:
        rows = self._conn.execute("SELECT rule, kind, count FROM feedback_suppressed")
        return {(r, k): int(n) for r, k, n in rows}

    def export(self) -> Iterator[dict[str, Any]]:
        """Everything, one JSON-ready object per item: rules, actions, kept flows, counts."""
        for rule in self.rules().rules:
            yield {"type": "rule"} | rule.to_dict()
        for a in reversed(self.actions()):
            yield {"type": "action"} | a.to_dict()
        for rec in self.flows():
            yield {"type": "flow"} | rec
        for (rule_name, kind), n in sorted(self.suppressed().items()):
            yield {"type": "suppressed", "rule": rule_name, "kind": kind, "count": n}


def _action(row: tuple[Any, ...]) -> Action:
    i, at, who, action, target, comment, detail = row
    return Action(int(i), float(at), who, action, target, comment, json.loads(detail))


def benign_conn_lines(store: FeedbackStore) -> Iterator[str]:
    """The flows marked benign as Zeek JSON conn.log lines (``netanomd train`` reads them)."""
    for rec in store.flows("benign"):
        yield json.dumps({k: v for k, v in rec.items() if not k.startswith("netanomd.")})


def open_store(path: str | os.PathLike[str], config_rules: Iterable[Rule] = ()) -> FeedbackStore:
    """The feedback store of an existing alert database (an InputError naming it if missing)."""
    if not Path(path).exists():
        raise InputError(f"{path}: no alert database (run 'netanomd demo' or 'netanomd score')")
    try:
        return FeedbackStore(path, config_rules=config_rules)
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path}: cannot open the feedback tables ({exc})") from exc
