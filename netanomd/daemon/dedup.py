"""De-duplication by community_id across sensors (:class:`Deduplicator`): the live pipeline's
second sighting of one connection, by Zeek and Suricata on the same link, is dropped, and the
record kept carries both sensors' identifiers.

Owns the table of remembered sightings and its expiry. The table is numpy arrays (a hash table
of 64-bit hashes of the ids, open addressing, pointing at entries that keep the id's bytes, its
sightings and their place in a first-in first-out list), walked by numba kernels a batch at a
time: remembering a flow costs no Python object, and the garbage collector has nothing to walk.
An id is found by comparing its bytes, so a hash collision never drops a flow.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from netanomd.arraylist import HEAD, TAIL, push_back, unlink
from netanomd.bytescan import word_at
from netanomd.features._strings import string_views
from netanomd.flow import FlowBatch

#: Sightings remembered per community_id (the last four: an id's newest sighting and the
#: three before it).
SIGHTINGS = 4
#: meta's fields: the list's first and last entry, live entries, free entry ids, entry ids
#: ever handed out.
_COUNT, _FREE, _USED = range(2, 5)  # after the list's ends (netanomd.arraylist)
_ZEEK, _NONE = 0, 1  # kind codes: "zeek", and "" (no source: None and "" are one kind)
_M = np.uint64(0x9E3779B97F4A7C15)


@nb.njit(nogil=True, cache=True, inline="always")
def _mix(h: Any) -> Any:  # pragma: no cover - compiled
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


@nb.njit(nogil=True, cache=True, inline="always")
def _word(data: Any, p: Any, b: Any) -> Any:  # pragma: no cover - compiled
    """The bytes ``data[p:min(p + 8, b)]`` as a uint64 (little-endian, zeros past ``b``)."""
    if p + 8 <= b:
        return word_at(data, p)
    rest = b - p
    if p + 8 <= data.size:
        return word_at(data, p) & ((np.uint64(1) << np.uint64(8 * rest)) - np.uint64(1))
    w = np.uint64(0)
    for k in range(rest):
        w |= np.uint64(data[p + k]) << np.uint64(8 * k)
    return w


@nb.njit(nogil=True, cache=True, inline="always")
def _hash(data: Any, a: Any, b: Any) -> Any:  # pragma: no cover - compiled
    """A 64-bit hash of ``data[a:b]``."""
    h = np.uint64(b - a) * _M
    for p in range(a, b, 8):
        h = ((h << np.uint64(29)) | (h >> np.uint64(35))) ^ _word(data, p, b)
        h *= _M
    return _mix(h)


#: A hash table slot: 0 when free, else the id's hash's upper 32 bits (a tag, compared before
#: the id) over the entry id + 1.
_LOW = np.uint64(0xFFFFFFFF)


@nb.njit(nogil=True, cache=True)
def _slot_of(table: Any, ehash: Any, e: int) -> Any:  # pragma: no cover - compiled
    last = table.size - 1
    s = np.intp(ehash[e] & np.uint64(last))
    want = np.uint64(e + 1)
    while table[s] & _LOW != want:
        s = (s + 1) & last
    return s


@nb.njit(nogil=True, cache=True)
def _forget(table: Any, ehash: Any, e: int) -> None:  # pragma: no cover - compiled
    """Take entry ``e`` out of the hash table (linear probing: later entries of its run shift
    back into the hole, so no tombstones)."""
    last = table.size - 1
    umask = np.uint64(last)
    hole = _slot_of(table, ehash, e)
    j = hole
    while True:
        j = (j + 1) & last
        f = table[j]
        if f == 0:
            break
        home = np.intp(ehash[np.intp(f & _LOW) - 1] & umask)
        stays = (hole < home <= j) if hole <= j else (home > hole or home <= j)
        if not stays:
            table[hole] = f
            hole = j
    table[hole] = 0


@nb.njit(nogil=True, cache=True)
def _expire(
    table: Any,
    ehash: Any,
    expiry: Any,
    prev: Any,
    nxt: Any,
    free: Any,
    meta: Any,
    now: float,
    max_entries: int,
) -> None:  # pragma: no cover - compiled
    """Forget the oldest entries while the oldest has expired or there are too many."""
    while meta[HEAD] >= 0:
        e = meta[HEAD]
        if expiry[e] > now and meta[_COUNT] <= max_entries:
            break
        _forget(table, ehash, e)
        unlink(prev, nxt, meta, e)
        free[meta[_FREE]] = e
        meta[_FREE] += 1
        meta[_COUNT] -= 1


@nb.njit(nogil=True, cache=True)
def _rehash(table: Any, ehash: Any, nxt: Any, meta: Any) -> None:  # pragma: no cover - compiled
    """Put every live entry into the (empty) ``table``."""
    last = table.size - 1
    umask = np.uint64(last)
    e = meta[HEAD]
    while e >= 0:
        h = ehash[e]
        s = np.intp(h & umask)
        while table[s] != 0:
            s = (s + 1) & last
        table[s] = (h & ~_LOW) | np.uint64(e + 1)
        e = nxt[e]


@nb.njit(nogil=True, cache=True)
def _sight(
    offsets: Any,
    data: Any,
    valid: Any,
    starts: Any,
    kinds: Any,
    table: Any,
    ehash: Any,
    ekey: Any,
    elen: Any,
    expiry: Any,
    prev: Any,
    nxt: Any,
    nsight: Any,
    s_start: Any,
    s_kind: Any,
    s_row: Any,
    free: Any,
    meta: Any,
    until: float,
    tolerance: float,
    base: int,
    keep_drop: Any,
) -> int:  # pragma: no cover - compiled
    """Look at a batch's rows in order: a row whose twin (same id, another kind, start within
    ``tolerance``) was in an earlier batch is dropped; one whose twin is in this batch is paired
    with it (``keep_drop``, Zeek's row kept, its sighting the one remembered); any other is
    remembered until ``until``. Rows are numbered ``base + row`` across batches. Returns how
    many pairs; dropped rows have ``valid`` cleared."""
    last = table.size - 1
    umask = np.uint64(last)
    width = ekey.shape[1]
    pairs = 0
    for r in range(valid.size):
        if not valid[r]:
            continue
        a, b = np.intp(offsets[r]), np.intp(offsets[r + 1])
        n = b - a
        h = _hash(data, a, b)
        tag = h & ~_LOW
        s = np.intp(h & umask)
        e: Any = -1
        while table[s] != 0:
            if table[s] & ~_LOW == tag:
                e = np.intp(table[s] & _LOW) - 1
                if ehash[e] == h and elen[e] == n:
                    k = 0
                    for p in range(a, b, 8):
                        if ekey[e, k] != _word(data, p, b):
                            break
                        k += 1
                    if 8 * k >= n:
                        break
                e = -1
            s = (s + 1) & last
        start, kind = starts[r], kinds[r]
        if e < 0:  # a new id: remembered at the end of the list
            if meta[_FREE] > 0:
                meta[_FREE] -= 1
                e = free[meta[_FREE]]
            else:
                e = meta[_USED]
                meta[_USED] += 1
            table[s] = tag | np.uint64(e + 1)
            ehash[e], elen[e], expiry[e] = h, n, until
            k = 0
            for p in range(a, b, 8):
                ekey[e, k] = _word(data, p, b)
                k += 1
            for z in range(k, width):
                ekey[e, z] = 0
            nsight[e] = 1
            s_start[e, 0], s_kind[e, 0], s_row[e, 0] = start, kind, base + r
            push_back(prev, nxt, meta, e)
            meta[_COUNT] += 1
            continue
        twin = -1
        for t in range(nsight[e]):
            if s_kind[e, t] != kind and abs(s_start[e, t] - start) <= tolerance:
                twin = t
                break
        if twin < 0:  # the newest sighting of an id seen before: the last ones kept
            m = nsight[e]
            if m == SIGHTINGS:
                for t in range(1, m):
                    s_start[e, t - 1] = s_start[e, t]
                    s_kind[e, t - 1] = s_kind[e, t]
                    s_row[e, t - 1] = s_row[e, t]
                m -= 1
            s_start[e, m], s_kind[e, m], s_row[e, m] = start, kind, base + r
            nsight[e] = m + 1
            expiry[e] = until
            if meta[TAIL] != e:
                unlink(prev, nxt, meta, e)
                push_back(prev, nxt, meta, e)
            continue
        j = s_row[e, twin] - base
        if j < 0:  # the twin was scored in an earlier batch
            valid[r] = False
            continue
        if kind == _ZEEK:
            keep, drop = r, j
            s_start[e, twin], s_kind[e, twin], s_row[e, twin] = start, kind, base + r
        else:
            keep, drop = j, r
        valid[drop] = False
        keep_drop[pairs, 0], keep_drop[pairs, 1] = keep, drop
        pairs += 1
    return pairs


@nb.njit(nogil=True, cache=True)
def _merge_flow_ids(flow_ids: Any, known: Any, keep_drop: Any) -> bool:  # pragma: no cover
    """The kept row of each pair takes the dropped one's flow id when it has none (in pair
    order); whether any did."""
    merged = False
    for p in range(keep_drop.shape[0]):
        keep, drop = keep_drop[p, 0], keep_drop[p, 1]
        if not known[keep] and known[drop]:
            flow_ids[keep], known[keep], merged = flow_ids[drop], True, True
    return merged


def _signed(signatures: pa.ChunkedArray) -> np.ndarray:
    """Which rows have signatures (a list of at least one)."""
    some = pc.fill_null(pc.greater(pc.list_value_length(signatures), 0), False)
    return np.asarray(some.to_numpy(zero_copy_only=False), dtype=np.bool_)


def _grown(a: np.ndarray, size: int) -> np.ndarray:
    out = np.empty((size, *a.shape[1:]), dtype=a.dtype)
    out[: len(a)] = a
    return out


class Deduplicator:
    """Drops the second sighting of one connection by two sensors (Zeek and Suricata on the same
    link): same community_id, flow start within ``tolerance`` seconds, *another* source kind.

    The one record kept carries both sensors' identifiers (issue 17 point 3): when both
    sightings are in one batch the Zeek record is kept (its uid, its richer fields) and takes
    the Suricata record's ``flow_id``, so its alert names ``zeek.session_id`` and
    ``suricata.eve.flow_id``. A sighting that comes a batch later than its twin is dropped: the
    twin was already scored and written.

    The same sensor repeating a community_id is a new connection (NTP 123 -> 123 every minute,
    a backlog replayed), never a duplicate. Sightings are remembered for ``window`` seconds of
    wall-clock time, at most ``max_entries`` community_ids (the ones seen least recently go
    first), the last four sightings of each.

    The table is numpy arrays: a million remembered ids are not walked by every full garbage
    collection (a Python object per id was: a 0.5 s pause of the scoring thread every few tens
    of seconds at 10k flows/s).
    """

    def __init__(self, window: float, max_entries: int = 1_000_000, tolerance: float = 2.0) -> None:
        self.window = window
        self.max_entries = max_entries
        self.tolerance = tolerance
        self._kinds: dict[str, int] = {"zeek": _ZEEK, "": _NONE}
        self._rows = 0  # rows seen before this batch (sightings are numbered across batches)
        self._meta = np.array([-1, -1, 0, 0, 0], dtype=np.int64)
        self._table = np.empty(0, np.uint64)  # hash slots (_LOW)
        self._allocate(0, 1024, 4)

    def __len__(self) -> int:
        """How many community_ids are remembered."""
        return int(self._meta[_COUNT])

    def _allocate(self, used: int, size: int, width: int) -> None:
        """Room for ``size`` entries of ids up to ``width`` 8-byte words (the first ``used``
        kept)."""
        if used == 0:
            self._ehash = np.zeros(size, np.uint64)
            self._ekey = np.zeros((size, width), np.uint64)
            self._elen = np.zeros(size, np.int64)
            self._expiry = np.zeros(size, np.float64)
            self._prev = np.zeros(size, np.int64)
            self._next = np.zeros(size, np.int64)
            self._free = np.zeros(size, np.int64)
            self._nsight = np.zeros(size, np.int8)
            self._s_start = np.zeros((size, SIGHTINGS), np.float64)
            self._s_kind = np.zeros((size, SIGHTINGS), np.int16)
            self._s_row = np.zeros((size, SIGHTINGS), np.int64)
        else:
            if width > self._ekey.shape[1]:
                key = np.zeros((len(self._ekey), width), np.uint64)
                key[:, : self._ekey.shape[1]] = self._ekey
                self._ekey = key
            if size > len(self._ehash):
                for name in (
                    "_ehash", "_ekey", "_elen", "_expiry", "_prev", "_next", "_free",
                    "_nsight", "_s_start", "_s_kind", "_s_row",
                ):  # fmt: skip
                    setattr(self, name, _grown(getattr(self, name), size))
        if used == 0 or size > len(self._table) // 2:
            self._table = np.zeros(1 << max(size * 2 - 1, 1).bit_length(), np.uint64)
            _rehash(self._table, self._ehash, self._next, self._meta)

    def _kind_codes(self, sources: pa.Array) -> np.ndarray:
        """Each row's source kind as a small number (None and "" one kind)."""
        kinds = self._kinds
        encoded = pc.dictionary_encode(sources)
        codes = np.array(
            [kinds.setdefault(k, len(kinds)) for k in encoded.dictionary.to_pylist()], np.int16
        )
        if len(kinds) > np.iinfo(np.int16).max:
            raise ValueError(f"deduplicator: more than {np.iinfo(np.int16).max} source kinds")
        index = encoded.indices
        if index.null_count:
            index = pc.fill_null(index, len(codes))
            codes = np.append(codes, np.int16(_NONE))
        return np.asarray(codes[index.to_numpy()], np.int16)

    def apply(self, batch: FlowBatch, now: float) -> tuple[FlowBatch, int]:
        """``batch`` without the connections another source kind reported, and how many
        rows were dropped."""
        meta = self._meta
        _expire(
            self._table, self._ehash, self._expiry, self._prev, self._next, self._free, meta,
            now, self.max_entries,
        )  # fmt: skip
        base, n = self._rows, len(batch)
        self._rows += n
        ids = batch.column("community_id")
        if ids.null_count == n:
            return batch, 0
        offsets, data, valid = string_views(ids)
        if not len(valid):  # no nulls
            valid = np.ones(n, np.bool_)
        width = -(-int(np.max(offsets[1:] - offsets[:-1])) // 8)
        used = int(meta[_USED])
        if used + n > len(self._ehash) or width > self._ekey.shape[1]:
            self._allocate(
                used, max(used + n, 2 * len(self._ehash)), max(width, self._ekey.shape[1])
            )
        sources = batch.column("source")
        kinds = self._kind_codes(
            sources.combine_chunks() if sources.num_chunks != 1 else sources.chunk(0)
        )
        keep_drop = np.empty((n, 2), np.int64)
        kept = valid.copy()
        pairs = _sight(
            offsets, data, kept, batch.numeric("ts", fill=np.nan), kinds,
            self._table, self._ehash, self._ekey, self._elen, self._expiry, self._prev,
            self._next, self._nsight, self._s_start, self._s_kind, self._s_row, self._free,
            meta, now + self.window, self.tolerance, base, keep_drop,
        )  # fmt: skip
        mask = kept | ~valid  # rows without an id are kept
        dropped = n - int(mask.sum())
        if not dropped:
            return batch, 0
        table = batch.table
        if pairs:
            keep_drop = keep_drop[:pairs]
            table = self._merge(table, keep_drop)
        return FlowBatch(table.filter(pa.array(mask))), dropped

    @staticmethod
    def _merge(table: pa.Table, keep_drop: np.ndarray) -> pa.Table:
        """The kept row of each pair (in order) with the dropped one's flow id when it had none,
        and the dropped one's signatures after its own."""
        index = table.schema.get_field_index("flow_id")
        col = table.column(index)
        known = np.array(pc.is_valid(col).to_numpy(zero_copy_only=False), dtype=np.bool_)
        flow_ids = np.array(pc.fill_null(col, 0).to_numpy(), dtype=np.uint64)
        if _merge_flow_ids(flow_ids, known, keep_drop):
            table = table.set_column(index, "flow_id", pa.array(flow_ids, pa.uint64(), ~known))
        index = table.schema.get_field_index("signatures")
        col = table.column(index)
        # a row's signatures move only from a dropped row that had some to begin with, or had
        # been given some: none move unless a dropped row had some to begin with
        if col.null_count < len(col) and _signed(col)[keep_drop[:, 1]].any():
            sigs = col.to_pylist()
            for keep, drop in keep_drop.tolist():
                if sigs[drop]:
                    sigs[keep] = [*(sigs[keep] or []), *sigs[drop]]
            field = table.schema.field(index)
            table = table.set_column(index, field, pa.array(sigs, field.type))
        return table
