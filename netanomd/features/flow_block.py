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

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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


#: Per-packet IP+transport header estimate used to convert between payload and IP bytes.
HEADER_BYTES_PER_PKT = 40


def _num(batch: FlowBatch, name: str) -> np.ndarray:
    """Numeric column as float64 with nulls as NaN."""
    col = batch.column(name)
    return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _is_in(col: pa.ChunkedArray, values: Sequence[str]) -> list[np.ndarray]:
    """For each value, a 0/1 float32 column saying whether ``col`` equals it."""
    idx = pc.index_in(col, value_set=pa.array(values, type=pa.string()))
    codes = np.asarray(pc.fill_null(idx, -1).to_numpy(zero_copy_only=False))
    return [(codes == i).astype(np.float32) for i in range(len(values))]


class FlowFeatures:
    """Per-flow features (see the module docstring for every column)."""

    kind: ClassVar[str] = "flow"
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
        n = len(batch)
        out = np.empty((n, len(NAMES)), dtype=np.float32)
        if n == 0:
            return out
        dur = np.nan_to_num(_num(batch, "duration"), nan=0.0)
        np.maximum(dur, 0.0, out=dur)
        opk = np.nan_to_num(_num(batch, "orig_pkts"), nan=0.0)
        rpk = np.nan_to_num(_num(batch, "resp_pkts"), nan=0.0)
        ob, rb = _num(batch, "orig_bytes"), _num(batch, "resp_bytes")
        oip, rip = _num(batch, "orig_ip_bytes"), _num(batch, "resp_ip_bytes")
        h = HEADER_BYTES_PER_PKT
        ob = np.where(np.isnan(ob), np.maximum(np.nan_to_num(oip) - h * opk, 0.0), ob)
        rb = np.where(np.isnan(rb), np.maximum(np.nan_to_num(rip) - h * rpk, 0.0), rb)
        oip = np.where(np.isnan(oip), ob + h * opk, oip)
        rip = np.where(np.isnan(rip), rb + h * rpk, rip)
        # Zeek reports huge byte counts for some broken TCP sequences; clip at 0 from below.
        ob, rb = np.maximum(ob, 0.0), np.maximum(rb, 0.0)
        cols: list[np.ndarray] = [
            np.log1p(dur),
            np.log1p(ob),
            np.log1p(rb),
            np.log1p(opk),
            np.log1p(rpk),
            np.log1p(oip),
            np.log1p(rip),
            np.log1p(ob) - np.log1p(rb),
            np.log1p(np.divide(oip, opk, out=np.zeros(n), where=opk > 0)),
            np.log1p(np.divide(rip, rpk, out=np.zeros(n), where=rpk > 0)),
            np.log1p((opk + rpk) / np.maximum(dur, 1e-3)),
            (np.nan_to_num(_num(batch, "missed_bytes")) > 0).astype(np.float64),
            np.asarray(batch.column("service").is_null().to_numpy(zero_copy_only=False), float),
        ]
        rp = _num(batch, "resp_p")
        op = _num(batch, "orig_p")
        cols += [
            (rp < 1024).astype(np.float64),
            ((rp >= 1024) & (rp < 49152)).astype(np.float64),
            ((rp >= 49152) | np.isnan(rp)).astype(np.float64),
            (op < 1024).astype(np.float64),
        ]
        for j, c in enumerate(cols):
            out[:, j] = c
        j = len(cols)
        proto = pc.utf8_lower(batch.column("proto"))
        onehot = _is_in(proto, PROTOCOLS)
        for c in onehot:
            out[:, j] = c
            j += 1
        out[:, j] = 1.0 - np.sum(onehot, axis=0)
        j += 1
        onehot = _is_in(batch.column("conn_state"), CONN_STATES)
        for c in onehot:
            out[:, j] = c
            j += 1
        out[:, j] = 1.0 - np.sum(onehot, axis=0)
        j += 1
        hist = pc.fill_null(batch.column("history"), "")
        for ch in HISTORY_ORIG + HISTORY_RESP + "^":
            has = pc.match_substring(hist, ch)
            out[:, j] = np.asarray(has.to_numpy(zero_copy_only=False), dtype=np.float32)
            j += 1
        assert j == len(NAMES)
        return out
