"""The per-flow feature block, :class:`FlowFeatures`: what one flow looks like on its own.

It computes its columns straight from Arrow columns (never row by row) and has no state:

====================  =========================================================================
column                meaning
====================  =========================================================================
log_duration          ``log1p(duration seconds)``; unset duration counts as 0
log_orig_bytes        ``log1p`` payload bytes sent by the originator (falls back to IP bytes
                      minus 40 bytes of headers per packet when payload bytes are unknown, as
                      for Suricata EVE)
log_resp_bytes        same for the responder
log_orig_pkts         ``log1p`` packets from the originator
log_resp_pkts         ``log1p`` packets from the responder
log_orig_ip_bytes     ``log1p`` IP-layer bytes from the originator (estimated from payload +
                      40 per packet when unknown)
log_resp_ip_bytes     same for the responder
bytes_ratio           ``log((orig_bytes+1)/(resp_bytes+1))``: > 0 when the originator sends more
orig_bytes_per_pkt    ``log1p(orig_ip_bytes / orig_pkts)``
resp_bytes_per_pkt    ``log1p(resp_ip_bytes / resp_pkts)``
log_pkt_rate          ``log1p((orig_pkts+resp_pkts) / max(duration, 1 ms))``
missed                1 when Zeek reports missed bytes (capture loss or mid-stream start)
no_service            1 when no application protocol was identified
resp_port_wellknown   responder port < 1024
resp_port_registered  1024 <= responder port < 49152
resp_port_dynamic     responder port >= 49152 (or unset)
orig_port_wellknown   originator port < 1024 (unusual for a client)
proto_<p>             one-hot protocol: tcp, udp, icmp, other
state_<s>             one-hot Zeek conn_state: S0 S1 SF REJ S2 S3 RSTO RSTR RSTOS0 RSTRH SH SHR
                      OTH, and ``state_other`` (includes unset)
hist_<c>              1 when the Zeek history string contains the character: originator
                      ``S H A D F R T``, responder ``s h a d f r t`` (upper = originator side)
                      and ``^`` (direction flipped by Zeek); ``hist_`` columns are named
                      ``hist_o<C>`` / ``hist_r<c>`` / ``hist_flip``
====================  =========================================================================

Labels are never features. The block declares which of its columns are ``log1p`` of a quantity
(:attr:`FlowFeatures.log1p`) and which are 0/1 (:attr:`FlowFeatures.binary`); none is one-sided.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numba as nb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from netanomd.features._frozen import frozen
from netanomd.features._strings import codes, string_views
from netanomd.flow import FlowBatch

PROTOCOLS = ("tcp", "udp", "icmp")
CONN_STATES = (
    "S0",
    "S1",
    "SF",
    "REJ",
    "S2",
    "S3",
    "RSTO",
    "RSTR",
    "RSTOS0",
    "RSTRH",
    "SH",
    "SHR",
    "OTH",
)
HISTORY_ORIG = "SHADFRT"
HISTORY_RESP = "shadfrt"
#: Columns that are ``log1p`` of a count, size, duration or rate (shown to people as expm1).
LOG1P_COLUMNS = frozenset(
    {
        "log_duration", "log_orig_bytes", "log_resp_bytes", "log_orig_pkts", "log_resp_pkts",
        "log_orig_ip_bytes", "log_resp_ip_bytes", "orig_bytes_per_pkt", "resp_bytes_per_pkt",
        "log_pkt_rate",
    }
)  # fmt: skip
#: 0/1 columns besides the one-hot groups.
FLAG_COLUMNS = frozenset(
    {
        "missed", "no_service", "resp_port_wellknown", "resp_port_registered",
        "resp_port_dynamic", "orig_port_wellknown",
    }
)  # fmt: skip
ONE_HOT_PREFIXES = ("state_", "proto_", "hist_")

NAMES: tuple[str, ...] = (
    "log_duration",
    "log_orig_bytes",
    "log_resp_bytes",
    "log_orig_pkts",
    "log_resp_pkts",
    "log_orig_ip_bytes",
    "log_resp_ip_bytes",
    "bytes_ratio",
    "orig_bytes_per_pkt",
    "resp_bytes_per_pkt",
    "log_pkt_rate",
    "missed",
    "no_service",
    "resp_port_wellknown",
    "resp_port_registered",
    "resp_port_dynamic",
    "orig_port_wellknown",
    *(f"proto_{p}" for p in PROTOCOLS),
    "proto_other",
    *(f"state_{s}" for s in CONN_STATES),
    "state_other",
    *(f"hist_o{c}" for c in HISTORY_ORIG),
    *(f"hist_r{c}" for c in HISTORY_RESP),
    "hist_flip",
)


#: The batch columns the block reads (the others may be anything, nulls included).
READS = (
    "duration", "orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "orig_ip_bytes",
    "resp_ip_bytes", "history", "missed_bytes", "service", "resp_p", "orig_p", "proto",
    "conn_state",
)  # fmt: skip

#: Per-packet IP+transport header estimate used to convert between payload and IP bytes.
HEADER_BYTES_PER_PKT = 40


def _num(batch: FlowBatch, name: str) -> np.ndarray:
    """Numeric column as float64 with nulls as NaN."""
    col = batch.column(name)
    if col.null_count:
        col = pc.cast(col, pa.float64())  # (nulls as NaN)
    # (without nulls, numpy's conversion: the same values, without an Arrow cast's ~5 us a call)
    out = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
    return frozen(out)


#: Where the one-hot groups start.
_J_PROTO = NAMES.index("proto_tcp")
_J_STATE = NAMES.index("state_S0")
_J_HIST = NAMES.index("hist_oS")
#: Columns of the scratch matrix whose ``log1p`` numpy takes between the two kernels.
_N_LOG = 10
_BIG = np.finfo(np.float64).max


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _finite(x: float) -> float:  # pragma: no cover - compiled
    """``np.nan_to_num``: NaN as 0, infinities as the largest finite values."""
    if x != x:
        return 0.0
    if x > _BIG:
        return _BIG
    if x < -_BIG:
        return -_BIG
    return x


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _quantities(
    dur: np.ndarray,
    opk: np.ndarray,
    rpk: np.ndarray,
    ob: np.ndarray,
    rb: np.ndarray,
    oip: np.ndarray,
    rip: np.ndarray,
    scratch: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """The ten quantities the ``log1p`` columns take, one row of ``scratch`` each: unknown
    byte counts estimated from the other kind, clipped at 0 (see the module docstring)."""
    h = float(HEADER_BYTES_PER_PKT)
    for r in range(dur.shape[0]):
        d = _finite(dur[r])
        if d < 0.0:
            d = 0.0
        op = _finite(opk[r])
        rp = _finite(rpk[r])
        o = ob[r]
        if o != o:
            o = _finite(oip[r]) - h * op
            if o < 0.0:
                o = 0.0
        b = rb[r]
        if b != b:
            b = _finite(rip[r]) - h * rp
            if b < 0.0:
                b = 0.0
        oi = oip[r]
        if oi != oi:
            oi = o + h * op
        ri = rip[r]
        if ri != ri:
            ri = b + h * rp
        if o < 0.0:
            o = 0.0
        if b < 0.0:
            b = 0.0
        scratch[0, r] = d
        scratch[1, r] = o
        scratch[2, r] = b
        scratch[3, r] = op
        scratch[4, r] = rp
        scratch[5, r] = oi
        scratch[6, r] = ri
        scratch[7, r] = oi / op if op > 0.0 else 0.0
        scratch[8, r] = ri / rp if rp > 0.0 else 0.0
        scratch[9, r] = (op + rp) / (d if d >= 1e-3 else 1e-3)


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _columns(
    logs: np.ndarray,
    missed: np.ndarray,
    no_service: np.ndarray,
    resp_p: np.ndarray,
    orig_p: np.ndarray,
    proto: np.ndarray,
    state: np.ndarray,
    hist_offsets: np.ndarray,
    hist_data: np.ndarray,
    hist_valid: np.ndarray,
    hist_column: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Every column of the block, row by row, into ``out`` (float32; a column slice of a
    wider matrix will do). ``hist_column[byte]`` is the history column a character sets."""
    n_proto = len(PROTOCOLS)
    n_state = len(CONN_STATES)
    j_proto, j_state, j_hist = _J_PROTO, _J_STATE, _J_HIST
    n_hist = out.shape[1] - j_hist
    check = hist_valid.shape[0] > 0
    for r in range(out.shape[0]):
        for j in range(7):
            out[r, j] = logs[j, r]
        out[r, 7] = logs[1, r] - logs[2, r]
        out[r, 8] = logs[7, r]
        out[r, 9] = logs[8, r]
        out[r, 10] = logs[9, r]
        out[r, 11] = 1.0 if missed[r] > 0.0 else 0.0
        out[r, 12] = 1.0 if no_service[r] else 0.0
        rp = resp_p[r]
        out[r, 13] = 1.0 if rp < 1024.0 else 0.0
        out[r, 14] = 1.0 if rp >= 1024.0 and rp < 49152.0 else 0.0
        out[r, 15] = 1.0 if rp >= 49152.0 or rp != rp else 0.0
        out[r, 16] = 1.0 if orig_p[r] < 1024.0 else 0.0
        for j in range(j_proto, j_hist + n_hist):
            out[r, j] = 0.0
        p = proto[r]
        out[r, j_proto + (p if p >= 0 else n_proto)] = 1.0
        s = state[r]
        out[r, j_state + (s if s >= 0 else n_state)] = 1.0
        if not check or hist_valid[r]:
            for k in range(hist_offsets[r], hist_offsets[r + 1]):
                j = hist_column[hist_data[k]]
                if j >= 0:
                    out[r, j_hist + j] = 1.0


