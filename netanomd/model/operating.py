"""The default operating point: behaviour limits and the incident budget, learned without labels.

Owns :class:`BehaviourLearner` (fed the training batches in the same pass as the flow features,
it learns :class:`~netanomd.behaviour.detectors.Thresholds`) and :class:`OperatingPoint` (those
limits plus the incident settings the model stores: the quiet period that closes an incident and
the incident budget).

How the budget works: the flow threshold is placed by it (the lowest threshold whose training
alerts, grouped per originator, make at most ``incidents_per_day`` incidents a day, never
alerting on more than :data:`~netanomd.decision.thresholds.MAX_TRAINING_ALERT_SHARE` of the
training flows: :func:`netanomd.decision.thresholds.by_incident_budget`, applied by
:func:`netanomd.model.train`). The named behaviours (scan, brute force, flood, beaconing,
exfiltration) keep their learned, population-wide limits: a training window that held an attack
cannot teach the attack is normal. "Unusual activity" (what no named behaviour explains) is
where false incidents come from, so its factor (``anomaly_factor``, how far past a learned limit
a host must go) is raised, by steps of :data:`BUDGET_STEP`, until the training window itself
would have opened at most ``incidents_per_day`` such incidents per day (busy training hosts keep
their own limits, so this rarely needs a step: it guards the window that does). Everything is
stored in the model and printed by ``netanomd train``; its ``--behaviour-quantile``,
``--behaviour-margin``, ``--incidents-per-day`` and ``--incident-quiet`` tune it (README:
"Incidents and the operating point").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from netanomd.behaviour.detectors import (
    DEFAULT_ANOMALY_FACTOR,
    DEFAULT_MARGIN,
    DEFAULT_QUANTILE,
    Thresholds,
    detect,
    fit,
)
from netanomd.behaviour.table import Table
from netanomd.behaviour.windows import DEFAULT_SCALES, Closed, HostWindows
from netanomd.flow import FlowBatch

#: False "unusual activity" incidents per day of training traffic the default point allows.
DEFAULT_INCIDENTS_PER_DAY = 2.0
#: Flow time after an incident's last evidence at which it closes.
DEFAULT_QUIET = 1800.0
#: Factor by which the anomaly factor is raised while the budget is exceeded (at most 8 steps).
BUDGET_STEP = 1.5
BUDGET_STEPS = 8


@dataclass
class OperatingPoint:
    """What the model stores for incidents: behaviour limits and the incident settings."""

    thresholds: Thresholds
    quiet: float = DEFAULT_QUIET
    incidents_per_day: float = DEFAULT_INCIDENTS_PER_DAY
    #: What learning saw (named detections in the training window, the budget's steps).
    info: dict[str, Any] | None = None

    def meta(self) -> dict[str, Any]:
        """The plain-JSON part stored in the artifact's meta (the limits are arrays)."""
        return {
            "quiet": self.quiet,
            "incidents_per_day": self.incidents_per_day,
            "quantile": self.thresholds.quantile,
            "margin": self.thresholds.margin,
            "anomaly_factor": self.thresholds.anomaly_factor,
            "learned": self.info or {},
        }

    @classmethod
    def from_stored(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> OperatingPoint:
        """Rebuild from the artifact's meta entry and its ``behaviour/*`` arrays."""
        quiet = float(meta["quiet"])
        budget = float(meta["incidents_per_day"])
        if not np.isfinite(quiet) or quiet <= 0:
            raise ValueError(f"behaviour.quiet {quiet!r} must be a positive number of seconds")
        if not np.isfinite(budget) or budget < 0:
            raise ValueError(f"behaviour.incidents_per_day {budget!r} must be >= 0")
        thr = Thresholds.from_arrays(arrays)
        if thr.host.shape[0] != len(thr.scales) or not np.all(np.isfinite(thr.host)):
            raise ValueError("behaviour limits do not match their window scales")
        return cls(thr, quiet, budget, dict(meta.get("learned", {})))


class BehaviourLearner:
    """Host windows over the training stream; :meth:`finish` learns the operating point."""

    def __init__(
        self,
        *,
        quantile: float = DEFAULT_QUANTILE,
        margin: float = DEFAULT_MARGIN,
        incidents_per_day: float = DEFAULT_INCIDENTS_PER_DAY,
        quiet: float = DEFAULT_QUIET,
        scales: tuple[float, ...] = DEFAULT_SCALES,
    ) -> None:
        if not 0.0 < quantile <= 1.0 or margin < 1.0:
            raise ValueError("behaviour quantile must be in (0, 1] and margin >= 1")
        if incidents_per_day < 0 or quiet <= 0:
            raise ValueError("incidents per day must be >= 0 and the quiet period > 0 s")
        self.quantile = quantile
        self.margin = margin
        self.incidents_per_day = incidents_per_day
        self.quiet = quiet
        self.windows = HostWindows(scales)
        self._parts: list[Closed] = []
        self._t0 = np.inf
        self._t1 = -np.inf

    def update(self, batch: FlowBatch) -> None:
        ts = batch.numeric("ts", fill=np.nan)
        if np.isfinite(ts).any():
            self._t0 = min(self._t0, float(np.nanmin(ts)))
            self._t1 = max(self._t1, float(np.nanmax(ts)))
        self._parts.append(self.windows.update(batch))

    def finish(self) -> OperatingPoint:
        """Learn the limits, then fit the anomaly factor to the incident budget."""
        self._parts.append(self.windows.flush())
        closed = Closed.concat(self._parts)
        self._parts = []
        days = max((self._t1 - self._t0) / 86400.0, 1.0 / 24.0) if self._t1 >= self._t0 else 1.0
        factor = DEFAULT_ANOMALY_FACTOR
        steps = 0
        while True:
            thr = fit(
                closed,
                self.windows.scales,
                quantile=self.quantile,
                margin=self.margin,
                anomaly_factor=factor,
            )
            found = detect(closed, thr)
            unusual = _incidents(found.take(found["behaviour"] == "unusual activity"))
            if unusual <= self.incidents_per_day * days or steps >= BUDGET_STEPS:
                break
            factor *= BUDGET_STEP
            steps += 1
        named = found.take(found["behaviour"] != "unusual activity")
        hosts: dict[str, set[str]] = {}
        for b, h in zip(named["behaviour"].tolist(), named["host"].tolist(), strict=True):
            hosts.setdefault(str(b), set()).add(h)
        info = {
            "training_days": round(days, 4),
            "unusual_incidents": unusual,
            "budget_steps": steps,
            "named_in_training": {k: len(hosts[k]) for k in sorted(hosts)},
        }
        return OperatingPoint(thr, self.quiet, self.incidents_per_day, info)


def _incidents(detections: Table) -> int:
    """Distinct (role, host, feature) among detections: roughly the incidents they would open."""
    cols = (detections["role"], detections["host"], detections["detail"])
    return len(set(zip(*(c.tolist() for c in cols), strict=True)))
