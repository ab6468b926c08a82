"""The host feature block: what each originator has been doing over a sliding time window.

Owns the :class:`HostFeatures` block. Flows are processed in arrival order (the same code for a
file read in batches and for a live stream; state carries from one batch to the next), and for
each flow the block looks at the originator's recent flows — at most :attr:`HostFeatures.depth`
of them, within :attr:`HostFeatures.window` seconds of this flow — including this one:

======================  =======================================================================
column                  meaning
======================  =======================================================================
host_log_conns          ``log1p`` flows from this originator in the window
host_log_rate           ``log1p`` flows per minute from this originator in the window
host_log_dsts           ``log1p`` distinct responder addresses contacted in the window
host_log_ports          ``log1p`` distinct responder ports contacted in the window
host_fail_ratio         share of the window's flows that failed (S0, REJ, RSTO, RSTOS0, RSTR,
                        RSTRH, SH, SHR, OTH: no completed exchange)
host_out_in             ``log1p(bytes out) - log1p(bytes in)`` summed over the window
host_periodicity        beaconing: for the flows to this flow's responder and port in the window
                        (at least 4), ``1 / (1 + CV)`` of their inter-arrival times (1 = clockwork,
                        0 = no pattern or too few)
======================  =======================================================================

Every column but ``host_out_in`` is declared one-sided (:attr:`HostFeatures.one_sided`): a
model floors it at its training median (:mod:`netanomd.features.floors`), so only more
activity than usual can look anomalous.

Memory is bounded: at most :attr:`HostFeatures.max_hosts` originators are tracked, each with a
ring of ``depth`` recent flows; when the table is full the host seen least recently is evicted
(its history is forgotten, as if it had been idle). The per-flow loop is compiled with numba.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numba as nb
import numpy as np

from netanomd.features._frozen import frozen
from netanomd.features._host_table import HostTable, slot_for
from netanomd.features._strings import codes, hash_strings
from netanomd.flow import FlowBatch

FAILED_STATES = ("S0", "REJ", "RSTO", "RSTOS0", "RSTR", "RSTRH", "SH", "SHR", "OTH")

NAMES: tuple[str, ...] = (
    "host_log_conns",
    "host_log_rate",
    "host_log_dsts",
    "host_log_ports",
    "host_fail_ratio",
    "host_out_in",
    "host_periodicity",
)


#: Up to this many values, distinct ones are counted by comparing pairs (branch-free, and
#: faster than sorting at the usual window depth); beyond it, by sorting.
_PAIRWISE_MAX = 64


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _distinct(values: np.ndarray, m: int) -> int:  # pragma: no cover - compiled
    """How many distinct values the first ``m`` (>= 1) of ``values`` hold, by sorting them."""
    u = values[:m]
    u.sort()
    n = 1
    for q in range(1, m):
        if u[q] != u[q - 1]:
            n += 1
    return n


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _distinct_pair(a: np.ndarray, b: np.ndarray, m: int) -> tuple[int, int]:  # pragma: no cover
    """How many distinct values the first ``m`` (>= 1) of ``a`` hold, and of ``b``: up to
    :data:`_PAIRWISE_MAX` by comparing pairs, both in one loop; beyond, by sorting."""
    if m > _PAIRWISE_MAX:
        return _distinct(a, m), _distinct(b, m)
    n_a = 0
    n_b = 0
    for q in range(m):
        x = a[q]
        y = b[q]
        seen_a = 0
        seen_b = 0
        for q2 in range(q):
            seen_a += a[q2] == x
            seen_b += b[q2] == y
        n_a += seen_a == 0
        n_b += seen_b == 0
    return n_a, n_b


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _sort(values: np.ndarray, m: int) -> None:  # pragma: no cover - compiled
    """Sort the first ``m`` values in place: by insertion when few (fast on nearly sorted
    input), else by quicksort."""
    if m > _PAIRWISE_MAX:
        values[:m].sort()
        return
    for q in range(1, m):
        x = values[q]
        j = q
        while j > 0 and values[j - 1] > x:
            values[j] = values[j - 1]
            j -= 1
        values[j] = x


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _host_kernel(
    hosts: np.ndarray,
    keys: np.ndarray,
    index: np.ndarray,
    prev: np.ndarray,
    nxt: np.ndarray,
    meta: np.ndarray,
    ts: np.ndarray,
    dst: np.ndarray,
    port: np.ndarray,
    failed: np.ndarray,
    ob: np.ndarray,
    rb: np.ndarray,
    ring_ts: np.ndarray,
    ring_dst: np.ndarray,
    ring_port: np.ndarray,
    ring_fail: np.ndarray,
    ring_ob: np.ndarray,
    ring_rb: np.ndarray,
    ring_len: np.ndarray,
    ring_pos: np.ndarray,
    ring_distinct: np.ndarray,
    window: float,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """One pass over the rows in arrival order; ``out`` (float32, one column per name) may be
    a column slice of a wider matrix. Scratch is allocated once per call, not per row.

    ``ring_distinct`` (hosts, 2) is how many distinct responders and ports each host's ring
    holds, kept up to date as a flow replaces the oldest (one pass over the ring: does the
    leaving value stay, is the arriving one new): when the whole ring is in the window, as it
    is for a busy host, those are the window's counts, without comparing every pair."""
    depth = ring_ts.shape[1]
    tmp_u = np.empty(depth, dtype=np.uint64)
    tmp_i = np.empty(depth, dtype=np.int64)
    times = np.empty(depth, dtype=np.float64)
    # log1p of the counts a window can hold (0 to depth), the same values computed once
    log1p_count = np.empty(depth + 1, dtype=np.float64)
    for k in range(depth + 1):
        log1p_count[k] = np.log1p(k)
    later = np.empty(depth, dtype=np.float64)
    for r in range(hosts.shape[0]):
        h, fresh = slot_for(hosts[r], keys, index, prev, nxt, meta)
        if fresh:
            ring_len[h] = 0
            ring_pos[h] = 0
            ring_distinct[h, 0] = 0
            ring_distinct[h, 1] = 0
        p = ring_pos[h]
        # the ring's distinct counts: the entry at p leaves (when the ring is full), this flow
        # arrives there
        d0 = dst[r]
        p0 = port[r]
        full = ring_len[h] == depth
        old_d = ring_dst[h, p]
        old_p = ring_port[h, p]
        same_old_d = 0
        same_old_p = 0
        same_d = 0
        same_p = 0
        for k in range(ring_len[h]):
            other = k != p
            u = ring_dst[h, k]
            v = ring_port[h, k]
            same_old_d += other & (u == old_d)
            same_old_p += other & (v == old_p)
            same_d += other & (u == d0)
            same_p += other & (v == p0)
        if full:
            ring_distinct[h, 0] -= same_old_d == 0
            ring_distinct[h, 1] -= same_old_p == 0
        ring_distinct[h, 0] += same_d == 0
        ring_distinct[h, 1] += same_p == 0
        ring_ts[h, p] = ts[r]
        ring_dst[h, p] = dst[r]
        ring_port[h, p] = port[r]
        ring_fail[h, p] = failed[r]
        ring_ob[h, p] = ob[r]
        ring_rb[h, p] = rb[r]
        ring_pos[h] = p + 1 if p + 1 < depth else 0
        if ring_len[h] < depth:
            ring_len[h] += 1
        # The window: entries within `window` seconds of this flow; among them the flows to
        # this flow's responder and port, for beaconing, their times taken oldest first (the
        # ring's arrival order, nearly sorted already: the slots from `first` on, then those
        # before it).
        m = 0
        t0 = ts[r]
        tmin = t0
        tmax = t0
        n_fail = 0
        s_ob = 0.0
        s_rb = 0.0
        c = 0
        c_later = 0
        n_ring = ring_len[h]
        first = ring_pos[h] if n_ring == depth else 0
        for k in range(n_ring):
            t = ring_ts[h, k]
            if abs(t - t0) <= window:
                u = ring_dst[h, k]
                v = ring_port[h, k]
                tmp_u[m] = u
                tmp_i[m] = v
                n_fail += ring_fail[h, k]
                s_ob += ring_ob[h, k]
                s_rb += ring_rb[h, k]
                m += 1
                if t < tmin:
                    tmin = t
                if t > tmax:
                    tmax = t
                if u == d0 and v == p0:
                    if k >= first:
                        times[c] = t
                        c += 1
                    else:
                        later[c_later] = t
                        c_later += 1
        for q in range(c_later):
            times[c + q] = later[q]
        c += c_later
        if m == n_ring:  # the whole ring is in the window
            n_dst, n_port = ring_distinct[h, 0], ring_distinct[h, 1]
        else:
            n_dst, n_port = _distinct_pair(tmp_u, tmp_i, m)
        periodic = 0.0
        if c >= 4:
            _sort(times, c)
            # The gaps' mean and standard deviation, summed in order as the array methods do.
            total = 0.0
            for q in range(1, c):
                total += times[q] - times[q - 1]
            mean = total / (c - 1)
            if mean > 0.0:
                ssd = 0.0
                for q in range(1, c):
                    d = (times[q] - times[q - 1]) - mean
                    ssd += d * d
                cv = (ssd / (c - 1)) ** 0.5 / mean
                periodic = 1.0 / (1.0 + cv)
        span = max(tmax - tmin, 60.0)
        out[r, 0] = log1p_count[m]
        out[r, 1] = np.log1p(m * 60.0 / span)
        out[r, 2] = log1p_count[n_dst]
        out[r, 3] = log1p_count[n_port]
        out[r, 4] = n_fail / m
        out[r, 5] = np.log1p(s_ob) - np.log1p(s_rb)
        out[r, 6] = periodic


