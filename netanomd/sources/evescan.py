"""Suricata EVE flow events scanned straight into typed columns, a block of lines at once.

:func:`scan` walks a block's lines in one numba kernel (no Python object per line or value; the
GIL released) and takes each line that is a flow event it can read exactly: one JSON object
(whitespace allowed, keys in any order, as Suricata 7 writes them or re-encoded) whose fields
read by :mod:`netanomd.sources.suricata_eve` hold plain values (strings of printable ASCII
without escapes, integers without sign, fraction or exponent, times in Suricata's own layout
``2013-03-07T21:42:06.869344+0000``, TCP flags as 1-15 hex digits), and whose other fields
(``in_iface``, ``vlan``, ``metadata``, ``flow.age``/``state``/``reason``/``alerted``,
``tcp.syn``...) are well-formed JSON of the same plain kinds. Every value is checked as the
general decoder checks it (counts 0 to :data:`~netanomd.sources.MAX_COUNT`, ports 0-65535,
dates that exist). Anything else, valid or not (another event type, a null, a duplicate key,
an escape or a non-ASCII byte anywhere, a number with an exponent, nesting beyond
:data:`MAX_DEPTH`), is not taken: the line goes to the general decoder, which reads what is
valid and names what is not.
"""

from __future__ import annotations

import mmap
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numba as nb
import numpy as np
import pyarrow as pa

from netanomd.bytescan import word_at, words
from netanomd.sources import MAX_COUNT, int_range

# -- the fields read, by code: where they are, what they hold --------------------------------
#: Field names by code: the event's (0-14), its ``flow`` object's (15-20), its ``tcp``
#: object's (21-23).
FIELDS = (
    "event_type",
    "flow_id",
    "src_ip",
    "src_port",
    "dest_ip",
    "dest_port",
    "icmp_type",
    "icmp_code",
    "proto",
    "app_proto",
    "community_id",
    "label",
    "timestamp",
    "flow",
    "tcp",
    "pkts_toserver",
    "pkts_toclient",
    "bytes_toserver",
    "bytes_toclient",
    "start",
    "end",
    "tcp_flags",
    "tcp_flags_ts",
    "tcp_flags_tc",
)
CODE = {name: code for code, name in enumerate(FIELDS)}
#: The codes of each object's fields: [LEVEL_AT[k], LEVEL_AT[k + 1]) for the event (0), its
#: ``flow`` (1) and its ``tcp`` (2).
LEVEL_AT = np.array([0, CODE["pkts_toserver"], CODE["tcp_flags"], len(FIELDS)], np.int64)
#: Kinds of value.
STRING, INTEGER, OBJECT, TIME, HEX = range(5)
_KINDS = {
    **dict.fromkeys(FIELDS, STRING),
    **dict.fromkeys(("flow_id", "src_port", "dest_port", "icmp_type", "icmp_code"), INTEGER),
    **dict.fromkeys(FIELDS[CODE["pkts_toserver"] : CODE["start"]], INTEGER),
    "flow": OBJECT,
    "tcp": OBJECT,
    "start": TIME,
    "end": TIME,
    **dict.fromkeys(("tcp_flags", "tcp_flags_ts", "tcp_flags_tc"), HEX),
}
KINDS = np.array([_KINDS[f] for f in FIELDS], np.int64)
_PORT_MAX = int_range("orig_p")[1]
#: The largest value each integer field may hold (0 for the others).
MOST = np.array(
    [
        (_PORT_MAX if f.endswith(("_port", "_type", "_code")) else MAX_COUNT)
        if _KINDS[f] == INTEGER
        else 0
        for f in FIELDS
    ],
    np.int64,
)
#: Flow ids of more digits than this are left to the general decoder (which takes any 64-bit
#: id): Suricata's are 48-bit.
ID_DIGITS = 18
#: The ``present`` bit set when ``proto`` is ``tcp`` in any case.
TCP_PROTO = len(FIELDS)
#: The ``present`` bit set when ``app_proto`` is ``failed``.
APP_FAILED = TCP_PROTO + 1
#: Containers nested deeper than this within a skipped value are left to the general decoder.
MAX_DEPTH = 32
#: The fields a line must hold to be taken (the rest have defaults, as in the general path).
_REQUIRED = ("event_type", "flow_id", "src_ip", "dest_ip", "flow", "start")
REQUIRED = sum(1 << CODE[f] for f in _REQUIRED)


