"""HyperLogLog registers for many distinct counts at once, updated and read by compiled loops.

Owns the distinct-count sketch used by the host windows: a table of ``rows x 2**p`` uint8
registers (one HyperLogLog per row, Flajolet et al. 2007, with linear counting for small
cardinalities). Rows are updated for a whole batch in one compiled loop (:func:`put` per item,
also called from the windows' own kernel), are read the same way (:func:`sketch_sums` per
sketch, also called from the kernel that closes a window, then :func:`finish`), merge by register
maximum (so sketches of two windows or two sensors combine exactly), and take ``2**p`` bytes each
whatever the number of distinct items: memory is bounded by construction. With the default
``p = 7`` the standard error is about 9%, and counts below ~100 are near exact (linear counting).

Why not Apache DataSketches (``datasketches`` 5.2.0, measured in one run, one core): its Python
API updates a sketch one item per call (no bulk update from an array) and holds each sketch as
an object. On 1,000,000 resampled real flows (``benchmarks/gen_connlog.py``) the host windows
make 18.4 million sketch updates; this module's add, estimate and clear take 0.4 CPU-s of the
stage's 4.0, the same updates, estimates and resets through ``hll_sketch`` (HLL_8, lg_k 7)
2.4 CPU-s (129 ns a call): the behaviour stage would take 1.50x as long (1.27x on CTU-50 008
laid 40 times over itself, 64k hosts), at the brief's limit, with a Python loop over every
flow and 245,760 sketch objects for the default table instead of one uint8 array. Its sketches
are the better-kept code; this one is 70 lines, tested against exact counts
(``tests/test_behaviour_hll.py``).
"""

from __future__ import annotations

import numba as nb
import numpy as np

DEFAULT_P = 7


def _alpha(m: int) -> float:
    return 0.7213 / (1.0 + 1.079 / m)


@nb.njit(cache=True, nogil=True)
def bit_length(x: np.uint64) -> int:  # pragma: no cover - compiled
    """Bits needed for ``x`` (0 for 0): a binary search, six steps whatever ``x``."""
    n = 0
    for step in (32, 16, 8, 4, 2, 1):
        if x >> np.uint64(step):
            x >>= np.uint64(step)
            n += step
    return n + int(x != np.uint64(0))


@nb.njit(cache=True, nogil=True)
def register_of(h: np.uint64, p: int) -> tuple[int, np.uint8]:  # pragma: no cover - compiled
    """Register index and rank (position of the first 1-bit after the index bits) of a hash."""
    rest = h & ((np.uint64(1) << np.uint64(64 - p)) - np.uint64(1))
    return int(h >> np.uint64(64 - p)), np.uint8((64 - p) - bit_length(rest) + 1)


@nb.njit(cache=True, nogil=True)
def put(registers: np.ndarray, row: int, h: np.uint64, p: int) -> None:  # pragma: no cover
    """Add hash ``h`` to sketch ``row`` of a ``rows x 2**p`` register table."""
    idx, rank = register_of(h, p)
    if rank > registers[row, idx]:
        registers[row, idx] = rank


@nb.njit(cache=True, nogil=True)
def _add(registers: np.ndarray, rows: np.ndarray, hashes: np.ndarray, p: int) -> None:
    for i in range(len(rows)):  # pragma: no cover - compiled
        put(registers, rows[i], hashes[i], p)


