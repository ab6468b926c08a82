"""Sinks: where verdicts go (SQLite, Elasticsearch, Zeek notices), and the fan-out to all of them.

Contract (:class:`Sink`), one life cycle for every sink:

- ``open()`` starts whatever the sink runs in the background (Elasticsearch's sender);
- ``write(alerts)`` accepts a batch of alerts and must not block scoring for long; a sink that
  cannot deliver keeps or drops by its own policy and logs;
- ``flush()`` pushes out what is buffered;
- ``close(timeout)`` flushes, delivers what it still can within ``timeout`` seconds, releases
  its resources, and returns False when something was left undelivered (kept for later, e.g. in
  a spool).

A sink that also keeps incidents (:class:`IncidentSink`) has ``write_incidents(incidents)``: the
incidents opened or updated by a batch, each to be stored under its id, replacing the previous
version of the same incident (incidents grow while they last).

:class:`SinkSet` holds the sinks of one run (the daemon's or a command's), writes every batch to
each of them, counts per sink what was written and what failed, and opens and closes them
together. A sink that raises is counted and logged; the others still get the batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from netanomd.decision import Alert

if TYPE_CHECKING:
    from netanomd.behaviour.incidents import Incident

log = logging.getLogger(__name__)


@runtime_checkable
class Sink(Protocol):
    name: str

    def open(self) -> None: ...

    def write(self, alerts: Sequence[Alert]) -> None: ...

    def flush(self) -> None: ...

    def close(self, timeout: float = 30.0) -> bool: ...


@runtime_checkable
class IncidentSink(Sink, Protocol):
    def write_incidents(self, incidents: Sequence[Incident]) -> None: ...


class SinkSet:
    """Every sink of a run, written to together (see the module docstring)."""

    def __init__(self, sinks: Sequence[Sink] = ()) -> None:
        self._sinks: list[Sink] = []
        #: Alerts each sink accepted, by sink name.
        self.written: dict[str, int] = {}
        #: Batches each sink failed to take, by sink name.
        self.errors: dict[str, int] = {}
        #: Sinks whose last write failed, with when they started failing (epoch seconds).
        self.failing: dict[str, float] = {}
        for sink in sinks:
            self.add(sink)

    def add(self, sink: Sink) -> None:
        self._sinks.append(sink)
        self.written.setdefault(sink.name, 0)
        self.errors.setdefault(sink.name, 0)

    def __iter__(self) -> Iterator[Sink]:
        return iter(self._sinks)

    def __len__(self) -> int:
        return len(self._sinks)

    def open(self) -> None:
        for sink in self._sinks:
            sink.open()

    def write(self, alerts: Sequence[Alert], only: Sequence[Sink] | None = None) -> list[Sink]:
        """Write to every sink (or to ``only`` those, for a retry); returns the sinks that
        failed (each failure is counted, and the sink is marked failing until it writes)."""
        failed = self._each(self._sinks if only is None else only, lambda s: s.write(alerts))
        for sink in self._sinks if only is None else only:
            if sink not in failed:
                self.written[sink.name] += len(alerts)
        return failed

    def write_incidents(
        self, incidents: Sequence[Incident], only: Sequence[Sink] | None = None
    ) -> list[Sink]:
        """Store opened or updated incidents in every sink that keeps incidents (or in ``only``
        those); returns the sinks that failed, counted and marked like :meth:`write`."""
        if not incidents:
            return []
        keep = [s for s in (self._sinks if only is None else only) if isinstance(s, IncidentSink)]
        return self._each(keep, lambda s: s.write_incidents(incidents))  # type: ignore[attr-defined]

    def _each(self, sinks: Sequence[Sink], call: Callable[[Sink], None]) -> list[Sink]:
        """Call every sink; one that raises is counted, marked failing (logged once until it
        works again) and returned; the others still get their call."""
        failed: list[Sink] = []
        for sink in sinks:
            try:
                call(sink)
            except Exception as exc:  # one sink must not take the others down
                failed.append(sink)
                self.errors[sink.name] += 1
                if sink.name not in self.failing:
                    self.failing[sink.name] = time.time()
                    log.error("sink %s cannot write: %s", sink.name, exc)
            else:
                if self.failing.pop(sink.name, None) is not None:
                    log.info("sink %s writes again", sink.name)
        return failed

    def flush(self) -> None:
        for sink in self._sinks:
            try:
                sink.flush()
            except Exception as exc:
                log.error("sink %s: flush failed: %s", sink.name, exc)

    def close(self, timeout: float = 30.0) -> bool:
        """Close every sink within ``timeout`` seconds in all; False if any kept something
        undelivered."""
        deadline = time.monotonic() + timeout
        ok = True
        for sink in self._sinks:
            try:
                ok = sink.close(max(0.5, deadline - time.monotonic())) and ok
            except Exception as exc:
                ok = False
                log.error("sink %s: close failed: %s", sink.name, exc)
        return ok