_NAMES, _NAME_AT = words(FIELDS)


def _key_hash(key: bytes) -> int:
    """Where a key of two or more bytes is looked for in :data:`BY_HASH` (the kernel computes
    the same)."""
    return (len(key) + 2 * key[-1] + key[-2]) & 63


def _by_hash() -> np.ndarray:
    """The code of the field each hash names, per object (-1: none); no two fields of an
    object share a hash."""
    table = np.full((len(LEVEL_AT) - 1, 64), -1, np.int64)
    for level in range(len(LEVEL_AT) - 1):
        for code in range(LEVEL_AT[level], LEVEL_AT[level + 1]):
            h = _key_hash(FIELDS[code].encode())
            assert table[level, h] < 0, f"{FIELDS[code]} shares a hash"
            table[level, h] = code
    return table


BY_HASH = _by_hash()


def _namewords() -> np.ndarray:
    """Each field name's first eight bytes (zero-padded) and last eight, as words in the
    machine's byte order: keys are compared a word at a time."""
    words = np.zeros((len(FIELDS), 2), np.uint64)
    for code, name in enumerate(FIELDS):
        raw = name.encode()
        if len(raw) > 16:  # its middle bytes would go unchecked
            raise ValueError(f"evescan: field name {name!r} is longer than 16 bytes")
        words[code, 0] = int.from_bytes(raw[:8].ljust(8, b"\0"), sys.byteorder)
        words[code, 1] = int.from_bytes(raw[-8:].rjust(8, b"\0"), sys.byteorder)
    return words


_NAME_WORDS = _namewords()
#: The word of a key's first ``k`` bytes (k < 8) is the loaded word AND ``_MASKS[k]``.
_MASKS = np.array(
    [int.from_bytes(b"\xff" * k + b"\0" * (8 - k), sys.byteorder) for k in range(8)], np.uint64
)


@dataclass(frozen=True)
class Scanned:
    """What :func:`scan` read: the lines taken (their indices in the block) and, per taken
    line in order, each field's value (``ints[code]``: integers, flags, times in microseconds
    since the epoch) or text span in the block (``starts[code]``, ``lengths[code]``), and which
    fields it had (``present``: bit ``code``, :data:`TCP_PROTO` and :data:`APP_FAILED`)."""

    block: np.ndarray
    lines: np.ndarray
    ints: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    present: np.ndarray

    def has(self, name: str | int) -> np.ndarray:
        """Which taken lines hold the field ``name`` (or have the ``present`` bit ``name``
        when it is a number)."""
        bit = name if isinstance(name, int) else CODE[name]
        has: np.ndarray = (self.present >> bit) & 1 == 1
        return has

    def texts(
        self,
        fields: Sequence[str],
        *,
        lower: Sequence[str] = (),
        prefix: dict[str, str] | None = None,
        valid: dict[str, np.ndarray] | None = None,
    ) -> list[pa.Array]:
        """The text fields ``fields`` of the taken lines as string arrays, built in one call
        (each its own part of one allocation: a column's characters are only its own, as
        :func:`netanomd.flow.canonical_addresses` reads them): those in ``lower``
        ASCII-lowercased, those in ``prefix`` after their one-character prefix, rows not
        ``valid[field]`` null."""
        prefix, valid = prefix or {}, valid or {}
        codes = np.array([CODE[f] for f in fields], np.int64)
        lowered = np.array([f in lower for f in fields], np.bool_)
        firsts = np.array([ord(prefix.get(f, "\0")) for f in fields], np.uint8)
        n = len(self.lines)
        offsets = np.empty((len(fields), n + 1), np.int32)
        sizes = self.lengths[codes].sum(axis=1) + (firsts > 0) * n
        bases = np.zeros(len(fields) + 1, np.int64)
        np.cumsum(sizes, out=bases[1:])
        data = np.empty(int(bases[-1]), np.uint8)
        _gather(self.block, self.starts, self.lengths, codes, lowered, firsts, offsets, data)
        out = []
        for k, field in enumerate(fields):
            chars = pa.py_buffer(data[bases[k] : bases[k + 1]])
            ok = valid.get(field)
            bitmap, nulls = None, 0
            if ok is not None and not ok.all():
                bitmap = pa.py_buffer(np.packbits(ok, bitorder="little"))
                nulls = n - int(np.count_nonzero(ok))
            out.append(
                pa.StringArray.from_buffers(n, pa.py_buffer(offsets[k]), chars, bitmap, nulls)
            )
        return out


