"""The host table of :class:`~netanomd.features.host_block.HostFeatures`: which slot of the
window rings an originator owns, compiled, O(1) per flow however many originators there are.

Owns :class:`HostTable`: an open-addressing hash table (linear probing, deletion by backward
shift) from a host's 64-bit key to its slot, and a doubly linked list of the slots from most
to least recently used. A flow of a tracked host moves its slot to the front; a flow of a new
host takes a never-used slot or, when all are in use, the least recently used one (that host's
history is forgotten, as if it had been idle). :func:`slot_for` runs inside the feature
kernel, one call per flow, so a stream of new hosts costs what a stream of known ones does.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from netanomd.arraylist import HEAD, TAIL, push_front, unlink

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SHIFT = np.uint64(29)
# meta fields
_USED, _EVICTED = 2, 3  # after the list's ends (netanomd.arraylist)


class HostTable:
    """Slots for at most ``capacity`` hosts (see the module docstring)."""

    def __init__(self, capacity: int) -> None:
        size = 2
        while size < 2 * capacity:
            size *= 2
        self.keys = np.zeros(capacity, dtype=np.uint64)
        self.index = np.full(size, -1, dtype=np.int64)
        self.prev = np.full(capacity, -1, dtype=np.int64)
        self.next = np.full(capacity, -1, dtype=np.int64)
        #: head (most recent), tail (least recent), slots used, evictions so far
        self.meta = np.array([-1, -1, 0, 0], dtype=np.int64)

    @property
    def hosts(self) -> int:
        """Hosts tracked."""
        return int(self.meta[_USED])

    @property
    def evictions(self) -> int:
        """Hosts evicted to make room, since the table was made."""
        return int(self.meta[_EVICTED])

    def tracked(self) -> set[int]:
        """The keys of the hosts tracked."""
        return set(self.keys[: self.hosts].tolist())


@nb.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _home(key: np.uint64, mask: int) -> int:  # pragma: no cover - compiled
    mixed = key * _GOLDEN
    return int(np.int64((mixed ^ (mixed >> _SHIFT)) & np.uint64(mask)))


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _remove(s: int, keys: np.ndarray, index: np.ndarray) -> None:  # pragma: no cover - compiled
    """Take slot ``s`` out of the index, shifting back the entries probed past it."""
    mask = index.shape[0] - 1
    j = _home(keys[s], mask)
    while index[j] != s:
        j = (j + 1) & mask
    while True:
        index[j] = -1
        k = j
        while True:
            k = (k + 1) & mask
            e = index[k]
            if e < 0:
                return
            h = _home(keys[e], mask)
            # the entry at k may move to j unless its home lies cyclically in (j, k]
            if (j < k and (h <= j or h > k)) or (j > k and h <= j and h > k):
                index[j] = e
                j = k
                break


@nb.njit(cache=True, nogil=True, boundscheck=False)
def slot_for(
    key: np.uint64,
    keys: np.ndarray,
    index: np.ndarray,
    prev: np.ndarray,
    nxt: np.ndarray,
    meta: np.ndarray,
) -> tuple[int, bool]:  # pragma: no cover - compiled
    """``(slot, fresh)`` of the host ``key``, now the most recently used; ``fresh`` when the
    slot is new to the host (its window starts empty)."""
    mask = index.shape[0] - 1
    i = _home(key, mask)
    while index[i] >= 0:
        s = index[i]
        if keys[s] == key:
            if meta[HEAD] != s:
                unlink(prev, nxt, meta, s)
                push_front(prev, nxt, meta, s)
            return s, False
        i = (i + 1) & mask
    if meta[_USED] < keys.shape[0]:
        s = meta[_USED]
        meta[_USED] += 1
    else:
        s = meta[TAIL]
        unlink(prev, nxt, meta, s)
        _remove(s, keys, index)
        meta[_EVICTED] += 1
        i = _home(key, mask)
        while index[i] >= 0:
            i = (i + 1) & mask
    index[i] = s
    keys[s] = key
    push_front(prev, nxt, meta, s)
    return s, True
