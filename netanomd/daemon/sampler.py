"""The training reservoir's feeder, off the scoring thread.

Owns :class:`Sampler`: the scoring loop hands each scored batch (its scores, its alerts and the
incidents open at that moment) to a thread of its own that adds it to the
:class:`~netanomd.model.reservoir.Reservoir` (the day sample and the drift monitor's recent
flows), so a sample that thins itself, merges its parts or writes its day files never holds up
the next batch's alerts. Batches are added in the order they were scored, several at a time
(:meth:`~netanomd.model.reservoir.Reservoir.add_all`, whose cost is mostly per call: the open
incidents' membership, the drift sample's parts): the thread waits until :data:`GATHER_ROWS`
flows, or half ``backlog`` batches, are queued, or the oldest has waited ``linger`` seconds,
then adds what is queued (up to :data:`COALESCE_ROWS` flows) in one call. When the thread falls
``backlog`` batches behind, the scoring loop waits for room: the sample never loses a batch,
and a thread that cannot keep up slows scoring instead of growing without bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from netanomd.behaviour.incidents import Incident
from netanomd.decision import Alert
from netanomd.flow import FlowBatch

if TYPE_CHECKING:  # (the commands importing the daemon's wiring do not load pyarrow.parquet)
    from netanomd.model.reservoir import Reservoir, Scored

log = logging.getLogger(__name__)

#: The most flows the thread adds in one call (queued batches added together).
COALESCE_ROWS = 65_536
#: The flows the thread waits for before adding (unless ``linger`` passed, or half its
#: backlog of batches is queued): a micro-batch at a time, the reservoir cost the live daemon
#: as much as its per-flow features.
GATHER_ROWS = 8_192


class Sampler:
    """Adds scored batches to ``reservoir`` on its own thread (started on the first batch)."""

    def __init__(self, reservoir: Reservoir, *, backlog: int = 64, linger: float = 1.0) -> None:
        self.reservoir = reservoir
        self.backlog = backlog
        #: The longest a batch waits to be gathered with others (seconds).
        self.linger = linger
        #: Times the scoring loop waited for room (the thread was ``backlog`` batches behind).
        self.waits = 0
        #: Calls to the reservoir (batches queued together are added in one).
        self.adds = 0
        self._work: deque[Scored] = deque()
        self._rows = 0  # flows queued
        self._since = 0.0  # when the oldest queued batch was queued (monotonic)
        self._settling = 0  # callers of settle(): gather no longer
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(
        self,
        batch: FlowBatch,
        scores: np.ndarray,
        alerts: Sequence[Alert],
        open_incidents: Iterable[Incident],
    ) -> None:
        """Queue a scored batch for the reservoir (``open_incidents`` is read now: the
        incidents open when the batch was scored)."""
        from netanomd.model.reservoir import Scored

        work = Scored(batch, scores, alerts, list(open_incidents))
        with self._cond:
            if len(self._work) >= self.backlog and not self._closed:
                self.waits += 1
                self._cond.wait_for(lambda: len(self._work) < self.backlog or self._closed)
            if self._closed:  # (shutting down: the thread may be gone; added here and now)
                self._add([work])
                return
            if not self._work:
                self._since = time.monotonic()
            self._work.append(work)
            self._rows += len(batch)
            if self._ready():
                self._cond.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="reservoir", daemon=True)
                self._thread.start()

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until every batch handed in has been added; False on timeout."""
        with self._cond:
            self._settling += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: not self._work and not self._busy, timeout)
            finally:
                self._settling -= 1

    def close(self) -> None:
        """Add what is queued, stop the thread and write the reservoir's days."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        self.reservoir.flush()

    def _ready(self) -> bool:
        """Whether the thread should add what is queued now (caller holds the lock)."""
        return bool(self._work) and (
            self._closed
            or self._settling > 0
            or self._rows >= GATHER_ROWS
            or 2 * len(self._work) >= self.backlog
            or time.monotonic() - self._since >= self.linger
        )

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._ready():
                    if self._closed and not self._work:
                        return
                    left = self._since + self.linger - time.monotonic() if self._work else None
                    self._cond.wait(left)
                work = [self._work.popleft()]
                rows = len(work[0].batch)
                while self._work and rows + len(self._work[0].batch) <= COALESCE_ROWS:
                    work.append(self._work.popleft())
                    rows += len(work[-1].batch)
                self._rows -= rows
                self._since = time.monotonic()
                self._busy = True
                self._cond.notify_all()  # room for the scoring loop
            try:
                self._add(work)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _add(self, work: list[Scored]) -> None:
        self.adds += 1
        try:
            self.reservoir.add_all(work)
        except Exception:  # a bug there must not count scored flows as lost
            n = sum(len(w.batch) for w in work)
            log.exception("the training reservoir could not take %d scored flows", n)