def _history_columns() -> np.ndarray:
    """byte -> index among the ``hist_`` columns (-1: a character no column tracks)."""
    table = np.full(256, -1, dtype=np.int16)
    for j, ch in enumerate(HISTORY_ORIG + HISTORY_RESP + "^"):
        table[ord(ch)] = j
    return table


_HISTORY_COLUMN = _history_columns()


class FlowFeatures:
    """Per-flow features (see the module docstring for every column)."""

    kind: ClassVar[str] = "flow"
    #: The batch columns it reads (:data:`READS`).
    reads: ClassVar[tuple[str, ...]] = READS
    log1p: ClassVar[frozenset[str]] = LOG1P_COLUMNS
    one_sided: ClassVar[frozenset[str]] = frozenset()
    binary: ClassVar[frozenset[str]] = frozenset(
        n for n in NAMES if n in FLAG_COLUMNS or n.startswith(ONE_HOT_PREFIXES)
    )

    @property
    def names(self) -> tuple[str, ...]:
        return NAMES

    def fit(self, batch: FlowBatch) -> None:
        return None

    def reset(self) -> None:
        return None

    def to_state(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FlowFeatures:
        return cls()

    def transform(self, batch: FlowBatch) -> np.ndarray:
        out = np.empty((len(batch), len(NAMES)), dtype=np.float32)
        self.transform_into(batch, out)
        return out

    def transform_into(self, batch: FlowBatch, out: np.ndarray) -> None:
        """Write the batch's columns into ``out`` (float32, ``(len(batch), len(names))``, a
        column slice of a wider matrix will do): two compiled passes over the columns, with
        numpy's ``log1p`` (the one the models were trained with) between them."""
        n = len(batch)
        if n == 0:
            return
        logs = np.empty((_N_LOG, n), dtype=np.float64)
        _quantities(
            _num(batch, "duration"),
            _num(batch, "orig_pkts"),
            _num(batch, "resp_pkts"),
            _num(batch, "orig_bytes"),
            _num(batch, "resp_bytes"),
            _num(batch, "orig_ip_bytes"),
            _num(batch, "resp_ip_bytes"),
            logs,
        )
        np.log1p(logs, out=logs)
        offsets, data, valid = string_views(batch.column("history"))
        _columns(
            logs,
            _num(batch, "missed_bytes"),
            frozen(np.asarray(batch.column("service").is_null().to_numpy(zero_copy_only=False))),
            _num(batch, "resp_p"),
            _num(batch, "orig_p"),
            # (ASCII folding: what Unicode lower-casing gives for these names)
            codes(batch.column("proto"), PROTOCOLS, fold=True),
            codes(batch.column("conn_state"), CONN_STATES),
            offsets,
            data,
            valid,
            _HISTORY_COLUMN,
            out,
        )
