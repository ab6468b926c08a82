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
``signatures`` lists the Suricata signatures that fired on the connection (:class:`Signature`,
attached by :mod:`netanomd.sources.suricata_alerts`); they explain and raise severity, never
score.

Addresses are stored in one spelling: an IPv6 address in its canonical RFC 5952 form
(Suricata writes ``ff02:0000:0000:0000:0000:0000:0000:00fb``, Zeek ``ff02::fb``), made once
where a batch is built (:meth:`FlowBatch.from_table`, :meth:`FlowBatch.from_records`) and only
for values containing ``:``, so IPv4 columns cost one vectorised scan.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: One Suricata signature that fired on a flow (see :class:`Signature`).
SIGNATURE_TYPE = pa.struct(
    [
        pa.field("signature", pa.string()),
        pa.field("signature_id", pa.int64()),
        pa.field("severity", pa.int32()),  # Suricata's: 1 is the most severe
        pa.field("category", pa.string()),
    ]
)

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
        pa.field("signatures", pa.list_(SIGNATURE_TYPE)),  # null when none fired
    ]
)

FIELD_NAMES: tuple[str, ...] = tuple(FLOW_SCHEMA.names)
#: The address columns, canonicalised where batches are built.
ADDRESS_COLUMNS = ("orig_h", "resp_h")