#: Bounds on the state a model may ask for (a model file is not trusted to size memory).
MAX_WINDOW = 86_400.0
MAX_DEPTH = 1024
MAX_CELLS = 1 << 24


class HostFeatures:
    """Per-originator behaviour over a sliding window (see the module docstring)."""

    kind: ClassVar[str] = "host"
    log1p: ClassVar[frozenset[str]] = frozenset(n for n in NAMES if n.startswith("host_log_"))
    # A host doing less than it usually does (a quiet spell, one NTP query in the window) is
    # not a sign of attack; scans, floods, failures and beaconing all push these columns *up*.
    # The ratio of bytes out to in stays two-sided: exfiltration pushes it up, a payload
    # download down.
    one_sided: ClassVar[frozenset[str]] = frozenset(n for n in NAMES if n != "host_out_in")
    binary: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, window: float = 300.0, depth: int = 32, max_hosts: int = 16384) -> None:
        if not 0 < window <= MAX_WINDOW or not 2 <= depth <= MAX_DEPTH or max_hosts < 1:
            raise ValueError(
                f"host features: window {window} (0 to {MAX_WINDOW:.0f} s), depth {depth} "
                f"(2 to {MAX_DEPTH}) and max_hosts {max_hosts} (>= 1) are out of range"
            )
        if max_hosts * depth > MAX_CELLS:
            raise ValueError(
                f"host features: max_hosts {max_hosts} x depth {depth} needs more than "
                f"{MAX_CELLS:,} window cells (about {MAX_CELLS * 24 >> 20} MiB)"
            )
        self.window = float(window)
        self.depth = int(depth)
        self.max_hosts = int(max_hosts)
        self.reset()

    @property
    def names(self) -> tuple[str, ...]:
        return NAMES

    def reset(self) -> None:
        """Forget every host (a new stream starts)."""
        n, d = self.max_hosts, self.depth
        self._table = HostTable(n)
        self._ring_ts = np.zeros((n, d))
        self._ring_dst = np.zeros((n, d), dtype=np.uint64)
        self._ring_port = np.zeros((n, d), dtype=np.int32)
        self._ring_fail = np.zeros((n, d), dtype=np.uint8)
        self._ring_ob = np.zeros((n, d), dtype=np.float32)
        self._ring_rb = np.zeros((n, d), dtype=np.float32)
        self._ring_len = np.zeros(n, dtype=np.int64)
        self._ring_pos = np.zeros(n, dtype=np.int64)
        self._ring_distinct = np.zeros((n, 2), dtype=np.int64)

    @property
    def hosts(self) -> int:
        """Originators currently tracked."""
        return self._table.hosts

    @property
    def evictions(self) -> int:
        """Originators evicted to make room since the stream started."""
        return self._table.evictions

    def tracked(self) -> set[int]:
        """The keys (:func:`~netanomd.features._strings.hash_strings` of the address) of the
        originators tracked."""
        return self._table.tracked()

    def fit(self, batch: FlowBatch) -> None:
        return None

    def transform(self, batch: FlowBatch) -> np.ndarray:
        out = np.empty((len(batch), len(NAMES)), dtype=np.float32)
        self.transform_into(batch, out)
        return out

    def transform_into(self, batch: FlowBatch, out: np.ndarray) -> None:
        """Write the batch's columns into ``out`` (float32, ``(len(batch), len(names))``, a
        column slice of a wider matrix will do)."""
        if not len(batch):
            return
        ts = batch.numeric("ts", fill=np.nan)
        ts = frozen(np.where(np.isfinite(ts), ts, 0.0))
        table = self._table
        # (an unset state counts as failed)
        fail = (codes(batch.column("conn_state"), FAILED_STATES, null=0) >= 0).view(np.uint8)
        ob = np.maximum(batch.numeric("orig_bytes", dtype=np.float32), 0.0)
        rb = np.maximum(batch.numeric("resp_bytes", dtype=np.float32), 0.0)
        _host_kernel(  # (every input read-only: one compiled version, see features._frozen)
            hash_strings(batch.column("orig_h")),
            table.keys,
            table.index,
            table.prev,
            table.next,
            table.meta,
            ts,
            hash_strings(batch.column("resp_h")),
            frozen(batch.numeric("resp_p", fill=-1, dtype=np.int32)),
            frozen(fail),
            frozen(ob),
            frozen(rb),
            self._ring_ts,
            self._ring_dst,
            self._ring_port,
            self._ring_fail,
            self._ring_ob,
            self._ring_rb,
            self._ring_len,
            self._ring_pos,
            self._ring_distinct,
            self.window,
            out,
        )

    def to_state(self) -> dict[str, Any]:
        return {"window": self.window, "depth": self.depth, "max_hosts": self.max_hosts}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> HostFeatures:
        return cls(
            window=float(state.get("window", 300.0)),
            depth=int(state.get("depth", 32)),
            max_hosts=int(state.get("max_hosts", 65536)),
        )
