"""The daemon's scoring pipeline: a bounded queue between the sources and one scoring loop.

Owns intake (``offer``, or the :class:`~netanomd.sources.Emit` callable ``emitter`` makes for a
live source: sources hand in FlowBatches, with an optional ``ack`` called once the flows have
reached every sink, in the order they were offered — file followers save their offsets there; an
empty batch with an ack waits its turn too), the queue bound (in
flows) and what happens when it is full (``block`` for sources that can wait, else drop the
oldest or the newest work, counted), micro-batching (up to ``batch_size`` flows or
``batch_timeout`` seconds after the first queued flow, whichever comes first; while a backlog
waits, up to ``backlog_batch_size`` flows at once), community_id
de-duplication across sources, scoring through the model's stream
(:meth:`~netanomd.model.Model.stream`: flow alerts, host behaviour and incidents), writing the
alerts and then the incidents they opened or updated to the run's
:class:`~netanomd.sinks.SinkSet` (both retried until written), the model swap used by reload
(atomic: the next micro-batch uses the new model, in a new stream; the old stream's incidents are
closed and written), and draining on shutdown (which closes the incidents:
:meth:`Pipeline.close_incidents`). The training reservoir is fed off the scoring thread
(:class:`~netanomd.daemon.sampler.Sampler`), and :meth:`Pipeline.warm_up` scores sample flows on a
throwaway stream before the first live batch, so neither holds up a batch's alerts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson

from netanomd.behaviour.incidents import Incident
from netanomd.daemon.dedup import Deduplicator
from netanomd.daemon.sampler import Sampler
from netanomd.decision import Alert
from netanomd.flow import FlowBatch
from netanomd.fsutil import open_append
from netanomd.model import Model
from netanomd.model.stream import Stream
from netanomd.sinks import Sink, SinkSet
from netanomd.sources import Ack, Emit

if TYPE_CHECKING:
    from netanomd.feedback.suppress import Suppressor
    from netanomd.model.reservoir import Reservoir

log = logging.getLogger(__name__)


@dataclass
class _Item:
    batch: FlowBatch
    source: str
    ack: Ack | None
    arrived: float


@dataclass(frozen=True)
class BatchTiming:
    """Where the last micro-batch spent its time (``clock`` seconds): its oldest flow arrived,
    the scoring loop took it off the queue, the stream scored it, the sinks had its alerts and
    incidents."""

    arrived: float
    taken: float
    scored: float
    written: float


@dataclass
class PipelineStats:
    received: dict[str, int] = field(default_factory=dict)
    scored: int = 0
    alerts: int = 0
    #: Incident updates written (an incident is written again each time it changes).
    incident_updates: int = 0
    duplicates: int = 0
    #: Flows that made the model raise, set aside in the quarantine file (never retried).
    quarantined: int = 0
    #: Acknowledgements that failed (e.g. offsets.json on a full disk); a later one catches up.
    ack_errors: int = 0
    #: When each source last handed in flows (epoch seconds).
    last_received: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    batches: int = 0


class Pipeline:
    def __init__(
        self,
        model: Model,
        sinks: SinkSet,
        *,
        batch_size: int = 1000,
        backlog_batch_size: int = 8192,
        batch_timeout: float = 0.05,
        queue_size: int = 65536,
        on_full: str = "drop_oldest",
        dedup_window: float | None = None,
        threshold: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_batch: Callable[[FlowBatch, np.ndarray, list[Alert], float], None] | None = None,
        quarantine: Path | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if on_full not in ("block", "drop_oldest", "drop_newest"):
            raise ValueError(f"on_full: unknown policy {on_full!r}")
        self.model = model
        self._stream = model.stream()
        #: The allowlist hook given to every stream (netanomd.feedback; set by the ui section).
        self.suppress: Suppressor | None = None
        #: Feeds the training reservoir (:attr:`reservoir`) with every scored batch.
        self.sampler: Sampler | None = None
        self.sinks = sinks
        self.batch_size = batch_size
        #: The most flows taken at once while more than ``batch_size`` wait (a backlog): the
        #: stream's cost per batch is then paid once for several batches' worth.
        self.backlog_batch_size = max(batch_size, backlog_batch_size)
        self.batch_timeout = batch_timeout
        self.queue_size = queue_size
        self.on_full = on_full
        self.threshold = threshold
        self.clock = clock
        self.on_batch = on_batch
        self.quarantine = quarantine
        self.wall_clock = wall_clock
        self.dedup = Deduplicator(dedup_window) if dedup_window else None
        self.stats = PipelineStats()
        #: Monotonic time of the scoring loop's last turn (the watchdog checks it).
        self.heartbeat = clock()
        self._queue: deque[_Item] = deque()
        self._queued = 0
        self._busy = 0
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._intake = True
        self._stopped = False
        self._wake = threading.Event()
        self._log_next = 0.0
        self._quarantine_log_next = 0.0
        #: The last scored micro-batch's timing (set before ``on_batch`` is told).
        self.timing: BatchTiming | None = None

    @property
    def reservoir(self) -> Reservoir | None:
        """The training reservoir fed with every scored batch (netanomd.model.reservoir)."""
        return None if self.sampler is None else self.sampler.reservoir

    @reservoir.setter
    def reservoir(self, reservoir: Reservoir | None) -> None:
        self.sampler = None if reservoir is None else Sampler(reservoir)

    def recent_scores(self, settle: float = 5.0) -> np.ndarray:
        """The recent traffic's scores (the drift monitor's sample of every flow), with the
        batches scored so far in it (the reservoir's thread gathers them: waits up to
        ``settle`` seconds for it); empty without a reservoir."""
        if self.sampler is None:
            return np.empty(0)
        self.sampler.settle(settle)
        return self.sampler.reservoir.recent.scores()

    def warm_up(self, batches: Iterable[FlowBatch]) -> int:
        """Score ``batches`` on a throwaway stream of the model, nothing written or kept: the
        first live batch then finds the compiled kernels loaded (numba's cache) and the code
        paths of scoring, host windows and incidents run once, instead of paying for them
        while its alerts wait. Returns the flows scored."""
        stream = self.model.stream()
        n = 0
        for batch in batches:
            stream.process(batch, self.threshold)
            n += len(batch)
        stream.finish()
        return n

    # -- intake ----------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        return self._queued

    @property
    def accepting(self) -> bool:
        """False once intake has stopped (shutdown)."""
        return self._intake

    def offer(
        self,
        batch: FlowBatch,
        source: str,
        ack: Ack | None = None,
        *,
        block: bool | None = None,
        timeout: float | None = None,
        arrived: float | None = None,
    ) -> bool:
        """Queue a batch; False if it was dropped (queue full, or intake stopped).

        ``block`` (default: the ``on_full`` policy is ``block``) waits for room, up to
        ``timeout`` seconds, for sources that can hold back their producer. ``arrived`` is when
        the oldest flow of the batch reached the daemon (monotonic; default now).
        """
        n = len(batch)
        if n == 0 and ack is None:
            return True
        wait = self.on_full == "block" if block is None else block
        with self._lock:
            self.stats.received[source] = self.stats.received.get(source, 0) + n
            if n:
                self.stats.last_received[source] = self.wall_clock()
            if not self._intake:
                self._drop("stopping", n)
                return False
            if n and self._queued + n > self.queue_size and self._queued > 0:
                if wait:
                    deadline = None if timeout is None else self.clock() + timeout
                    while self._intake and self._queued + n > self.queue_size and self._queued:
                        left = None if deadline is None else deadline - self.clock()
                        if left is not None and left <= 0:
                            break
                        self._not_full.wait(left if left is not None else 1.0)
                if n and self._queued + n > self.queue_size and self._queued > 0:
                    if self.on_full == "drop_oldest" and not wait:
                        while self._queue and self._queued + n > self.queue_size:
                            old = self._queue.popleft()
                            self._queued -= len(old.batch)
                            self._drop("queue_full_oldest", len(old.batch))
                    else:
                        self._drop("queue_full", n)
                        return False
            self._queue.append(_Item(batch, source, ack, arrived or self.clock()))
            self._queued += n
            self._not_empty.notify()
            return True

    def emitter(self, source: str, *, block: bool, timeout: float = 1.0) -> Emit:
        """The :class:`~netanomd.sources.Emit` callable for one live source: ``block`` waits up to
        ``timeout`` seconds for room (sources that can hold their producer back), otherwise the
        ``on_full`` policy decides."""

        def emit(batch: FlowBatch, ack: Ack | None = None, *, arrived: float | None = None) -> bool:
            return self.offer(
                batch, source, ack, block=block, timeout=timeout if block else None, arrived=arrived
            )

        return emit

    def _drop(self, reason: str, n: int) -> None:
        self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) + n
        now = self.clock()
        if now >= self._log_next:  # at most one line every 10 s
            self._log_next = now + 10.0
            log.warning(
                "dropping flows (%s): %d so far; scoring cannot keep up with intake",
                reason,
                sum(self.stats.dropped.values()),
            )

    # -- scoring loop ----------------------------------------------------------------------
    def _take(self) -> list[_Item] | None:
        """Wait for work; then gather up to batch_size flows or until batch_timeout. When more
        than batch_size flows are already waiting (a backlog), up to backlog_batch_size of them
        are taken: they would only wait for the next turn otherwise."""
        with self._lock:
            while not self._queue:
                self.heartbeat = self.clock()
                if self._stopped or not self._intake:
                    return None
                self._not_empty.wait(0.5)
            deadline = self._queue[0].arrived + self.batch_timeout
            while self._queued < self.batch_size and self._intake:
                left = deadline - self.clock()
                if left <= 0:
                    break
                self._not_empty.wait(left)
            limit = self.backlog_batch_size if self._queued > self.batch_size else self.batch_size
            items, n = [], 0
            while self._queue and (n == 0 or n + len(self._queue[0].batch) <= limit):
                item = self._queue.popleft()
                n += len(item.batch)
                items.append(item)
            self._queued -= n
            self._busy = n
            self._not_full.notify_all()
            return items

    def run(self) -> None:
        """The scoring loop; returns once intake is stopped and the queue is empty."""
        while True:
            items = self._take()
            if items is None:
                return
            try:
                self.process(items)
            except Exception:  # a bug, not bad input (that is set aside): keep scoring
                n = sum(len(i.batch) for i in items)
                log.exception("the scoring loop failed on %d flows; they are not scored", n)
                self._drop("scoring_error", n)
            finally:
                with self._lock:
                    self._busy = 0
                    self._not_full.notify_all()
                self.heartbeat = self.clock()

    def process(self, items: list[_Item]) -> None:
        taken = self.clock()
        full = [i.batch for i in items if len(i.batch)]
        batch = FlowBatch.concat(full) if len(full) > 1 else full[0] if full else None
        if batch is not None and self.dedup is not None:
            batch, dropped = self.dedup.apply(batch, self.clock())
            self.stats.duplicates += dropped
        scores: np.ndarray = np.empty(0)
        alerts: list[Alert] = []
        if batch is not None and len(batch):
            batch, scores, alerts, incidents = self._score(batch)
            scored = self.clock()
            if not self._deliver(alerts) or not self._deliver_incidents(incidents):
                return  # stopping with a sink that cannot write: nothing is acknowledged
            arrived = min(i.arrived for i in items)
            self.timing = BatchTiming(arrived, taken, scored, self.clock())
        for item in items:
            if item.ack is not None:
                try:
                    item.ack()
                except Exception as exc:  # e.g. offsets.json on a full disk
                    self.stats.ack_errors += 1
                    log.error("%s: could not save its position: %s", item.source, exc)
        if batch is not None and self.on_batch is not None:
            self.on_batch(batch, scores, alerts, min(i.arrived for i in items))
        if batch is not None and len(batch) and self.sampler is not None:
            # The training sample last, on its own thread: the alerts are written and the
            # sources acknowledged.
            self.sampler.add(batch, scores, alerts, self._stream.tracker.open.values())
        if batch is not None and len(batch):
            # Counted once the batch is through (written, acknowledged, handed to the sample):
            # what waits for "scored" (a drift pass settling the sample, a test) sees it all.
            self.stats.scored += len(batch)
            self.stats.alerts += len(alerts)
            self.stats.batches += 1

    def _score(self, batch: FlowBatch) -> tuple[FlowBatch, np.ndarray, list[Alert], list[Incident]]:
        """Score a batch on the stream; if the model raises, score its flows one by one and set
        aside those that still make it raise, so no single record can stop scoring (or, after a
        restart, stop it again)."""
        stream = self._current_stream()
        try:
            scores, alerts, incidents = stream.process(batch, self.threshold)
            return batch, scores, alerts, incidents
        except Exception as exc:
            log.error("scoring %d flows failed (%r); scoring them one by one", len(batch), exc)
        kept: list[int] = []
        parts: list[np.ndarray] = []
        alerts = []
        changed: dict[int, Incident] = {}
        for i in range(len(batch)):
            one = batch.take([i])
            try:
                s, a, inc = stream.process(one, self.threshold)
            except Exception as exc:
                self._set_aside(one, exc)
                continue
            kept.append(i)
            parts.append(s)
            alerts.extend(a)
            changed.update((x.id, x) for x in inc)
        scores = np.concatenate(parts) if parts else np.empty(0)
        return batch.take(kept), scores, alerts, list(changed.values())

    def _current_stream(self) -> Stream:
        """The stream of the model in force; after a swap, the old stream's incidents close."""
        model = self.model  # one reference per micro-batch: a swap applies to the next one
        if self._stream.model is not model:
            self._deliver_incidents([*self._stream.finish(), *self._stream.retracted])
            self._stream = model.stream()
        self._stream.suppress = self.suppress
        return self._stream

    def close_incidents(self) -> bool:
        """End the stream (shutdown, once drained): close every incident and write them, one
        attempt (shutdown does not wait on a sink). False if a sink could not take them."""
        closed = self._stream.finish()
        failed = self.sinks.write_incidents([*closed, *self._stream.retracted])
        if failed:
            log.error(
                "%s could not take the %d incidents closed at shutdown",
                ", ".join(s.name for s in failed),
                len(closed),
            )
        return not failed

    def _set_aside(self, one: FlowBatch, exc: Exception) -> None:
        self.stats.quarantined += 1
        record = next(one.records())
        if self.quarantine is not None:
            try:
                with open_append(self.quarantine) as fh:
                    fh.write(orjson.dumps({"error": repr(exc), "flow": record.to_dict()}) + b"\n")
            except OSError as err:
                log.error("could not write the quarantine file %s: %s", self.quarantine, err)
        now = self.clock()
        if now >= self._quarantine_log_next:  # at most one line every 10 s
            self._quarantine_log_next = now + 10.0
            log.error(
                "flow %s %s:%s -> %s:%s made the model fail (%r); set aside in %s (%d so far)",
                record.uid,
                record.orig_h,
                record.orig_p,
                record.resp_h,
                record.resp_p,
                exc,
                self.quarantine or "no quarantine file",
                self.stats.quarantined,
            )

    def _deliver(self, alerts: list[Alert]) -> bool:
        """Write to every sink; a sink that fails is retried (with capped backoff) until it
        writes, holding back the acknowledgements and so the sources (backpressure). False
        only when stopped while a sink still could not write."""
        return self._until_written(
            lambda only: self.sinks.write(alerts, only), f"{len(alerts)} alerts"
        )

    def _deliver_incidents(self, incidents: list[Incident]) -> bool:
        """Write incidents to the sinks that keep them, retried like alerts (:meth:`_deliver`)."""
        if not incidents:
            return True
        written = self._until_written(
            lambda only: self.sinks.write_incidents(incidents, only), f"{len(incidents)} incidents"
        )
        if written:
            self.stats.incident_updates += len(incidents)
        return written

    def _until_written(
        self, write: Callable[[Sequence[Sink] | None], list[Sink]], what: str
    ) -> bool:
        """``write`` to every sink, then again to those that failed, with capped backoff, until
        none fails; False when stopped first."""
        pending = write(None)
        delay = 0.5
        while pending:
            self.heartbeat = self.clock()  # waiting on purpose: not a stalled loop
            if self._stopped:
                log.error(
                    "stopping while %s cannot write: %s not written, positions not saved",
                    ", ".join(s.name for s in pending),
                    what,
                )
                return False
            self._wake.wait(delay)
            delay = min(delay * 2, 10.0)
            pending = write(pending)
        return True

    # -- control ---------------------------------------------------------------------------
    def swap_model(self, model: Model) -> None:
        self.model = model

    def stop_intake(self) -> None:
        with self._lock:
            self._intake = False
            self._not_empty.notify_all()
            self._not_full.notify_all()

    def drain(self, timeout: float) -> bool:
        """Stop intake and wait until everything queued has been scored and written."""
        self.stop_intake()
        deadline = self.clock() + timeout
        while self.clock() < deadline:
            with self._lock:
                idle = not self._queue and not self._busy
            if idle:
                self.close_incidents()
                return True
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        self._wake.set()
        if self.sampler is not None:
            self.sampler.close()
        with self._lock:
            self._stopped = True
            self._intake = False
            self._not_empty.notify_all()