@dataclass(frozen=True, slots=True)
class Signature:
    """A Suricata signature that fired on a flow (an EVE ``alert`` event's ``alert`` object)."""

    signature: str
    signature_id: int
    #: Suricata's severity: 1 (high) to 4 (low); 3 when the rule gives none.
    severity: int
    category: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: ECS severity (0-100, Elastic's high 73, medium 47) at least as high as a Suricata signature
#: severity (1 the most severe) that fired on a flow.
_SIGNATURE_FLOORS = {1: 73, 2: 47}


def signature_floor(signatures: Sequence[Signature] | None) -> int:
    """The lowest ECS severity a flow or incident may have when these signatures fired on it:
    73 (high) for a Suricata severity 1, 47 (medium) for 2, else 0."""
    return max((_SIGNATURE_FLOORS.get(s.severity, 0) for s in signatures or ()), default=0)


#: How many signatures a reason names (the rest are counted).
SIGNATURES_NAMED = 3


def signatures_sentence(signatures: Sequence[Signature] | None) -> str:
    """The signatures that fired on a flow, for a reason: ``"Suricata signatures: ET SCAN
    Potential SSH Scan (sid 2001219, severity 2)"``, most severe first; "" when none."""
    if not signatures:
        return ""
    ranked = sorted(signatures, key=lambda s: (s.severity, s.signature_id))
    named = [
        f"{s.signature} (sid {s.signature_id}, severity {s.severity})"
        for s in ranked[:SIGNATURES_NAMED]
    ]
    more = len(ranked) - len(named)
    word = "signature" if len(ranked) == 1 else "signatures"
    return f"Suricata {word}: {'; '.join(named)}" + (f" and {more} more" if more > 0 else "")


def endpoint(host: str | None, port: int | None) -> str:
    """One end of a flow for display: ``10.0.0.1:80``; ``-`` for what the input did not give
    (``-:80``, ``10.0.0.1``, ``-``)."""
    if port is None:
        return host or "-"
    return f"{host or '-'}:{port}"


@functools.lru_cache(maxsize=1 << 16)
def canonical_address(text: str) -> str:
    """An IPv6 address in its canonical text form (RFC 5952: ``FF02:0000:…:00FB`` ->
    ``ff02::fb``, an IPv4-mapped one as ``::ffff:192.0.2.1``); any other text unchanged."""
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        return text
    if addr.ipv4_mapped is not None:
        return f"::ffff:{addr.ipv4_mapped}"
    return addr.compressed


def _holds_colon(chunk: pa.Array) -> bool:
    """Whether the string array's character data holds a ``:`` byte (a slice's neighbours may
    give a false yes: that only sends the column down the exact path)."""
    if chunk.type not in (pa.string(), pa.large_string()):
        return True  # (another type: the exact path decides)
    data = chunk.buffers()[2]
    return data is not None and data.to_pybytes().find(b":") != -1  # (memchr: ~1 ms a 1M rows)


def _canonical_column(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """``col`` with every IPv6 address in canonical form: only distinct values containing
    ``:`` are looked at, through :func:`canonical_address`'s cache. A column whose character
    data holds no ``:`` byte at all (an IPv4-only batch) is returned as it is without a string
    kernel (one byte search over the buffers)."""
    if not any(_holds_colon(chunk) for chunk in col.chunks):
        return col
    colon = pc.match_substring(col, ":")
    if not pc.any(colon).as_py():
        return col
    seen = pc.unique(col.filter(colon)).to_pylist()
    pairs = [(v, canonical_address(v)) for v in seen]
    pairs = [(v, c) for v, c in pairs if c != v]
    if not pairs:
        return col
    spelled = pa.array([v for v, _ in pairs], pa.string())
    canonical = pa.array([c for _, c in pairs], pa.string())
    return pc.coalesce(pc.take(canonical, pc.index_in(col, value_set=spelled)), col)


def canonical_addresses(table: pa.Table) -> pa.Table:
    """``table`` with its address columns in one spelling (:func:`canonical_address`); every
    way flows enter a batch goes through here."""
    for name in ADDRESS_COLUMNS:
        i = table.schema.get_field_index(name)
        col = table.column(i)
        fixed = _canonical_column(col)
        if fixed is not col:
            table = table.set_column(i, table.schema.field(i), fixed)
    return table


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
    signatures: tuple[Signature, ...] | None = None  # None: none fired (or not Suricata)

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

        Columns not in the schema are dropped; IPv6 addresses get their canonical spelling.
        """
        n = table.num_rows
        names = set(table.column_names)  # (a list built per call: ~8 us on a wide table)
        columns = []
        for field in FLOW_SCHEMA:
            if field.name in names:
                col = table.column(field.name)
                if not col.type.equals(field.type):
                    col = pc.cast(col, field.type)
                columns.append(col)
            else:
                columns.append(pa.nulls(n, type=field.type))
        return cls(canonical_addresses(pa.Table.from_arrays(columns, schema=FLOW_SCHEMA)))

    @classmethod
    def from_records(cls, records: Iterable[FlowRecord]) -> FlowBatch:
        """Build a batch from records (for live sources that decode one message at a time)."""
        recs = list(records)

        def column(f: pa.Field) -> pa.Array:
            if f.name == "signatures":
                values: list[Any] = [
                    [s.to_dict() for s in r.signatures] if r.signatures else None for r in recs
                ]
            else:
                values = [getattr(r, f.name) for r in recs]
            return pa.array(values, type=f.type)

        arrays = [column(f) for f in FLOW_SCHEMA]
        return cls(canonical_addresses(pa.Table.from_arrays(arrays, schema=FLOW_SCHEMA)))

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

    def placed(self) -> np.ndarray:
        """Which flows have a (finite) start time and an originator address (bool per row):
        what host behaviour and incidents need, and what a CICFlowMeter derivative may lack."""
        ts, orig = self.table.column("ts"), self.table.column("orig_h")
        finite = pc.is_finite(ts)  # null stays null: not placed
        if not ts.null_count and not orig.null_count and pc.all(finite).as_py():
            return np.ones(len(self), dtype=np.bool_)
        both = pc.and_kleene(pc.and_kleene(pc.is_valid(ts), finite), pc.is_valid(orig))
        return np.asarray(pc.fill_null(both, False).to_numpy(zero_copy_only=False), dtype=np.bool_)

    def take(self, indices: Sequence[int] | np.ndarray) -> FlowBatch:
        return FlowBatch(self.table.take(pa.array(np.asarray(indices, dtype=np.int64))))

    def slice(self, offset: int, length: int | None = None) -> FlowBatch:
        return FlowBatch(self.table.slice(offset, length))

    def records(self) -> Iterator[FlowRecord]:
        """Rows as :class:`FlowRecord` objects (slow: use for the few rows that alert)."""
        t = self.table  # column by column: a dict per row costs 3x
        cols = [t.column(name).to_pylist() for name in FIELD_NAMES[:-1]]
        sigs = [
            tuple(Signature(**s) for s in v) if v else None for v in t["signatures"].to_pylist()
        ]
        for row in zip(*cols, sigs, strict=True):  # signatures is the last field
            yield FlowRecord(*row)

    def record(self, i: int) -> FlowRecord:
        return _record(self.table.slice(i, 1).to_pylist()[0])


def _record(row: dict[str, Any]) -> FlowRecord:
    sigs = row.pop("signatures")
    return FlowRecord(**row, signatures=tuple(Signature(**s) for s in sigs) if sigs else None)
