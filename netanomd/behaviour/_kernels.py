"""numba kernels of the host windows: the per-row loops over a segment's columns.

Owns the loops :mod:`netanomd.behaviour.windows` runs once per flow row, compiled (``nogil``, so a
daemon's decoding thread runs while a batch is scored; ``cache``, so start-up reuses them):
running counts per group, the per-slot sums of an open window, HyperLogLog register updates and
the latest representative rows per host. Each gives exactly what the numpy formulation it
replaced gave: counts and byte sums are whole numbers, so their float sums do not depend on the
order they are added in.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from netanomd.behaviour.hll import put

_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xC2B2AE3D27D4EB4F)


@nb.njit(cache=True, nogil=True)
def mix1(a: np.uint64, b: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    """One pair of :func:`netanomd.behaviour.windows._mix` (the same bits)."""
    x = (a * _K1) ^ (b + _K2 + (a << np.uint64(6)) + (a >> np.uint64(2)))
    x ^= x >> np.uint64(31)
    x *= _K2
    x ^= x >> np.uint64(29)
    return x


@nb.njit(cache=True, nogil=True)
def running(group: np.ndarray, values: np.ndarray, groups: int) -> np.ndarray:  # pragma: no cover
    """Per row, the sum of ``values`` over the rows so far (this one included) of its group
    (``group`` in ``[0, groups)``)."""
    acc = np.zeros(groups)
    out = np.empty(len(group))
    for i in range(len(group)):
        g = group[i]
        acc[g] += values[i]
        out[i] = acc[g]
    return out


@nb.njit(cache=True, nogil=True)
def scale_add(
    table: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    active: np.ndarray,
    slot: np.ndarray,
    sums: np.ndarray,
    ts: np.ndarray,
    end: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Add each row's ``sums`` to its slot's row of ``table``; the slot's first start, last end;
    mark it active."""
    cols = sums.shape[1]
    for i in range(len(slot)):
        s = slot[i]
        for c in range(cols):
            table[s, c] += sums[i, c]
        if ts[i] < first[s]:
            first[s] = ts[i]
        if end[i] > last[s]:
            last[s] = end[i]
        active[s] = True


@nb.njit(cache=True, nogil=True)
def hll_sketches(
    reg: np.ndarray,
    p: int,
    sketches: int,
    slot: np.ndarray,
    peer: np.ndarray,
    port: np.ndarray,
    probe: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """The window sketches of each row: peers, ports; for probes also probed peers, probed
    ports and probed (peer, port) targets (sketch ``slot * sketches + i``, i in that order)."""
    for i in range(len(slot)):
        base = slot[i] * sketches
        put(reg, base, peer[i], p)
        put(reg, base + 1, port[i], p)
        if probe[i]:
            put(reg, base + 2, peer[i], p)
            put(reg, base + 3, port[i], p)
            put(reg, base + 4, mix1(peer[i], port[i]), p)


@nb.njit(cache=True, nogil=True)
def latest(slot: np.ndarray, slots: int, keep: int) -> tuple[np.ndarray, np.ndarray]:
    # pragma: no cover - compiled
    """Each slot's latest ``keep`` rows, newest first: (rows, rank of each among its slot's)."""
    count = np.zeros(slots, np.int64)
    rows = np.empty(len(slot), np.int64)
    rank = np.empty(len(slot), np.int64)
    n = 0
    for i in range(len(slot) - 1, -1, -1):
        s = slot[i]
        if count[s] < keep:
            rows[n] = i
            rank[n] = count[s]
            count[s] += 1
            n += 1
    return rows[:n], rank[:n]


@nb.njit(cache=True, nogil=True)
def by_key_then(order: np.ndarray, keys: np.ndarray, second: np.ndarray) -> np.ndarray:
    # pragma: no cover - compiled
    """``order`` (rows stably sorted by key; ``keys`` in that order) re-sorted within each run
    of one key by ``second`` (stable): what ``np.lexsort((second, key))`` gives."""
    out = order.copy()
    n = len(order)
    i = 0
    while i < n:
        j = i + 1
        ordered = True
        while j < n and keys[j] == keys[i]:
            if second[order[j]] < second[order[j - 1]]:
                ordered = False
            j += 1
        if not ordered:
            run = order[i:j]
            out[i:j] = run[np.argsort(second[run], kind="mergesort")]
        i = j
    return out
