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
counted per rule; host behaviour still sees every flow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from netanomd.behaviour.context import ContextPart, for_alerts
from netanomd.behaviour.incidents import Incident, IncidentTracker
from netanomd.behaviour.pipeline import BehaviourPipeline
from netanomd.behaviour.signed import SignedFlows
from netanomd.decision import Alert, Contribution, above_threshold
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
        scores, alerts = self.model.decide(batch, self.spec, threshold)
        if not len(batch) and times is None:  # (an empty part still moves the clocks on)
            return scores, alerts, []
        ts = batch.numeric("ts", fill=np.nan)
        if np.isfinite(ts).any():
            self._clock = max(self._clock, float(np.nanmax(ts)))
        all_scores = scores
        alerted = np.zeros(len(batch), dtype=np.bool_)
        idx = above_threshold(scores, self.model.threshold_for(threshold))
        if self.suppress is not None:
            keep = self.suppress.flows(batch, idx)
            alerts = [a for a, k in zip(alerts, keep.tolist(), strict=True) if k]
            idx = idx[keep]
        alerted[idx] = True
        alerted_all = alerted
        placed = batch.placed()
        if not placed.all():  # no time or originator (a CICFlowMeter derivative): no host view
            rows = np.flatnonzero(placed)
            batch, scores, alerted = batch.take(rows), scores[rows], alerted[rows]
            if times is not None:
                times = np.r_[times[rows], times[-1]]
        changed: dict[int, Incident] = {}
        idx = np.flatnonzero(alerted)
        if self.behaviour is not None:
            found, context = self.behaviour.update(batch, idx, times)
            changed.update((i.id, i) for i in found)
            extra = iter(for_alerts(context, idx, batch, self.behaviour.thresholds))
            # alerts follow the whole batch's alerted rows; only placed ones have a context
            has_context = placed[np.flatnonzero(alerted_all)].tolist()
            alerts = [
                _with_context(a, next(extra)) if there else a
                for a, there in zip(alerts, has_context, strict=True)
            ]
        for inc in changed.values():
            inc.alert_uids = []
        if idx.size:
            idx = self._link_named(batch, idx, changed)
        if idx.size:
            now = self.behaviour.windows.clock if self.behaviour is not None else self._clock
            rest = batch.take(idx)
            found = self.tracker.add_flow_alerts(rest, scores[idx], now)
            by_host: dict[str, list[str]] = {}  # grouped once: one pass over the alerts
            for host, uid in zip(
                rest.column("orig_h").to_pylist(), rest.column("uid").to_pylist(), strict=True
            ):
                if uid:
                    by_host.setdefault(host, []).append(uid)
            for inc in found:  # "anomalous flows": one incident per originator
                inc.alert_uids = by_host.get(inc.host, [])
            changed.update((i.id, i) for i in found)
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
        self, batch: FlowBatch, idx: np.ndarray, changed: dict[int, Incident]
    ) -> np.ndarray:
        """Link the alerted rows ``idx`` of ``batch`` that an open behaviour incident already
        holds to it (``alert_uids``; the incident is reported as updated); returns the rows
        left for "anomalous flows"."""
        named = [i for i in self.tracker.open.values() if i.behaviour != "anomalous flows"]
        if not named:
            return idx
        alerts = batch.take(idx)
        uids: np.ndarray | None = None  # read only when an incident holds some of them
        inside = np.zeros(len(alerts), dtype=np.bool_)
        for inc in named:
            members = inc.members(alerts)
            if members.any():
                inside |= members
                if uids is None:
                    uids = np.asarray(alerts.column("uid").to_pylist(), dtype=object)
                if inc.id not in changed:
                    inc.alert_uids = []
                    changed[inc.id] = inc
                inc.alert_uids.extend(u for u in uids[members].tolist() if u)
        return idx[~inside]

    def finish(self) -> list[Incident]:
        """End of the stream: close every window and incident; returns every incident."""
        if not self._finished:
            self._finished = True
            if self.behaviour is not None:
                self.behaviour.flush()
            self.tracker.tick(float("inf"))
        return self._reported(self.tracker.all())
