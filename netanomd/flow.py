"""The one flow record every source produces and every later stage consumes.

Two forms of the same thing:

* :class:`FlowRecord`, a frozen dataclass, for code that handles one flow at a time (a live
  source decoding a message, a sink writing an alert, the scoring API);
* :class:`FlowBatch`, a columnar batch backed by a :class:`pyarrow.Table` with exactly
  :data:`FLOW_SCHEMA`, for everything that handles many flows: features and scoring read
  columns, never Python objects row by row.

Field names follow Zeek's conn.log with the ``id.`` prefix dropped (``orig_h``, ``resp_p``).
Missing values are nulls (Zeek's unset ``-``). Sources fill what they know:

* Zeek fills every conn field; ``community_id`` when the community-id policy is loaded.
* Suricata EVE has no payload byte counts: ``orig_ip_bytes``/``resp_ip_bytes`` come from
  ``bytes_toserver``/``bytes_toclient`` minus 14 bytes of Ethernet header per packet (EVE
  counts include the L2 header), ``orig_bytes``/``resp_bytes`` stay null, ``flow_id`` is set.
* CICFlowMeter CSV (training and evaluation only) fills what its columns give.

Labels (``label``, ``detailed_label``) are carried for evaluation and never used as features.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Column name -> Arrow type, in order. Every FlowBatch has exactly these columns.
FLOW_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.float64()),  # flow start, epoch seconds (UTC)
        pa.field("uid", pa.string()),  # Zeek uid, or "S<flow_id>" for Suricata
        pa.field("orig_h", pa.string()),
        pa.field("orig_p", pa.int32()),
        pa.field("resp_h", pa.string()),
        pa.field("resp_p", pa.int32()),
        pa.field("proto", pa.string()),  # lowercase: tcp, udp, icmp, ...
        pa.field("service", pa.string()),
        pa.field("duration", pa.float64()),  # seconds
        pa.field("orig_bytes", pa.int64()),  # payload bytes
        pa.field("resp_bytes", pa.int64()),
        pa.field("conn_state", pa.string()),  # Zeek conn_state (S0, SF, REJ, ...)
        pa.field("local_orig", pa.bool_()),
        pa.field("local_resp", pa.bool_()),
        pa.field("missed_bytes", pa.int64()),
        pa.field("history", pa.string()),
        pa.field("orig_pkts", pa.int64()),
        pa.field("orig_ip_bytes", pa.int64()),  # IP-layer bytes (headers included)
        pa.field("resp_pkts", pa.int64()),
        pa.field("resp_ip_bytes", pa.int64()),
        pa.field("community_id", pa.string()),
        pa.field("flow_id", pa.uint64()),  # Suricata flow_id
        pa.field("source", pa.string()),  # zeek, suricata, file, cicflowmeter
        pa.field("label", pa.string()),  # ground truth when the input carries it
        pa.field("detailed_label", pa.string()),
    ]
)

FIELD_NAMES: tuple[str, ...] = tuple(FLOW_SCHEMA.names)


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """One finished flow. Field meanings and units are those of :data:`FLOW_SCHEMA`."""

    ts: float
    uid: str
    orig_h: str
    orig_p: int | None
    resp_h: str
    resp_p: int | None
    proto: str
    service: str | None = None
    duration: float | None = None
    orig_bytes: int | None = None
    resp_bytes: int | None = None
    conn_state: str | None = None
    local_orig: bool | None = None
    local_resp: bool | None = None
    missed_bytes: int | None = None
    history: str | None = None
    orig_pkts: int | None = None
    orig_ip_bytes: int | None = None
    resp_pkts: int | None = None
    resp_ip_bytes: int | None = None
    community_id: str | None = None
    flow_id: int | None = None
    source: str = "file"
    label: str | None = None
    detailed_label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict keyed by :data:`FIELD_NAMES`."""
        return {name: getattr(self, name) for name in FIELD_NAMES}


assert tuple(f.name for f in dataclasses.fields(FlowRecord)) == FIELD_NAMES


class FlowBatch:
    """A columnar batch of flows: a :class:`pyarrow.Table` with exactly :data:`FLOW_SCHEMA`.

    Construct with :meth:`from_table` (checks and reorders columns, adds missing ones as
    nulls), :meth:`from_records` or :meth:`empty`.
    """

    __slots__ = ("table",)

    def __init__(self, table: pa.Table) -> None:
        if not table.schema.equals(FLOW_SCHEMA):
            raise ValueError(
                "FlowBatch needs FLOW_SCHEMA; use FlowBatch.from_table() to conform a table"
            )
        self.table = table

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_table(cls, table: pa.Table) -> FlowBatch:
        """Conform ``table`` to :data:`FLOW_SCHEMA`: reorder, cast, add missing columns as null.

        Columns not in the schema are dropped.
        """
        n = table.num_rows
        columns = []
        for field in FLOW_SCHEMA:
            if field.name in table.column_names:
                col = table.column(field.name)
                if not col.type.equals(field.type):
                    col = pc.cast(col, field.type)
                columns.append(col)
            else:
                columns.append(pa.nulls(n, type=field.type))
        return cls(pa.Table.from_arrays(columns, schema=FLOW_SCHEMA))

    @classmethod
    def from_records(cls, records: Iterable[FlowRecord]) -> FlowBatch:
        """Build a batch from records (for live sources that decode one message at a time)."""
        recs = list(records)
        arrays = [pa.array([getattr(r, f.name) for r in recs], type=f.type) for f in FLOW_SCHEMA]
        return cls(pa.Table.from_arrays(arrays, schema=FLOW_SCHEMA))

    @classmethod
    def empty(cls) -> FlowBatch:
        return cls(FLOW_SCHEMA.empty_table())

    @classmethod
    def concat(cls, batches: Sequence[FlowBatch]) -> FlowBatch:
        if not batches:
            return cls.empty()
        return cls(pa.concat_tables([b.table for b in batches]))

    # -- access -------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.table.num_rows)

    def column(self, name: str) -> pa.ChunkedArray:
        return self.table.column(name)

    def numeric(self, name: str, fill: float = 0.0, dtype: Any = np.float64) -> np.ndarray:
        """A numeric column as a numpy array, nulls replaced by ``fill``."""
        col = self.table.column(name)
        if col.null_count:
            col = pc.fill_null(col, fill)
        return np.asarray(col.to_numpy(), dtype=dtype)

    def take(self, indices: Sequence[int] | np.ndarray) -> FlowBatch:
        return FlowBatch(self.table.take(pa.array(np.asarray(indices, dtype=np.int64))))

    def slice(self, offset: int, length: int | None = None) -> FlowBatch:
        return FlowBatch(self.table.slice(offset, length))

    def records(self) -> Iterator[FlowRecord]:
        """Rows as :class:`FlowRecord` objects (slow: use for the few rows that alert)."""
        for row in self.table.to_pylist():
            yield FlowRecord(**row)

    def record(self, i: int) -> FlowRecord:
        return FlowRecord(**self.table.slice(i, 1).to_pylist()[0])
