"""Flow sources. Every source produces :class:`netanomd.flow.FlowBatch` objects.

Two shapes, one each for files and for live inputs:

- :class:`Source` (files, pulled): ``batches()`` yields batches until the input ends.
- :class:`LiveSource` (sockets, followed logs, Redis, Zeek links; pushed): ``run()`` blocks in
  its own thread until ``stop()``, handing every batch to the ``emit`` callable it was built
  with; ``ready`` is set once it accepts input (a socket bound, a link connected).
  ``emit(batch, ack)`` returns False when the batch was dropped; ``ack`` (optional) is called
  once every sink has written the batch, and only then may a source commit its position.

The file contract (:class:`Source`): ``batches()`` yields conformed batches, streaming with memory
bounded by the batch size, never the input size; ``stats`` counts what was read and what was
skipped. A malformed line is logged with file and line number, counted in
``stats.malformed`` and skipped; the rest of the input is still read. Input that is not a log
at all raises :class:`netanomd.errors.InputError` once, naming the file.

Every parser (and the scoring API) bounds integer values the same way, by :func:`int_range`:
a record with a count beyond :data:`MAX_COUNT` or a port beyond 65535 is malformed.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.compute as pc

from netanomd.flow import FlowBatch

log = logging.getLogger(__name__)

#: The largest count (bytes, packets) a flow may carry. The features are float64, which hold
#: integers exactly up to 2**53 (8 PiB in one flow); a larger count is corrupt input, and a
#: parser refuses the record rather than clamp it to a made-up value the model would score.
MAX_COUNT = 2**53
_PORT_RANGE = (0, 65535)
_RANGES = {"orig_p": _PORT_RANGE, "resp_p": _PORT_RANGE, "flow_id": (0, 2**64 - 1)}


def int_range(name: str) -> tuple[int, int]:
    """The values an integer column of :data:`~netanomd.flow.FLOW_SCHEMA` may hold: ports
    0-65535, Suricata's flow id any unsigned 64-bit number, counts 0-:data:`MAX_COUNT`."""
    return _RANGES.get(name, (0, MAX_COUNT))


def out_of_range(name: str, column: pa.Array) -> list[int]:
    """Indices of the values of the integer column ``name`` outside :func:`int_range`."""
    lo, hi = int_range(name)
    if pa.types.is_unsigned_integer(column.type) and hi >= 2 ** (8 * column.type.byte_width) - 1:
        return []  # every value of the type is allowed
    bad = pc.or_(pc.less(column, lo), pc.greater(column, hi))
    return [int(i) for i in pc.indices_nonzero(pc.fill_null(bad, False)).to_pylist()]


#: How many distinct reasons a ReadStats counts apart (the rest count as "other").
MAX_REASONS = 32


def problem_reason(message: str) -> str:
    """The kind of a problem, for counting: the start of what was wrong, before any value
    (``"f.log:12: invalid JSON (...)"`` -> ``"invalid JSON"``, ``"...: orig_bytes: 2 is ..."``
    -> ``"orig_bytes"``)."""
    what = message.split(": ", 1)[-1]
    head = re.split(r"[(:,\d'\"]", what, maxsplit=1)[0].strip()
    return head[:60] or "malformed"


#: How many problem messages a ReadStats keeps verbatim (the count is always exact).
MAX_PROBLEMS_KEPT = 100
#: How many malformed lines per source are logged one by one (the rest are only counted).
MAX_PROBLEMS_LOGGED = 20


@dataclass
class ReadStats:
    """What a source read: rows accepted, lines skipped and why."""

    rows: int = 0
    malformed: int = 0
    #: Records of other kinds that were skipped on purpose (e.g. EVE ``dns`` events, and the
    #: ``alert`` events that never met their flow: "alert without flow event").
    skipped: dict[str, int] = field(default_factory=dict)
    #: The first :data:`MAX_PROBLEMS_KEPT` problems, each "file:line: what was wrong".
    problems: list[str] = field(default_factory=list)
    #: Malformed lines by reason (the start of "what was wrong": "invalid JSON", "orig_bytes").
    reasons: dict[str, int] = field(default_factory=dict)
    _next_log: float = field(default=0.0, repr=False, compare=False)
    _unlogged: int = field(default=0, repr=False, compare=False)

    def problem(self, message: str) -> None:
        self.malformed += 1
        reason = problem_reason(message)
        if reason not in self.reasons and len(self.reasons) >= MAX_REASONS:
            reason = "other"
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(message)

    def bad_line(self, message: str) -> None:
        """A malformed line ("file:line: what was wrong"): counted; the first few are logged one
        by one, then one line a minute says how many more there were and shows the latest."""
        if self.malformed < MAX_PROBLEMS_LOGGED:
            log.warning("%s (line skipped)", message)
        else:
            self._unlogged += 1
            now = time.monotonic()
            if now >= self._next_log:
                self._next_log = now + 60.0
                log.warning(
                    "%d more malformed lines skipped (%d in all); the latest: %s",
                    self._unlogged,
                    self.malformed + 1,
                    message,
                )
                self._unlogged = 0
        self.problem(message)

    def skip(self, kind: str, n: int = 1) -> None:
        self.skipped[kind] = self.skipped.get(kind, 0) + n

    def merge(self, other: ReadStats) -> None:
        self.rows += other.rows
        self.malformed += other.malformed
        for k, v in other.reasons.items():
            self.reasons[k] = self.reasons.get(k, 0) + v
        for k, v in other.skipped.items():
            self.skip(k, v)
        room = MAX_PROBLEMS_KEPT - len(self.problems)
        self.problems.extend(other.problems[: max(room, 0)])


@runtime_checkable
class Source(Protocol):
    """Anything that yields flow batches."""

    name: str
    stats: ReadStats

    def batches(self) -> Iterator[FlowBatch]: ...


#: Called once every sink has written a batch (a followed file commits its offset there).
Ack = Callable[[], None]


class Emit(Protocol):
    """Where a live source hands its batches; False when the batch was dropped.

    ``arrived`` is when the oldest flow of the batch reached the daemon (``time.monotonic``;
    default: now), for the arrival-to-alert latency."""

    def __call__(
        self, batch: FlowBatch, ack: Ack | None = None, *, arrived: float | None = None
    ) -> bool: ...


@runtime_checkable
class LiveSource(Protocol):
    """A pushed input: ``run()`` in a thread until ``stop()``, batches go to ``emit``."""

    name: str
    #: Set once the source accepts input (socket bound, connection up).
    ready: threading.Event

    def run(self) -> None: ...

    def stop(self) -> None: ...
