"""Anomalous steps to incidents: one per entity and episode, stored like every incident.

Owns :class:`MetricIncident` and :func:`incidents_of`. Consecutive anomalous steps of one
entity, no more than ``quiet`` seconds apart, are one incident (behaviour
:data:`BEHAVIOUR`, role :data:`ROLE`, host the entity), titled by its strongest step's reason
("receive throughput 38.0 MB/s, 14x its usual for this hour (2.7 MB/s)"), with the numbers as
evidence. It is a :class:`~netanomd.behaviour.incidents.Incident`, so the SQLite and
Elasticsearch sinks store it as they store any other (under a stable id from
:mod:`netanomd.sinks.incident_ids`); the flow-specific title and severity of ``Incident`` are
replaced by the reason and by :func:`severity`.

Severity: medium (:data:`BASE_SEVERITY`) plus 10 per order of magnitude of the strongest
step's departure from its usual value (the ratio either way, or, when its usual value is about
0, the deviation in units of :data:`~netanomd.telemetry.scoring.MIN_DEVIATION` spreads), at
most 99:
14x its usual is 58, 1,000x is 77 (high).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from netanomd.behaviour import reasons
from netanomd.behaviour.incidents import Incident
from netanomd.telemetry.scoring import MIN_DEVIATION, Anomaly

BEHAVIOUR = "metric anomaly"
ROLE = "instance"
BASE_SEVERITY = 47
#: Other unusual series named in a title at most.
ALSO_NAMED = 3


def strength(a: Anomaly) -> float:
    """How far a step is from its usual value: the ratio either way when there is one, else
    its deviation in units of :data:`MIN_DEVIATION` spreads; at least 1."""
    if a.ratio is not None and a.ratio > 0:
        return max(a.ratio, 1.0 / a.ratio)
    return max(abs(a.z) / MIN_DEVIATION, 1.0)


def severity(s: float) -> int:
    """The severity of an incident whose strongest step has strength ``s``."""
    return min(99, BASE_SEVERITY + round(10.0 * math.log10(max(s, 1.0))))


@dataclass
class MetricIncident(Incident):
    """An incident found in metrics: its title is :attr:`reason`, its severity
    :func:`severity` of :attr:`strength`."""

    reason: str = ""
    strength: float = 1.0

    @property
    def title(self) -> str:
        return self.reason

    @property
    def severity(self) -> int:
        return severity(self.strength)


def incidents_of(
    anomalies: Sequence[Anomaly], step: float, quiet: float, end: float
) -> list[MetricIncident]:
    """Group ``anomalies`` per entity into episodes (gaps of at most ``quiet`` seconds); an
    episode that ended more than ``quiet`` before ``end`` (the window's) is closed."""
    ids = itertools.count(1)
    out: list[MetricIncident] = []
    ordered = sorted(anomalies, key=lambda a: (a.entity, a.ts))
    for entity, mine in itertools.groupby(ordered, key=lambda a: a.entity):
        episode: list[Anomaly] = []
        for a in mine:
            if episode and a.ts - episode[-1].ts > quiet:
                out.append(_incident(next(ids), entity, episode, step, quiet, end))
                episode = []
            episode.append(a)
        out.append(_incident(next(ids), entity, episode, step, quiet, end))
    return sorted(out, key=lambda i: (-i.severity, i.first_seen))


def _incident(
    n: int, entity: str, steps: list[Anomaly], step: float, quiet: float, end: float
) -> MetricIncident:
    top = max(steps, key=strength)
    first, last = steps[0].ts, steps[-1].ts
    others: list[str] = []
    for a in steps:
        for s in (a.series, *(also[0] for also in a.also)):
            if s.name != top.series.name and s.words not in others:
                others.append(s.words)
    span = reasons.duration(last - first + step)
    title = f"{entity}: {top.reason}; {reasons.plural(len(steps), 'unusual step')} in {span}"
    if others:
        title += "; also " + ", ".join(others[:ALSO_NAMED])
        if len(others) > ALSO_NAMED:
            title += f" and {len(others) - ALSO_NAMED} more"
    return MetricIncident(
        id=n,
        role=ROLE,
        host=entity,
        behaviour=BEHAVIOUR,
        detail="",
        first_seen=first,
        last_seen=last,
        span_start=first - step,
        span_end=last,
        detections=len(steps),
        score=max(a.score for a in steps),
        evidence=top.evidence() | {"steps": float(len(steps)), "step": float(step)},
        closed=end - last > quiet,
        reason=title,
        strength=strength(top),
    )