@dataclass(frozen=True)
class Block:
    """Lines as spans of one buffer (no object per line): line ``k`` is
    ``data[starts[k]:ends[k]]``; the buffer is text, or a read-only map of datagram slots
    (:mod:`netanomd.sources.datagrams`), whose slices are bytes too."""

    data: bytes | mmap.mmap
    starts: np.ndarray
    ends: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def line(self, k: int) -> bytes:
        return self.data[self.starts[k] : self.ends[k]]

    def piece(self, first: int, stop: int) -> Block:
        """Lines ``first`` to ``stop`` (excluded)."""
        return Block(self.data, self.starts[first:stop], self.ends[first:stop])


def block_of_lines(lines: Sequence[bytes]) -> Block:
    """``lines`` as one block (each line whole, line ends within one included)."""
    lengths = np.fromiter(map(len, lines), np.int64, len(lines))
    ends = np.cumsum(lengths + 1) - 1
    return Block(b"\n".join(lines), ends - lengths, ends)


def block_of_text(text: bytes, stop: int | None = None) -> Block:
    """The lines of ``text[:stop]`` (no copy): cut at each ``\\n`` (a ``\\r`` before it
    left out); the last one may lack its ``\\n``."""
    stop = len(text) if stop is None else stop
    chars = np.frombuffer(text, np.uint8, stop)
    cuts = np.flatnonzero(chars == 10)
    ends = cuts if not stop or chars[stop - 1] == 10 else np.append(cuts, stop)
    starts = np.zeros(len(ends), np.int64)
    starts[1:] = cuts[: len(ends) - 1] + 1
    crlf = ends > starts
    crlf[crlf] = chars[ends[crlf] - 1] == 13
    return Block(text, starts, ends - crlf)


def scan(block: Block) -> Scanned:
    """The flow events among the block's lines (module doc) read into columns."""
    n = len(block)
    buf = np.frombuffer(block.data, np.uint8)
    taken = np.empty(n, np.int64)
    ints = np.zeros((len(FIELDS), n), np.int64)
    starts = np.zeros((len(FIELDS), n), np.int64)
    lengths = np.zeros((len(FIELDS), n), np.int64)
    present = np.zeros(n, np.int64)
    rows = _scan(
        buf,
        np.ascontiguousarray(block.starts, np.int64),
        np.ascontiguousarray(block.ends, np.int64),
        _NAMES,
        _NAME_AT,
        BY_HASH,
        KINDS,
        MOST,
        taken,
        ints,
        starts,
        lengths,
        present,
    )
    return Scanned(
        buf,
        taken[:rows],
        ints[:, :rows],
        starts[:, :rows],
        lengths[:, :rows],
        present[:rows],
    )


# -- the kernel -----------------------------------------------------------------------------
# One function walks each line's values (helpers inlined): numba counts references to the
# arrays passed to a helper, and those atomic counts cost more than the scan when paid per
# value.


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _space(buf: np.ndarray, i: int, e: int) -> int:  # pragma: no cover - compiled
    """The index of the first byte from ``i`` that is not JSON whitespace (``e`` at most)."""
    while i < e and (buf[i] == 32 or buf[i] == 9 or buf[i] == 10 or buf[i] == 13):
        i += 1
    return i