@nb.njit(cache=True, nogil=True)
def _split(hashes: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    idx = np.empty(len(hashes), np.int64)
    rank = np.empty(len(hashes), np.uint8)
    for i in range(len(hashes)):
        idx[i], rank[i] = register_of(hashes[i], p)
    return idx, rank


def split_hash(hashes: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Register index and rank (:func:`register_of`) per hash."""
    idx, rank = _split(np.asarray(hashes, dtype=np.uint64), p)
    return idx, rank


@nb.njit(cache=True, nogil=True)
def _block(v: np.ndarray, a: int, n: int) -> float:  # pragma: no cover - compiled
    """numpy's sum of ``v[a:a + n]`` for ``n`` a multiple of 8 up to 128: eight running sums,
    then added in pairs."""
    r0, r1, r2, r3 = v[a], v[a + 1], v[a + 2], v[a + 3]
    r4, r5, r6, r7 = v[a + 4], v[a + 5], v[a + 6], v[a + 7]
    for b in range(a + 8, a + n, 8):
        r0 += v[b]
        r1 += v[b + 1]
        r2 += v[b + 2]
        r3 += v[b + 3]
        r4 += v[b + 4]
        r5 += v[b + 5]
        r6 += v[b + 6]
        r7 += v[b + 7]
    return float(((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)))


@nb.njit(cache=True, nogil=True)
def _pairwise(v: np.ndarray, blocks: np.ndarray) -> float:  # pragma: no cover - compiled
    """``np.sum(v)`` for ``len(v)`` a power of two from 16, in numpy's order (pairwise: blocks
    of up to 128 by :func:`_block`, halves added together above that), so an estimate is the
    same float ``np.sum`` gave; ``blocks``: scratch of ``max(1, len(v) // 128)``."""
    n = len(v)
    if n <= 128:
        return _block(v, 0, n)
    k = n // 128
    for i in range(k):
        blocks[i] = _block(v, 128 * i, 128)
    while k > 1:
        k //= 2
        for i in range(k):
            blocks[i] = blocks[2 * i] + blocks[2 * i + 1]
    return float(blocks[0])


@nb.njit(cache=True, nogil=True)
def sketch_sums(
    registers: np.ndarray, r: int, inverse: np.ndarray, v: np.ndarray, blocks: np.ndarray
) -> tuple[float, int]:  # pragma: no cover - compiled
    """Of sketch ``r``: the sum of ``2 ** -register`` over its registers (``inverse``: by
    register value, :data:`INVERSE_POWERS`), added as ``np.sum`` adds them, and how many
    registers are zero (``v``, ``blocks``: scratch of ``2**p`` and ``max(1, 2**p // 128)``).
    :func:`finish` makes them estimates."""
    zeros = 0
    for i in range(len(v)):
        x = registers[r, i]
        v[i] = inverse[x]
        if x == 0:
            zeros += 1
    return _pairwise(v, blocks), zeros


@nb.njit(cache=True, nogil=True)
def _sums(
    registers: np.ndarray, rows: np.ndarray, inverse: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """:func:`sketch_sums` of each of ``rows``."""
    m = registers.shape[1]
    sums = np.empty(len(rows))
    zeros = np.zeros(len(rows), np.int64)
    v = np.empty(m)
    blocks = np.empty(max(1, m // 128))
    for k in range(len(rows)):
        sums[k], zeros[k] = sketch_sums(registers, rows[k], inverse, v, blocks)
    return sums, zeros


def finish(inverse: np.ndarray, zeros: np.ndarray, p: int) -> np.ndarray:
    """Estimates of sketches of ``2**p`` registers from their :func:`sketch_sums` (float64):
    the raw HyperLogLog estimate, linear counting where it is small and a register is zero."""
    m = float(1 << p)
    raw = _alpha(1 << p) * m * m / inverse  # a sum of positive powers of two: never 0
    linear = m * np.log(m / np.maximum(zeros, 1))
    return np.asarray(np.where((raw <= 2.5 * m) & (zeros > 0), linear, raw))


@nb.njit(cache=True, nogil=True)
def _clear(registers: np.ndarray, rows: np.ndarray) -> None:  # pragma: no cover - compiled
    for k in range(len(rows)):
        registers[rows[k], :] = 0


#: ``2 ** -rank`` for every register value (exact: looked up, not computed per register).
INVERSE_POWERS = np.ldexp(1.0, -np.arange(256))


class HllTable:
    """``rows`` HyperLogLog sketches of ``2**p`` registers each, all in one uint8 array."""

    def __init__(self, rows: int, p: int = DEFAULT_P, registers: np.ndarray | None = None) -> None:
        """``registers``: an existing ``rows x 2**p`` uint8 array to keep the sketches in."""
        if not 4 <= p <= 16 or rows < 1:
            raise ValueError("HllTable needs rows >= 1 and 4 <= p <= 16")
        self.p = p
        self.m = 1 << p
        if registers is None:
            registers = np.zeros((rows, self.m), dtype=np.uint8)
        if registers.shape != (rows, self.m) or registers.dtype != np.uint8:
            raise ValueError(f"HllTable registers must be uint8 of shape {(rows, self.m)}")
        self.registers = registers

    def add(self, rows: np.ndarray, hashes: np.ndarray) -> None:
        """Add item ``hashes[i]`` (uint64) to sketch ``rows[i]``."""
        if len(rows) == 0:
            return
        _add(
            self.registers,
            np.asarray(rows, dtype=np.int64),
            np.asarray(hashes, dtype=np.uint64),
            self.p,
        )

    def merge_into(self, dst: np.ndarray, other: HllTable, src: np.ndarray) -> None:
        """Sketch ``dst[i]`` absorbs ``other``'s sketch ``src[i]`` (a union of the two sets)."""
        if other.p != self.p:
            raise ValueError(f"cannot merge HyperLogLog sketches with p={other.p} into p={self.p}")
        np.maximum.at(self.registers, np.asarray(dst, dtype=np.int64), other.registers[src])

    def clear(self, rows: np.ndarray) -> None:
        _clear(self.registers, np.asarray(rows, dtype=np.int64))

    def estimate(self, rows: np.ndarray) -> np.ndarray:
        """Estimated distinct items in each of ``rows`` (float64)."""
        inverse, zeros = _sums(self.registers, np.asarray(rows, dtype=np.int64), INVERSE_POWERS)
        return finish(inverse, zeros, self.p)
