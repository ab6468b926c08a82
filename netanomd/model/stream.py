"""One stream of flows through a model: flow scores and alerts, host behaviour, incidents.

Owns :class:`Stream`, what the daemon's pipeline, ``netanomd score``, the demo and ``POST
/v1/score`` all report through. Feed batches in arrival order (:meth:`Stream.process`); each
batch is

1. scored and decided flow by flow (:meth:`~netanomd.model.Model.decide`: the Isolation Forest
   path, with the stream's own host-feature state);
2. fed to the host behaviour pipeline (:class:`~netanomd.behaviour.pipeline.BehaviourPipeline`
   with the model's learned limits), whose named detections become incidents, and which gives
   each flow alert its originator's context at that moment, appended to the alert's reason as
   :class:`HostContext` contributions ("host's 412th new
   destination this hour", "3rd unanswered attempt at this peer and port in 10 minutes");
3. its flow alerts grouped into incidents, so every flow alert belongs to an incident an
   analyst can act on: an alert inside an open behaviour incident (the host's scan, its failed
   C&C connections...) belongs to that one; the others are grouped per originator into
   "anomalous flows" incidents (:meth:`IncidentTracker.add_flow_alerts`, the same tracker).

Incidents opened or updated by a batch come back with its scores and alerts; :meth:`finish` ends
the stream (a file or a capture ended: every window and incident closes). A model older than
format 4 has no behaviour limits: its stream groups flow alerts into incidents only. Flow time is
the clock throughout (never the wall clock), so a replayed file and a live feed agree.

With :attr:`Stream.suppress` set (a :class:`~netanomd.feedback.suppress.Suppressor`), alerted
flows and incidents an allowlist rule covers are dropped from what the stream reports and
counted per rule (the flows before their alerts are built); host behaviour still sees every
flow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from netanomd.behaviour.context import ContextPart, for_alerts
from netanomd.behaviour.incidents import Incident, IncidentTracker, members
from netanomd.behaviour.pipeline import BehaviourPipeline
from netanomd.behaviour.signed import SignedFlows
from netanomd.decision import Alert, Contribution
from netanomd.flow import FlowBatch
from netanomd.model.operating import DEFAULT_QUIET

if TYPE_CHECKING:
    from netanomd.feedback.suppress import Suppressor
    from netanomd.model.artifact import Model


@dataclass(frozen=True, slots=True)
class HostContext(Contribution):
    """An alert's host context as a contribution (not a feature's distance from training): its
    sentence is its description; ``observed`` is the count, ``baseline`` the learned limit."""

    def sentence(self) -> str:
        return self.description

    @classmethod
    def of(cls, part: ContextPart) -> HostContext:
        return cls(
            feature=part.feature,
            description=part.sentence,
            observed=part.observed,
            baseline=part.limit,
            baseline_name=part.limit_name,
            direction="context",
            weight=0.0,
        )


def _with_context(alert: Alert, parts: tuple[ContextPart, ...]) -> Alert:
    if not parts:
        return alert
    return replace(alert, contributions=(*alert.contributions, *map(HostContext.of, parts)))


class Stream:
    """A model's stream state: feature state, host windows and open incidents."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.spec = model.spec.fresh()
        op = model.operating
        self.tracker = IncidentTracker(op.quiet if op is not None else DEFAULT_QUIET)
        self.behaviour = (
            BehaviourPipeline(op.thresholds, tracker=self.tracker) if op is not None else None
        )
        self.signed = SignedFlows(self.tracker.quiet)
        #: The flow alerts held by "anomalous flows" incidents (rows, their incident's id and
        #: score), until a named incident that covers them takes them (:meth:`_adopt`).
        self._held: FlowBatch | None = None
        self._held_inc = np.zeros(0, np.int64)
        self._held_score = np.zeros(0)
        self._held_by: dict[int, Incident] = {}
        self._horizon = -np.inf
        self._released: list[Incident] = []  # reported with released uids: cleared next batch
        #: Incidents the end of the stream retracted (:meth:`finish`): for the sinks to drop.
        self.retracted: list[Incident] = []
        self._clock = -np.inf
        self._finished = False
        #: Allowlist hook: drops (and counts) the alerts and incidents its rules cover.
        self.suppress: Suppressor | None = None

    @property
    def clock(self) -> float:
        """The stream's flow time: the latest flow time seen."""
        return self._clock

    def process(
        self,
        batch: FlowBatch,
        threshold: float | None = None,
        *,
        part: np.ndarray | None = None,
    ) -> tuple[np.ndarray, list[Alert], list[Incident]]:
        """Score, decide and group one batch: (score per flow, flow alerts, incidents opened or
        updated by it). With ``part`` (row numbers), the stream is one part of a wider one
        (``netanomd score --jobs``): only those rows are scored and grouped, while the clocks
        follow every row of ``batch``, so windows and incidents turn as in the wider stream."""
        if self._finished:
            raise RuntimeError("the stream was finished: start a new one with model.stream()")
        times = None
        if part is not None:
            batch, times = self._part(batch, np.asarray(part, dtype=np.int64))
        suppress = self.suppress
        allowed: list[np.ndarray] = []  # the alerting rows no allowlist rule covers

        def select(rows: np.ndarray, flows: FlowBatch = batch) -> np.ndarray:
            """The alerting ``rows`` to build alerts for: those the allowlist leaves."""
            allowed.append(rows if suppress is None else rows[suppress.flows(flows, rows)])
            return allowed[-1]

        scores, alerts = self.model.decide(batch, self.spec, threshold, select=select)
        if not len(batch) and times is None:  # (an empty part still moves the clocks on)
            return scores, alerts, []
        for inc in self._released:
            inc.released_uids = []
        self._released = []
        ts = batch.numeric("ts", fill=np.nan)
        if np.isfinite(ts).any():
            self._clock = max(self._clock, float(np.nanmax(ts)))
        all_scores = scores
        alerted = np.zeros(len(batch), dtype=np.bool_)
        alerted[allowed[-1]] = True
        alerted_all = alerted
        placed = batch.placed()
        if not placed.all():  # no time or originator (a CICFlowMeter derivative): no host view
            rows = np.flatnonzero(placed)
            batch, scores, alerted = batch.take(rows), scores[rows], alerted[rows]
            if times is not None:
                times = np.r_[times[rows], times[-1]]
        changed: dict[int, Incident] = {}
        found: list[Incident] = []
        idx = np.flatnonzero(alerted)
        if self.behaviour is not None:
            found, context = self.behaviour.update(batch, idx, times, tick=False)
            for inc in found:
                inc.alert_uids = []
            changed.update((i.id, i) for i in found)
            self._adopt(found, changed)
            extra = iter(for_alerts(context, idx, batch, self.behaviour.thresholds))
            # alerts follow the whole batch's alerted rows; only placed ones have a context
            has_context = placed[np.flatnonzero(alerted_all)].tolist()
            alerts = [
                _with_context(a, next(extra)) if there else a
                for a, there in zip(alerts, has_context, strict=True)
            ]
        if idx.size:
            idx = self._link_named(batch, idx, changed, found)
        if idx.size:
            now = self.behaviour.windows.clock if self.behaviour is not None else self._clock
            rest = batch.take(idx)
            placed_in: list[Incident] = []
            grouped = self.tracker.add_flow_alerts(rest, scores[idx], now, placed_in)
            for inc in grouped:  # "anomalous flows": one incident per originator
                inc.alert_uids = []
            for inc, uid in zip(placed_in, rest.column("uid").to_pylist(), strict=True):
                if uid:
                    inc.alert_uids.append(uid)
            changed.update((i.id, i) for i in grouped)
            if self.behaviour is not None:
                self._hold(rest, scores[idx], placed_in)
        # quiet incidents close once the batch's flows are all grouped
        self.tracker.tick(self.behaviour.windows.clock if self.behaviour else self._clock)
        changed.update(
            (i.id, i) for i in self.signed.process(batch, self.tracker, changed.values())
        )
        return all_scores, alerts, self._reported(changed.values())

    def _part(self, batch: FlowBatch, part: np.ndarray) -> tuple[FlowBatch, np.ndarray | None]:
        """Rows ``part`` of ``batch``, and the host windows' clock (the whole batch's) at each
        of them and at its end; the stream's clock follows the whole batch."""
        ts = batch.numeric("ts", fill=np.nan)
        if np.isfinite(ts).any():
            self._clock = max(self._clock, float(np.nanmax(ts)))
        if self.behaviour is None:
            return batch.take(part), None
        windows = self.behaviour.windows
        placed = np.flatnonzero(batch.placed())
        clock = np.full(len(batch), np.nan)
        clock[placed] = windows.times(batch.take(placed))
        end = clock[placed[-1]] if len(placed) else windows.clock
        return batch.take(part), np.r_[clock[part], end]

    def _reported(self, incidents: Iterable[Incident]) -> list[Incident]:
        """Incidents in id order, less those the allowlist covers."""
        out = sorted(incidents, key=lambda i: i.id)
        return out if self.suppress is None else self.suppress.incidents(out)

    def _link_named(
        self, batch: FlowBatch, idx: np.ndarray, changed: dict[int, Incident], found: list[Incident]
    ) -> np.ndarray:
        """Link the alerted rows ``idx`` of ``batch`` that a behaviour incident holds (an open
        one, or one this batch ``found``, which may have closed in it already) to it
        (``alert_uids``; the incident is reported as updated); returns the rows left for
        "anomalous flows"."""
        named = {i.id: i for i in (*self.tracker.open.values(), *found)}
        named = {k: i for k, i in named.items() if i.behaviour != "anomalous flows"}
        if not named:
            return idx
        alerts = batch.take(idx)
        uids: np.ndarray | None = None  # read only when an incident holds some of them
        inside = np.zeros(len(alerts), dtype=np.bool_)
        for inc, mine in zip(named.values(), members([*named.values()], alerts), strict=True):
            if mine.any():
                inside |= mine
                if uids is None:
                    uids = np.asarray(alerts.column("uid").to_pylist(), dtype=object)
                if inc.id not in changed:
                    inc.alert_uids = []
                    changed[inc.id] = inc
                inc.alert_uids.extend(u for u in uids[mine].tolist() if u)
        return idx[~inside]

    def _hold(self, alerts: FlowBatch, scores: np.ndarray, incs: list[Incident]) -> None:
        """Keep the flow alerts just grouped into "anomalous flows" incidents, with their
        incident, for a named incident that covers them later; forget those of an incident
        that is over (:meth:`IncidentTracker.over`) once none of them ended inside a window
        still open, and seal it (:meth:`IncidentTracker.seal`): it is never rebuilt from part of
        its alerts."""
        self._held_by.update((i.id, i) for i in incs)
        ids = np.array([i.id for i in incs], dtype=np.int64)
        parts = [alerts] if self._held is None else [self._held, alerts]
        self._held = FlowBatch.concat(parts)
        self._held_inc = np.concatenate([self._held_inc, ids])
        self._held_score = np.concatenate([self._held_score, np.asarray(scores, np.float64)])
        assert self.behaviour is not None
        widest = self.behaviour.windows.scales[-1]
        horizon = np.floor(self.behaviour.windows.clock / widest) * widest  # open window start
        if horizon > self._horizon:
            self._horizon = horizon
            end = self._held.numeric("ts") + np.maximum(self._held.numeric("duration"), 0.0)
            young = set(np.unique(self._held_inc[end >= horizon]).tolist())
            # flows still to come start after the latest start seen (a log in start order) or
            # end after it (in end order): no alert is known before it any more
            since = min(horizon, self._clock)
            gone = {
                k
                for k, i in self._held_by.items()
                if k not in young and self.tracker.over(i, since)
            }
            drop = np.isin(self._held_inc, list(gone))
            if drop.any():
                self._keep(~drop)
            for k in gone:  # never rebuilt from part of its alerts: never reopened
                self.tracker.seal(self._held_by.pop(k))

    def _keep(self, keep: np.ndarray) -> None:
        assert self._held is not None
        self._held = self._held.take(np.flatnonzero(keep))
        self._held_inc, self._held_score = self._held_inc[keep], self._held_score[keep]

    def _adopt(self, named: Iterable[Incident], changed: dict[int, Incident]) -> None:
        """Move the held flow alerts that the named incidents ``named`` (opened or updated now)
        cover out of their "anomalous flows" incidents into the named one: a named incident
        opens when its window closes, after the flows it names have alerted, and the grouping
        must not depend on how the stream was cut into batches. An "anomalous flows" incident
        left without alerts is forgotten."""
        held = self._held
        named = [i for i in named if i.behaviour != "anomalous flows"]
        if held is None or not len(held) or not named:
            return
        moved = np.zeros(len(held), dtype=np.bool_)
        uids = np.asarray(held.column("uid").to_pylist(), dtype=object)
        for inc, mine in zip(named, members(named, held), strict=True):
            if mine.any():  # linked to every named incident holding it
                moved |= mine
                inc.alert_uids.extend(u for u in uids[mine].tolist() if u)
                changed[inc.id] = inc
        if not moved.any():
            return
        touched = np.unique(self._held_inc[moved]).tolist()
        released = {k: uids[moved & (self._held_inc == k)].tolist() for k in touched}
        self._keep(~moved)
        assert self._held is not None
        for k in touched:
            inc = self._held_by[k]
            rows = np.flatnonzero(self._held_inc == k)
            inc.alert_uids = []
            inc.released_uids = [u for u in released[k] if u]
            self._released.append(inc)
            changed[inc.id] = inc  # reported: the sinks unlink (or drop) what left it
            if not self.tracker.regroup(inc, self._held.take(rows), self._held_score[rows]):
                inc.retracted = True
                del self._held_by[k]

    def finish(self) -> list[Incident]:
        """End of the stream: close every window and incident; returns every incident."""
        if not self._finished:
            self._finished = True
            if self.behaviour is not None:
                changed: dict[int, Incident] = {}
                self._adopt(self.behaviour.flush(), changed)
                self.retracted = [i for i in changed.values() if i.retracted]
            self.tracker.tick(float("inf"))
        return self._reported(self.tracker.all())