_ONES = np.uint64(0x0101010101010101)
_HIGH = np.uint64(0x8080808080808080)
_QUOTES = np.uint64(0x2222222222222222)
_BACKSLASHES = np.uint64(0x5C5C5C5C5C5C5C5C)
_SPACES = np.uint64(0x2020202020202020)


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _close(buf: np.ndarray, a: int, e: int) -> int:  # pragma: no cover - compiled
    """The index of the quote closing the string whose text starts at ``a`` (ASCII without
    control characters or escapes), or -1. Eight bytes at a time while none of them is a
    quote, a backslash, a control character or non-ASCII."""
    j = a
    while j + 8 <= e:
        w = word_at(buf, j)
        q, b = w ^ _QUOTES, w ^ _BACKSLASHES
        special = ((q - _ONES) & ~q) | ((b - _ONES) & ~b) | ((w - _SPACES) & ~w) | w
        if special & _HIGH:
            break
        j += 8
    while j < e:
        c = buf[j]
        if c == 34:
            return j
        if c < 32 or c >= 128 or c == 92:
            return -1
        j += 1
    return -1


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _string_end(buf: np.ndarray, i: int, e: int) -> int:  # pragma: no cover - compiled
    """The index of the closing quote of the string opening at ``i``, or -1."""
    if i >= e or buf[i] != 34:
        return -1
    return _close(buf, i + 1, e)


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _number_end(buf: np.ndarray, i: int, e: int) -> int:  # pragma: no cover - compiled
    """The end of the JSON number at ``i`` (``-``, digits without a leading zero, a fraction;
    no exponent, at most 18 digits before the point), or -1."""
    j = i
    if j < e and buf[j] == 45:
        j += 1
    d = j
    while j < e and 48 <= buf[j] <= 57:
        j += 1
    if j == d or j - d > 18 or (buf[d] == 48 and j - d > 1):
        return -1
    if j < e and buf[j] == 46:
        j += 1
        d = j
        while j < e and 48 <= buf[j] <= 57:
            j += 1
        if j == d:
            return -1
    if j < e and (buf[j] == 101 or buf[j] == 69):
        return -1
    return j


_TRUE, _FALSE, _NULL = (np.frombuffer(w, np.uint8).copy() for w in (b"true", b"false", b"null"))


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _literal_end(buf: np.ndarray, i: int, e: int) -> int:  # pragma: no cover - compiled
    """The end of ``true``, ``false`` or ``null`` at ``i``, or -1."""
    c = buf[i]
    if c == 116:
        word = _TRUE
    elif c == 102:
        word = _FALSE
    elif c == 110:
        word = _NULL
    else:
        return -1
    if i + word.shape[0] > e:
        return -1
    m: int = word.shape[0]
    for k in range(m):
        if buf[i + k] != word[k]:
            return -1
    return i + m


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _skip(buf: np.ndarray, i: int, e: int, closers: np.ndarray) -> int:
    # pragma: no cover - compiled
    """The end of the JSON value at ``i`` (of the kinds the module doc names), or -1;
    ``closers``: room for what each level of a container closes with."""
    c = buf[i]
    if c == 34:
        j = _string_end(buf, i, e)
        return j + 1 if j >= 0 else -1
    if c != 123 and c != 91:  # not { or [
        if c == 45 or 48 <= c <= 57:
            return _number_end(buf, i, e)
        return _literal_end(buf, i, e)
    # a container: walk it with a stack of what each level closes with
    depth = 0
    closers[0] = 125 if c == 123 else 93
    i += 1
    want_key = c == 123
    first = True
    while True:
        i = _space(buf, i, e)
        if i >= e:
            return -1
        c = buf[i]
        if first and c == closers[depth]:  # an empty container: it ends here
            i += 1
            if depth == 0:
                return i
            depth -= 1
        else:
            if want_key:  # "key":
                j = _string_end(buf, i, e)
                if j < 0:
                    return -1
                i = _space(buf, j + 1, e)
                if i >= e or buf[i] != 58:
                    return -1
                i = _space(buf, i + 1, e)
                if i >= e:
                    return -1
                c = buf[i]
            if c == 123 or c == 91:  # open one more level
                depth += 1
                if depth >= MAX_DEPTH:
                    return -1
                closers[depth] = 125 if c == 123 else 93
                want_key = c == 123
                first = True
                i += 1
                continue
            if c == 34:
                j = _string_end(buf, i, e)
                i = j + 1 if j >= 0 else -1
            elif c == 45 or 48 <= c <= 57:
                i = _number_end(buf, i, e)
            else:
                i = _literal_end(buf, i, e)
            if i < 0:
                return -1
        # after a value (or an empty container): a comma, or the level's closer
        while True:
            i = _space(buf, i, e)
            if i >= e:
                return -1
            c = buf[i]
            if c == 44:  # ,
                i += 1
                want_key = closers[depth] == 125
                first = False
                break
            if c != closers[depth]:
                return -1
            i += 1
            if depth == 0:
                return i
            depth -= 1


