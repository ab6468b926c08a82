"""Features: turn a :class:`~netanomd.flow.FlowBatch` into a ``float32`` matrix with named columns.

A :class:`FeatureSpec` is an ordered list of feature *blocks*. Each block owns a group of
columns, computes them straight from Arrow columns (never row by row), and round-trips through
plain data so the spec is stored in the model artifact and checked on load.

The per-flow block, :class:`FlowFeatures`, documents every column it makes:

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

Labels are never features. Blocks beyond the flow block (such as per-host behaviour over
sliding windows) implement :class:`FeatureBlock` and are registered in :data:`BLOCK_TYPES`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from netanomd.errors import ModelError
from netanomd.flow import FlowBatch

#: Bump when the meaning of any column changes: artifacts record it and refuse a mismatch.
FEATURES_VERSION = 1

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
#: Columns that are ``log1p`` of a count, size, duration or rate (shown to people as expm1);
#: other blocks add theirs with :func:`register_log1p`.
LOG1P_COLUMNS = set(
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


#: Columns where only *high* values can mean an attack (more destinations, more failures, more
#: regular beaconing...); a value below the training median is as typical as the median (see
#: :mod:`netanomd.floors`). Blocks add theirs with :func:`register_one_sided`.
ONE_SIDED_COLUMNS: set[str] = set()


def register_log1p(names: Iterable[str]) -> None:
    LOG1P_COLUMNS.update(names)


def register_one_sided(names: Iterable[str]) -> None:
    ONE_SIDED_COLUMNS.update(names)


def is_binary(name: str) -> bool:
    """True for 0/1 feature columns (flags and one-hot categories)."""
    return name in FLAG_COLUMNS or name.startswith(ONE_HOT_PREFIXES)


#: Per-packet IP+transport header estimate used to convert between payload and IP bytes.
HEADER_BYTES_PER_PKT = 40


@runtime_checkable
class FeatureBlock(Protocol):
    """A group of feature columns computed from a batch."""

    #: Registry key, stored in the artifact.
    kind: ClassVar[str]

    @property
    def names(self) -> tuple[str, ...]: ...

    def fit(self, batch: FlowBatch) -> None:
        """Learn whatever the block needs from training data (may do nothing)."""
        ...

    def transform(self, batch: FlowBatch) -> np.ndarray:
        """``float32`` matrix of shape ``(len(batch), len(names))``."""
        ...

    def to_state(self) -> dict[str, Any]:
        """JSON-able parameters that recreate the fitted block."""
        ...


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

    def __init__(self) -> None:
        names = [
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
        ]
        names += [f"proto_{p}" for p in PROTOCOLS] + ["proto_other"]
        names += [f"state_{s}" for s in CONN_STATES] + ["state_other"]
        names += [f"hist_o{c}" for c in HISTORY_ORIG] + [f"hist_r{c}" for c in HISTORY_RESP]
        names += ["hist_flip"]
        self._names = tuple(names)

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def fit(self, batch: FlowBatch) -> None:
        return None

    def to_state(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FlowFeatures:
        return cls()

    def transform(self, batch: FlowBatch) -> np.ndarray:
        n = len(batch)
        out = np.empty((n, len(self._names)), dtype=np.float32)
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
        assert j == len(self._names)
        return out


#: kind -> block class; other modules add theirs with :func:`register_block`.
BLOCK_TYPES: dict[str, Any] = {FlowFeatures.kind: FlowFeatures}


def register_block(cls: Any) -> Any:
    """Class decorator: make a :class:`FeatureBlock` loadable from an artifact by its kind."""
    BLOCK_TYPES[cls.kind] = cls
    return cls


class FeatureSpec:
    """An ordered list of feature blocks: the "feature pipeline" stored with a model."""

    def __init__(self, blocks: Sequence[FeatureBlock] | None = None) -> None:
        self.blocks: list[FeatureBlock] = list(blocks) if blocks else [FlowFeatures()]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for b in self.blocks for n in b.names)

    def fit(self, batch: FlowBatch) -> None:
        for b in self.blocks:
            b.fit(batch)

    def reset(self) -> None:
        """Forget the state of stateful blocks (a new stream of flows starts)."""
        for b in self.blocks:
            reset = getattr(b, "reset", None)
            if reset is not None:
                reset()

    def transform(self, batch: FlowBatch) -> np.ndarray:
        if len(self.blocks) == 1:
            return self.blocks[0].transform(batch)
        return np.ascontiguousarray(np.hstack([b.transform(batch) for b in self.blocks]))

    def to_state(self) -> dict[str, Any]:
        return {
            "version": FEATURES_VERSION,
            "blocks": [{"kind": b.kind, "state": b.to_state()} for b in self.blocks],
            "names": list(self.names),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FeatureSpec:
        """Rebuild the spec and check it yields exactly the stored feature names."""
        if state.get("version") != FEATURES_VERSION:
            raise ModelError(
                f"model features version {state.get('version')!r} does not match this "
                f"netanomd's features version {FEATURES_VERSION}: retrain the model"
            )
        blocks = []
        for i, entry in enumerate(state.get("blocks", [])):
            kind = entry.get("kind")
            if kind not in BLOCK_TYPES:
                raise ModelError(f"features.blocks[{i}].kind: unknown feature block {kind!r}")
            blocks.append(BLOCK_TYPES[kind].from_state(entry.get("state", {})))
        spec = cls(blocks)
        if list(spec.names) != list(state.get("names", [])):
            raise ModelError(
                "feature names in the model do not match what this netanomd computes "
                f"(model has {len(state.get('names', []))}, code makes {len(spec.names)}): "
                "retrain the model"
            )
        return spec
