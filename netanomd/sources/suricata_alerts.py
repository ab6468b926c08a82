"""Suricata's own signature alerts (EVE ``event_type: alert``), joined to their flows.

Owns :class:`SignatureJoin`: the alert events of one EVE input kept by ``flow_id`` until the
flow event of the same ``flow_id`` comes, which then carries them in its ``signatures`` column
(:class:`~netanomd.flow.Signature`: signature, signature_id, severity, category). Suricata logs
an alert when the packet that fires it passes, and the flow event when the flow ends or times
out, so alerts come first; within one block of lines (a file read, a socket micro-batch) the
order does not matter, since a block's alerts are taken before its flows are joined.

Memory is bounded twice: at most ``max_flows`` flows wait (the oldest go first), and an alert
waits at most ``max_age`` seconds from its arrival (``time.monotonic``). Arrival, not EVE time:
EVE is written in the order events are logged, not in time order (in test6-malicious, alert
timestamps go back by up to an hour from one line to the next and a flow event carries its
start), so an EVE-time clock expires alerts whose flow event is a few lines away; a replayed
file is read within ``max_age``, and only the count bound applies. Alerts whose flow never comes
(the capture ended, flow logging is off, the flow was evicted) are counted in the source's
``stats.skipped["alert without flow event"]`` when they leave, and by :meth:`finish` at the end
of a file.
"""

from __future__ import annotations

import logging
import reprlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from netanomd.flow import FLOW_SCHEMA, FlowBatch
from netanomd.sources import ReadStats

log = logging.getLogger(__name__)

#: How many flows' alerts may wait for their flow event.
MAX_FLOWS = 100_000
#: How long (seconds) an alert waits: it precedes its flow event by the rest of the flow's
#: life plus Suricata's timeout (TCP established: 600 s by default); six hours leaves room for
#: long sessions.
MAX_AGE = 6 * 3600.0
#: The ``stats.skipped`` kind of alerts that never met their flow.
UNMATCHED = "alert without flow event"

_SIGNATURES = FLOW_SCHEMA.field("signatures").type


def signature_of(ev: dict[str, Any]) -> dict[str, Any]:
    """The signature of an EVE alert event as a :data:`~netanomd.flow.SIGNATURE_TYPE` row;
    raises ValueError/TypeError/KeyError naming the bad field."""
    alert = ev["alert"]
    if not isinstance(alert, dict):
        raise TypeError(f"'alert' is a {type(alert).__name__}, not an object")
    name, sid, sev = alert.get("signature"), alert.get("signature_id"), alert.get("severity", 3)
    category = alert.get("category")
    if not isinstance(name, str):
        raise ValueError(f"alert.signature: {reprlib.repr(name)} is not a string")
    if not isinstance(sid, int) or isinstance(sid, bool) or not 0 <= sid < 2**63:
        raise ValueError(f"alert.signature_id: {reprlib.repr(sid)} is not a rule id")
    if not isinstance(sev, int) or isinstance(sev, bool) or not 1 <= sev <= 255:
        raise ValueError(f"alert.severity: {reprlib.repr(sev)} is not a severity (1-255)")
    if category is not None and not isinstance(category, str):
        raise ValueError(f"alert.category: {reprlib.repr(category)} is not a string")
    return {"signature": name, "signature_id": sid, "severity": sev, "category": category or None}


class SignatureJoin:
    """Alert events of one EVE input, waiting by ``flow_id`` for their flow (module doc)."""

    def __init__(
        self,
        stats: ReadStats,
        *,
        max_flows: int = MAX_FLOWS,
        max_age: float = MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_flows < 1 or max_age <= 0:
            raise ValueError("max_flows must be >= 1 and max_age > 0")
        self.stats = stats
        self.max_flows = max_flows
        self.max_age = max_age
        #: flow_id -> (arrival of its latest alert, its alert events, their distinct
        #: signatures), oldest first.
        self._waiting: OrderedDict[int, tuple[float, int, list[dict[str, Any]]]] = OrderedDict()
        self._clock = clock
        #: Alert events attached to a flow so far.
        self.attached = 0

    def __len__(self) -> int:
        """Flows with alerts waiting."""
        return len(self._waiting)

    def add(self, ev: dict[str, Any]) -> None:
        """Keep an EVE alert event (raises ValueError/TypeError/KeyError when malformed)."""
        sig = signature_of(ev)
        flow_id = ev.get("flow_id")
        if flow_id is None:  # a packet alert outside any flow: nothing to join with
            self.stats.skip("alert without flow_id")
            return
        if not isinstance(flow_id, int) or isinstance(flow_id, bool) or not 0 <= flow_id < 2**64:
            raise ValueError(f"flow_id: {reprlib.repr(flow_id)} is not a Suricata flow id")
        ts = self._clock()
        _, n, sigs = self._waiting.pop(flow_id, (ts, 0, []))
        if sig not in sigs:  # a rule firing on several packets of a flow is named once
            sigs.append(sig)
        self._waiting[flow_id] = (ts, n + 1, sigs)
        self._expire()

    def attach(self, batch: FlowBatch) -> FlowBatch:
        """``batch`` with the waiting signatures of its flows in ``signatures`` (those flows
        stop waiting); the batch itself when none of its flows has any."""
        if not self._waiting or len(batch) == 0:
            return batch
        flow_ids = batch.column("flow_id").to_pylist()
        found = [self._waiting.pop(f, None) if f is not None else None for f in flow_ids]
        if not any(found):
            return batch
        old = batch.column("signatures").to_pylist()
        values = []
        for had, got in zip(old, found, strict=True):
            if got is None:
                values.append(had)
                continue
            self.attached += got[1]
            values.append([*(had or []), *got[2]])
        t = batch.table
        i = t.schema.get_field_index("signatures")
        return FlowBatch(t.set_column(i, t.schema.field(i), pa.array(values, _SIGNATURES)))

    def finish(self) -> int:
        """The input ended: the alerts still waiting will never meet their flow. Counts them
        (and returns how many)."""
        n = sum(count for _, count, _ in self._waiting.values())
        if n:
            self.stats.skip(UNMATCHED, n)
            log.info(
                "%d Suricata alert(s) on %d flow(s) had no flow event (capture ended before "
                "the flow timed out, or flow logging is off): not attached to any flow",
                n,
                len(self._waiting),
            )
        self._waiting.clear()
        return n

    def _expire(self) -> None:
        gone = 0
        now = self._clock()
        while self._waiting:
            flow_id, (ts, count, _) = next(iter(self._waiting.items()))
            if len(self._waiting) <= self.max_flows and now - ts <= self.max_age:
                break
            del self._waiting[flow_id]
            gone += count
        if gone:
            self.stats.skip(UNMATCHED, gone)