#: Suricata's time layout: ``0`` where a digit goes, ``+`` where the offset's sign goes.
_LAYOUT = np.frombuffer(b"0000-00-00T00:00:00.000000+0000", np.uint8).copy()
#: What :func:`_micros` returns for a text that is not a time of the layout.
NOT_A_TIME = -(1 << 62)


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _days(y: int, m: int, d: int) -> int:  # pragma: no cover - compiled
    """Days from 1970-01-01 to the date (proleptic Gregorian; Howard Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _micros(buf: np.ndarray, i: int, j: int) -> int:  # pragma: no cover - compiled
    """The time ``buf[i:j]`` (``YYYY-mm-ddTHH:MM:SS.ffffff+hhmm``: a date that exists, an
    offset of at most 14 hours, a year from 1900 to 2999) in microseconds since the epoch, or
    :data:`NOT_A_TIME`."""
    if j - i != 31:
        return NOT_A_TIME
    for q in range(31):
        c = buf[i + q]
        want = _LAYOUT[q]
        if want == 48:
            if c < 48 or c > 57:
                return NOT_A_TIME
        elif want == 43:
            if c != 43 and c != 45:
                return NOT_A_TIME
        elif c != want:
            return NOT_A_TIME
    y = (buf[i] - 48) * 1000 + (buf[i + 1] - 48) * 100 + (buf[i + 2] - 48) * 10 + buf[i + 3] - 48
    mo = (buf[i + 5] - 48) * 10 + buf[i + 6] - 48
    d = (buf[i + 8] - 48) * 10 + buf[i + 9] - 48
    h = (buf[i + 11] - 48) * 10 + buf[i + 12] - 48
    mi = (buf[i + 14] - 48) * 10 + buf[i + 15] - 48
    sec = (buf[i + 17] - 48) * 10 + buf[i + 18] - 48
    us = 0
    for q in range(20, 26):
        us = us * 10 + buf[i + q] - 48
    oh = (buf[i + 27] - 48) * 10 + buf[i + 28] - 48
    om = (buf[i + 29] - 48) * 10 + buf[i + 30] - 48
    if y < 1900 or y > 2999 or mo < 1 or mo > 12 or d < 1 or h > 23 or mi > 59 or sec > 59:
        return NOT_A_TIME
    if oh > 14 or om > 59:
        return NOT_A_TIME
    leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
    dim = 31
    if mo == 2:
        dim = 29 if leap else 28
    elif mo == 4 or mo == 6 or mo == 9 or mo == 11:
        dim = 30
    if d > dim:
        return NOT_A_TIME
    offset = (oh * 60 + om) * 60
    if buf[i + 26] == 45:
        offset = -offset
    secs: int = _days(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset
    return secs * 1_000_000 + us


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _scan(
    buf: np.ndarray,
    line_starts: np.ndarray,
    ends: np.ndarray,
    names: np.ndarray,
    name_at: np.ndarray,
    by_hash: np.ndarray,
    kinds: np.ndarray,
    most: np.ndarray,
    taken: np.ndarray,
    ints: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    present: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """How many lines were taken; their indices go to ``taken``, their values to the rest.
    Whitespace and scalars are read inline."""
    rows = 0
    closers = np.empty(MAX_DEPTH, np.uint8)
    for line in range(ends.shape[0]):
        s, e = line_starts[line], ends[line]
        row = rows
        seen = 0
        ok = True
        i = s
        while i < e and (buf[i] == 32 or buf[i] == 9 or buf[i] == 10 or buf[i] == 13):
            i += 1
        if i >= e or buf[i] != 123:
            ok = False
        i += 1
        level = 0
        state = 2  # 0: a key; 1: after a value; 2: a key or the object's end
        while ok:
            while i < e and (buf[i] == 32 or buf[i] == 9 or buf[i] == 10 or buf[i] == 13):
                i += 1
            if i >= e:
                ok = False
                break
            c = buf[i]
            if state == 1 or (state == 2 and c == 125):
                if state == 1 and c == 44:  # ,
                    i += 1
                    state = 0
                    continue
                if c != 125:
                    ok = False
                    break
                i += 1
                if level == 0:
                    break
                level = 0
                state = 1
                continue
            # "key":
            if c != 34:
                ok = False
                break
            k0 = i + 1
            k = _close(buf, k0, e)
            if k < 0:
                ok = False
                break
            i = k + 1
            while i < e and (buf[i] == 32 or buf[i] == 9 or buf[i] == 10 or buf[i] == 13):
                i += 1
            if i >= e or buf[i] != 58:  # :
                ok = False
                break
            i += 1
            while i < e and (buf[i] == 32 or buf[i] == 9 or buf[i] == 10 or buf[i] == 13):
                i += 1
            if i >= e:
                ok = False
                break
            f = -1
            if k - k0 >= 2:  # the one field of this object the key may be (_key_hash)
                cand = by_hash[level, (k - k0 + 2 * buf[k - 1] + buf[k - 2]) & 63]
                if cand >= 0 and name_at[cand + 1] - name_at[cand] == k - k0:
                    if k - k0 >= 8:  # its first and last eight bytes
                        if (
                            word_at(buf, k0) == _NAME_WORDS[cand, 0]
                            and word_at(buf, k - 8) == _NAME_WORDS[cand, 1]
                        ):
                            f = cand
                    elif k0 + 8 <= buf.shape[0]:  # its bytes, in one word
                        if word_at(buf, k0) & _MASKS[k - k0] == _NAME_WORDS[cand, 0]:
                            f = cand
                    else:  # at the very end of the block: byte by byte
                        w0 = name_at[cand]
                        q = 0
                        while q < k - k0 and buf[k0 + q] == names[w0 + q]:
                            q += 1
                        if q == k - k0:
                            f = cand
            state = 1
            c = buf[i]
            kind = kinds[f] if f >= 0 else -1
            if f >= 0:
                if (seen >> f) & 1:  # a duplicate key
                    ok = False
                    break
                seen |= 1 << f
            if c == 34:  # a string: a known field's, or skipped
                a = i + 1
                j = _close(buf, a, e)
                if j < 0:
                    ok = False
                    break
                i = j + 1
                if kind == 0:  # STRING
                    starts[f, row] = a
                    lengths[f, row] = j - a
                    if f == 0:  # event_type: flow only
                        if (
                            j - a != 4
                            or buf[a] != 102
                            or buf[a + 1] != 108
                            or buf[a + 2] != 111
                            or buf[a + 3] != 119
                        ):
                            ok = False
                            break
                    elif (  # proto: is it tcp (in any case)?
                        f == 8
                        and j - a == 3
                        and buf[a] | 32 == 116
                        and buf[a + 1] | 32 == 99
                        and buf[a + 2] | 32 == 112
                    ):
                        seen |= 1 << TCP_PROTO
                    elif (  # app_proto: failed?
                        f == 9
                        and j - a == 6
                        and buf[a] == 102
                        and buf[a + 1] == 97
                        and buf[a + 2] == 105
                        and buf[a + 3] == 108
                        and buf[a + 4] == 101
                        and buf[a + 5] == 100
                    ):
                        seen |= 1 << APP_FAILED
                elif kind == 3:  # TIME
                    t = _micros(buf, a, j)
                    if t == NOT_A_TIME:
                        ok = False
                        break
                    ints[f, row] = t
                elif kind == 4:  # HEX
                    if j == a or j - a > 15:
                        ok = False
                        break
                    v = 0
                    for q in range(a, j):
                        h = buf[q]
                        if 48 <= h <= 57:
                            v = v * 16 + (h - 48)
                        elif 97 <= h <= 102:
                            v = v * 16 + (h - 87)
                        elif 65 <= h <= 70:
                            v = v * 16 + (h - 55)
                        else:
                            ok = False
                            break
                    if not ok:
                        break
                    ints[f, row] = v
                elif kind >= 0:  # a string where a number or an object goes
                    ok = False
                    break
            elif c == 45 or 48 <= c <= 57:  # a number
                if kind >= 0 and kind != 1:
                    ok = False
                    break
                j = i
                if c == 45:
                    if kind == 1:  # a negative count or port
                        ok = False
                        break
                    j += 1
                d = j
                v = 0
                while j < e and 48 <= buf[j] <= 57:
                    v = v * 10 + (buf[j] - 48)
                    j += 1
                if j == d or j - d > 18 or (buf[d] == 48 and j - d > 1) or j >= e:
                    ok = False
                    break
                if buf[j] == 101 or buf[j] == 69:  # an exponent
                    ok = False
                    break
                if buf[j] == 46:  # a fraction: only in a skipped field
                    if kind == 1:
                        ok = False
                        break
                    j += 1
                    d = j
                    while j < e and 48 <= buf[j] <= 57:
                        j += 1
                    if j == d or j >= e or buf[j] == 101 or buf[j] == 69:
                        ok = False
                        break
                if kind == 1:
                    if f == 1:  # flow_id: its digits are also the uid's
                        starts[1, row] = i
                        lengths[1, row] = j - i
                    elif v > most[f]:
                        ok = False
                        break
                    ints[f, row] = v
                i = j
            elif c == 123 and kind == 2:  # the flow or tcp object
                i += 1
                level = 1 if f == 13 else 2
                state = 2
            elif kind >= 0:  # a known field holding null, true, false, [...] or {...}
                ok = False
                break
            elif c == 123 or c == 91:  # a skipped container
                i = _skip(buf, i, e, closers)
                if i < 0:
                    ok = False
            else:  # a skipped literal
                i = _literal_end(buf, i, e)
                if i < 0:
                    ok = False
        if ok:
            while i < e and (buf[i] == 32 or buf[i] == 9 or buf[i] == 10 or buf[i] == 13):
                i += 1
            ok = i == e and (seen & REQUIRED) == REQUIRED
        if ok:
            present[row] = seen
            taken[row] = line
            rows += 1
        else:  # what this line wrote is overwritten by the next, or cut off
            for f in range(kinds.shape[0]):
                ints[f, row] = 0
                lengths[f, row] = 0
    return rows


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _gather(
    buf: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    codes: np.ndarray,
    lowered: np.ndarray,
    firsts: np.ndarray,
    offsets: np.ndarray,
    data: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """The spans of the fields ``codes`` (a column each: its prefix ``firsts[k]`` first when
    not 0, lowercased where ``lowered[k]``) copied into ``data``, one field after the other;
    ``offsets[k]``: where each row's text of field ``k`` starts from the field's first, and
    where the last ends."""
    at = 0
    for k in range(codes.shape[0]):
        f = codes[k]
        lower = lowered[k]
        first = firsts[k]
        base = at
        offsets[k, 0] = 0
        for r in range(starts.shape[1]):
            if first:
                data[at] = first
                at += 1
            s = starts[f, r]
            m = lengths[f, r]
            if lower:
                for q in range(m):
                    c = buf[s + q]
                    data[at + q] = c + 32 if 65 <= c <= 90 else c
            else:
                for q in range(m):
                    data[at + q] = buf[s + q]
            at += m
            offsets[k, r + 1] = at - base
