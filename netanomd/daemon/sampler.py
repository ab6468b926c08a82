"""The training reservoir's feeder, off the scoring thread.

Owns :class:`Sampler`: the scoring loop hands each scored batch (its scores, its alerts and the
incidents open at that moment) to a thread of its own that adds it to the
:class:`~netanomd.model.reservoir.Reservoir` (the day sample and the drift monitor's recent
flows), so a sample that thins itself, merges its parts or writes its day files never holds up
the next batch's alerts. Batches are added in the order they were scored. When the thread falls
``backlog`` batches behind, the scoring loop waits for room: the sample never loses a batch, and
a thread that cannot keep up slows scoring instead of growing without bound.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from netanomd.behaviour.incidents import Incident
from netanomd.decision import Alert
from netanomd.flow import FlowBatch

if TYPE_CHECKING:
    from netanomd.model.reservoir import Reservoir

log = logging.getLogger(__name__)

_Work = tuple[FlowBatch, np.ndarray, list[Alert], list[Incident]]


class Sampler:
    """Adds scored batches to ``reservoir`` on its own thread (started on the first batch)."""

    def __init__(self, reservoir: Reservoir, *, backlog: int = 64) -> None:
        self.reservoir = reservoir
        self.backlog = backlog
        #: Times the scoring loop waited for room (the thread was ``backlog`` batches behind).
        self.waits = 0
        self._work: deque[_Work] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(
        self,
        batch: FlowBatch,
        scores: np.ndarray,
        alerts: list[Alert],
        open_incidents: Iterable[Incident],
    ) -> None:
        """Queue a scored batch for the reservoir (``open_incidents`` is read now: the
        incidents open when the batch was scored)."""
        work = (batch, scores, alerts, list(open_incidents))
        with self._cond:
            if len(self._work) >= self.backlog and not self._closed:
                self.waits += 1
                self._cond.wait_for(lambda: len(self._work) < self.backlog or self._closed)
            if self._closed:  # (shutting down: the thread may be gone; added here and now)
                self._add(work)
                return
            self._work.append(work)
            self._cond.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="reservoir", daemon=True)
                self._thread.start()

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until every batch handed in has been added; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._work and not self._busy, timeout)

    def close(self) -> None:
        """Add what is queued, stop the thread and write the reservoir's days."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        self.reservoir.flush()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._work and not self._closed:
                    self._cond.wait()
                if not self._work:
                    return
                work = self._work.popleft()
                self._busy = True
            try:
                self._add(work)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _add(self, work: _Work) -> None:
        batch, scores, alerts, incidents = work
        try:
            self.reservoir.add(batch, scores, alerts, incidents)
        except Exception:  # a bug there must not count scored flows as lost
            log.exception("the training reservoir could not take %d scored flows", len(batch))
