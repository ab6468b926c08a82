"""Suricata signatures raise the severity of the incidents holding their flows.

Owns :class:`SignedFlows`: the recent flows on which a Suricata signature of severity 1 or 2
fired (their ``signatures`` column, see :mod:`netanomd.sources.suricata_alerts`), and the rule
that an incident holding such a flow (:meth:`~netanomd.behaviour.incidents.Incident.members`)
is at least as severe as :func:`~netanomd.flow.signature_floor` says: high (73) for a severity-1
signature, medium (47) for severity 2. An incident may open after the batch that carried the
flow (host windows close later), so the signed flows are kept, at most :data:`KEEP` of them and
for the tracker's quiet period of flow time, and checked against every incident a batch opens or
updates; a new signed flow is checked against every open incident. Batches without signatures
cost one null count.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from netanomd.behaviour.incidents import Incident, IncidentTracker
from netanomd.flow import FlowBatch, Signature, signature_floor

#: How many signed flows are kept for incidents that open later.
KEEP = 10_000


def _floors(batch: FlowBatch) -> np.ndarray:
    """The severity floor of each row of ``batch`` (0 without signatures)."""
    out = np.zeros(len(batch), dtype=np.int64)
    col = batch.column("signatures")
    if col.null_count == len(batch):
        return out
    for i in np.flatnonzero(np.asarray(pc.is_valid(col))).tolist():
        sigs = col[i].as_py() or []
        out[i] = signature_floor([Signature(**s) for s in sigs])
    return out


class SignedFlows:
    """Recent flows with severe signatures, raising their incidents (see the module doc)."""

    def __init__(self, quiet: float, keep: int = KEEP) -> None:
        self.quiet = float(quiet)
        self.keep = keep
        self._flows = FlowBatch.empty()
        self._floors = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._flows)

    def process(
        self, batch: FlowBatch, tracker: IncidentTracker, changed: Iterable[Incident]
    ) -> list[Incident]:
        """Take ``batch``'s signed flows; returns the incidents whose severity they raised:
        the kept signed flows (this batch's among them) against the incidents ``changed`` by
        this batch (closed in it too), this batch's against every other open incident."""
        touched = {inc.id: inc for inc in changed}
        raised: dict[int, Incident] = {}
        floors = _floors(batch)
        signed = np.flatnonzero(floors > 0)
        if signed.size:
            new, new_floors = batch.take(signed), floors[signed]
            for inc in tracker.open.values():
                if inc.id not in touched and self._raise(inc, new, new_floors):
                    raised[inc.id] = inc
            self._flows = FlowBatch.concat([self._flows, new])
            self._floors = np.concatenate([self._floors, new_floors])
        if len(self._flows):
            for inc in touched.values():
                if self._raise(inc, self._flows, self._floors):
                    raised[inc.id] = inc
            self._trim()
        return list(raised.values())

    @staticmethod
    def _raise(inc: Incident, flows: FlowBatch, floors: np.ndarray) -> bool:
        inside = inc.members(flows)
        if not inside.any():
            return False
        floor = int(floors[inside].max())
        if floor <= inc.signature_floor:
            return False
        before = inc.severity
        inc.signature_floor = floor
        return inc.severity != before

    def _trim(self) -> None:
        ts = self._flows.numeric("ts", fill=np.nan)
        newest = np.nanmax(ts) if np.isfinite(ts).any() else np.nan
        keep = ~(ts < newest - self.quiet)  # NaN times are kept until the count bound
        keep[: max(len(keep) - self.keep, 0)] = False
        if not keep.all():
            self._flows = FlowBatch(self._flows.table.filter(pa.array(keep)))
            self._floors = self._floors[keep]
