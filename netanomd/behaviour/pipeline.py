"""One path from flows to incidents: windows -> named detections -> incidents.

Owns :class:`BehaviourPipeline` and :func:`learn`. Training and live use the same
:class:`~netanomd.behaviour.windows.HostWindows` code: :func:`learn` streams the training batches
through it and fits :class:`~netanomd.behaviour.detectors.Thresholds`; a pipeline built with those
thresholds is then fed batches in arrival order (:meth:`BehaviourPipeline.process`) and keeps the
incidents up to date, with flow time as the clock. The pipeline keeps the training stream's
host history, so "new peer" means new since training began.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from netanomd.behaviour.detectors import (
    DEFAULT_ANOMALY_FACTOR,
    DEFAULT_MARGIN,
    DEFAULT_QUANTILE,
    Thresholds,
    detect,
    fit,
)
from netanomd.behaviour.incidents import Incident, IncidentTracker
from netanomd.behaviour.windows import DEFAULT_SCALES, Closed, Context, HostWindows
from netanomd.flow import FlowBatch


def learn(
    batches: Iterable[FlowBatch],
    *,
    scales: tuple[float, ...] = DEFAULT_SCALES,
    quantile: float = DEFAULT_QUANTILE,
    margin: float = DEFAULT_MARGIN,
    anomaly_factor: float = DEFAULT_ANOMALY_FACTOR,
    windows: HostWindows | None = None,
) -> Thresholds:
    """Thresholds learned from a training stream (``windows`` keeps the history if given)."""
    w = windows if windows is not None else HostWindows(scales)
    parts = [w.update(b) for b in batches]
    parts.append(w.flush())
    return fit(
        Closed.concat(parts),
        w.scales,
        quantile=quantile,
        margin=margin,
        anomaly_factor=anomaly_factor,
    )


class BehaviourPipeline:
    """Feed flows in arrival order; incidents come out (see the module docstring)."""

    def __init__(
        self,
        thresholds: Thresholds,
        *,
        windows: HostWindows | None = None,
        tracker: IncidentTracker | None = None,
    ) -> None:
        scales = tuple(float(s) for s in thresholds.scales)
        self.windows = windows if windows is not None else HostWindows(scales)
        if self.windows.scales != scales:
            raise ValueError(f"windows have scales {self.windows.scales}, thresholds {scales}")
        self.thresholds = thresholds
        self.tracker = tracker if tracker is not None else IncidentTracker()

    def process(self, batch: FlowBatch) -> list[Incident]:
        """Add a batch; returns incidents opened or updated by the windows it closed."""
        return self.update(batch)[0]

    def update(
        self,
        batch: FlowBatch,
        context: np.ndarray | None = None,
        times: np.ndarray | None = None,
        *,
        tick: bool = True,
    ) -> tuple[list[Incident], Context]:
        """:meth:`process`, plus the originator context of the batch rows in ``context`` (the
        flows that alerted) as the windows saw them arrive
        (:data:`~netanomd.behaviour.windows.CONTEXT_COLUMNS`); ``times``: a wider stream's
        clock (:meth:`~netanomd.behaviour.windows.HostWindows.update`). Without ``tick`` quiet
        incidents are not closed at the batch's end (the caller still has flows of it to group)."""
        closed = self.windows.update(batch, context=context, times=times)
        found = self.tracker.update(detect(closed, self.thresholds), self.windows.clock, tick=tick)
        return found, closed.context

    def flush(self) -> list[Incident]:
        """Close the open windows now (a file ended, a stream went quiet); incidents stay open
        until their quiet period passes. Returns incidents opened or updated."""
        closed = self.windows.flush()
        return self.tracker.update(detect(closed, self.thresholds), self.windows.clock)

    def finish(self) -> list[Incident]:
        """End of stream: close every window and every incident; returns all incidents."""
        self.flush()
        self.tracker.tick(float("inf"))
        return self.tracker.all()
