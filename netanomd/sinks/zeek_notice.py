"""Zeek notice sink: every alert goes back to Zeek as a ``NetAnom::verdict`` event, which the
Zeek package turns into a ``NetAnom::Anomalous_Flow`` notice (and a netanom.log line), and every
incident opened or updated as a ``NetAnom::incident`` event, which becomes one
``NetAnom::Incident`` notice per incident (its id is the notice's identifier, so Zeek suppresses
the incident's later updates).

A retracted incident (its alerts all went to a named incident that covers them;
:attr:`~netanomd.behaviour.incidents.Incident.retracted`) is not sent: a notice cannot be taken
back, so an incident Zeek was already told of stays announced there (the named incident that
took its alerts is announced too; the SQLite and Elasticsearch sinks drop the retracted one).

Turns alerts and incidents into the events' plain values (:func:`verdict_values`,
:func:`incident_values`, keyed by the argument names of :data:`netanomd.zeek.api.VERDICT` and
:data:`~netanomd.zeek.api.INCIDENT`) and hands them to the Zeek link, which publishes them from
its own thread: writing never waits on the network. When no Zeek is connected, or the link's
outbox is full, they are dropped and counted by the link (``verdicts_dropped``,
``incidents_dropped``): notices are only useful while fresh, and the alerts and incidents
themselves are kept by the other sinks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from netanomd.decision import Alert
from netanomd.sinks.incident_ids import IncidentIds
from netanomd.sources.zeek_link import ZeekLink

if TYPE_CHECKING:
    from netanomd.behaviour.incidents import Incident


def verdict_values(alert: Alert) -> dict[str, Any]:
    """The ``NetAnom::verdict`` arguments of an alert (all but ``version``)."""
    f = alert.flow
    return {
        "uid": f.uid,
        "orig_h": f.orig_h,
        "orig_p": (f.orig_p or 0, f.proto),
        "resp_h": f.resp_h,
        "resp_p": (f.resp_p or 0, f.proto),
        "score": float(alert.score),
        "threshold": float(alert.threshold),
        "model": alert.model_id,
        "reason": alert.reason,
    }


def evidence_text(evidence: dict[str, float]) -> str:
    """The evidence as ``name=value`` pairs, zeros left out, whole numbers without decimals."""
    parts = []
    for name, value in sorted(evidence.items()):
        if value:
            text = f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"
            parts.append(f"{name}={text}")
    return " ".join(parts)


def incident_values(incident: Incident, incident_id: str) -> dict[str, Any]:
    """The ``NetAnom::incident`` arguments of an incident (all but ``version``)."""
    return {
        "id": incident_id,
        "role": incident.role,
        "host": incident.host,
        "peer": incident.peer,
        "behaviour": incident.behaviour,
        "severity": int(incident.severity),
        "flow_count": int(incident.flows),
        "first_seen": float(incident.first_seen),
        "last_seen": float(incident.last_seen),
        "title": incident.title,
        "evidence": evidence_text(incident.evidence),
        "uids": [u for u in incident.uids if u],
    }


class ZeekNoticeSink:
    """Verdicts and incidents back to Zeek (implements :class:`netanomd.sinks.IncidentSink`)."""

    name = "zeek"

    def __init__(self, link: ZeekLink, ids: IncidentIds | None = None) -> None:
        self.link = link
        self.ids = ids if ids is not None else IncidentIds()

    def write(self, alerts: Sequence[Alert]) -> None:
        if alerts:
            self.link.publish_verdicts([verdict_values(a) for a in alerts])

    def write_incidents(self, incidents: Sequence[Incident]) -> None:
        values = [incident_values(i, self.ids(i)) for i in incidents if not i.retracted]
        if values:
            self.link.publish_incidents(values)

    def open(self) -> None:
        """The link is opened (and stopped) by the daemon as a source."""

    def flush(self) -> None:
        """The link sends what it was handed; nothing is buffered here."""

    def close(self, timeout: float = 30.0) -> bool:
        """Wait (up to ``timeout``) until the link has sent what was handed to it."""
        return self.link.flush(timeout)
