"""``NetAnom::flows`` frames in Broker's canonical JSON layout, scanned into typed vectors.

Zeek (and :func:`netanomd.zeek.brokerjson.encode_event`) writes a data message in one layout:
compact, keys in the order ``type``, ``topic``, ``@data-type``, ``data``, every value
``{"@data-type":T,"data":V}``. :class:`FlowsScanner` walks such a frame's bytes once in a numba
kernel (no Python object per value; the GIL released) and writes each column's values straight
into numpy buffers: counts and port numbers as int64, durations as seconds, text (strings,
addresses, the ``double`` timestamps' digits) as spans of a byte buffer.

The layout is derived from the contract's declaration (:data:`netanomd.zeek.api.FLOWS`) through
the same encoder that writes it, and the kernel checks every byte of it and every value as the
general decoder does (ports ``^[0-9]{1,5}/(tcp|udp|icmp|unknown|?)$`` up to 65535, timespans
``^-?[0-9]{1,18}(ns|us|ms|s|min|h|d)$``, addresses ``^[0-9A-Fa-f:.]+$``, counts in their column's
range, JSON numbers). Anything else, valid or not (another key order, whitespace, metadata,
escapes or non-ASCII text in a string, a bad value), is not taken: the frame then goes to the
general decoder, which accepts what is valid and names what is not.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np
import orjson
import pyarrow as pa

from netanomd.bytescan import word_at, words
from netanomd.sources import int_range
from netanomd.zeek import api

#: Codes of the column kinds the kernel knows.
COUNT, PORT, TIMESPAN, TEXT, ADDRESS, REAL = range(6)
_KIND_CODES = {
    "count": COUNT,
    "port": PORT,
    "timespan": TIMESPAN,
    "string": TEXT,
    "address": ADDRESS,
    "real": REAL,
}
#: Where each kind's values go: int64 slots, seconds slots, or text spans.
INTS, SECONDS, SPANS = range(3)
STORE = {COUNT: INTS, PORT: INTS, TIMESPAN: SECONDS, TEXT: SPANS, ADDRESS: SPANS, REAL: SPANS}

#: The protocols a port may name, and the units of a timespan with their length in seconds.
PORT_PROTOS = ("tcp", "udp", "icmp", "unknown", "?")
UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


#: How the encoder writes a data message: (topic, event name, wrapped arguments) -> JSON value.
EventMessage = Callable[[str, str, Sequence[dict[str, Any]]], dict[str, Any]]

_NOTHING = np.zeros(1, np.uint8)
_TOPIC, _VERSION = "\x01topic\x01", "\x01version\x01"


def _layout(event_message: EventMessage) -> tuple[bytes, bytes, bytes, bytes]:
    """(before the topic string, between the topic and the version strings, what opens a
    column's vector, what closes the message) as ``event_message`` writes them."""
    args: list[dict[str, Any]] = [{"@data-type": "string", "data": _VERSION}]
    args += [{"@data-type": "vector", "data": []} for _ in api.FLOWS.args[1:]]
    text = orjson.dumps(event_message(_TOPIC, api.FLOWS.name, args))
    topic, version = orjson.dumps(_TOPIC), orjson.dumps(_VERSION)
    head, _, rest = text.partition(topic)
    between, _, rest = rest.partition(version)
    empty = b',{"@data-type":"vector","data":[]}'
    assert rest.startswith(b"}" + empty * (len(args) - 1))
    tail = rest[1 + len(empty) * (len(args) - 1) :]
    return head, between, empty[: -len(b"]}")], tail


@dataclass(frozen=True)
class Column:
    name: str
    kind: int
    #: The index of its store (int64 slot, seconds slot, or span slot).
    slot: int


class FlowsScanner:
    """The kernel's inputs for the per-flow columns of ``NetAnom::flows``, and a call to it."""

    def __init__(self, event_message: EventMessage) -> None:
        """``event_message(topic, name, args)``: the data message the encoder writes."""
        vectors = [(n, api.element_type(t)) for n, t in api.FLOWS.args if api.is_vector(t)]
        used = [0, 0, 0]
        columns = []
        for name, zeek_type in vectors:
            kind = _KIND_CODES[api.BROKER_TYPES[zeek_type]]
            columns.append(Column(name, kind, used[STORE[kind]]))
            used[STORE[kind]] += 1
        self.columns = tuple(columns)
        self.n_ints, self.n_seconds, self.n_spans = used
        head, between, vec_open, tail = _layout(event_message)
        self._head = np.frombuffer(head, np.uint8).copy()
        self._between = np.frombuffer(between, np.uint8).copy()
        self._vec_open = np.frombuffer(vec_open, np.uint8).copy()
        self._tail = np.frombuffer(tail, np.uint8).copy()
        prefixes = []
        for _, zeek_type in vectors:
            element = orjson.dumps({"@data-type": api.BROKER_TYPES[zeek_type], "data": 0})
            prefixes.append(element[: -len(b"0}")].decode())
        _, self._prefix_at = words(prefixes)
        # Each prefix as 8-byte words (the last one ending at the prefix's end), compared a
        # word at a time.
        width = max(len(p) for p in prefixes) // 8 + 1
        self._prefix_words = np.zeros((len(prefixes), width), np.uint64)
        for c, p in enumerate(prefixes):
            raw = p.encode()
            assert len(raw) >= 8
            starts = [*range(0, len(raw) - 7, 8), len(raw) - 8]
            for w, at in enumerate(starts):
                self._prefix_words[c, w] = int.from_bytes(raw[at : at + 8], sys.byteorder)
        self._kinds = np.array([c.kind for c in columns], np.int64)
        self._slots = np.array([c.slot for c in columns], np.int64)
        self._max = np.array([int_range(c.name)[1] for c in columns], np.int64)
        self._protos, self._proto_at = words(PORT_PROTOS)
        self._units, self._unit_at = words(list(UNIT_SECONDS))
        self._factors = np.array(list(UNIT_SECONDS.values()), np.float64)
        self._allowed = _allowed()
        #: No frame holds more flows than this per byte: every column has one element per
        #: flow, none shorter than its prefix, a value byte and ``}``.
        self.bytes_per_flow = sum(len(p) + 2 for p in prefixes)

    def warm(self) -> None:
        """Compile the kernels (or load them from numba's cache) now, not on the first frame."""
        no = np.zeros((1, 1), np.int64)
        self.scan(np.frombuffer(b"", np.uint8), no, no.astype(np.float64), no, no, _NOTHING, 0, 0)
        self.text(no[0], no[0], _NOTHING, True)

    def scan(
        self,
        frame: np.ndarray,
        ints: np.ndarray,
        seconds: np.ndarray,
        starts: np.ndarray,
        lengths: np.ndarray,
        chars: np.ndarray,
        row: int,
        char: int,
    ) -> tuple[int, int, str]:
        """Scan ``frame`` (uint8) into the buffers from row ``row`` and ``chars[char:]``:
        (flows, end of the characters written, contract version), or flows -1 when the
        frame is not a well-formed ``NetAnom::flows`` message in the canonical layout. The
        buffers must have room for ``len(frame) // bytes_per_flow`` more rows and
        ``len(frame)`` more characters."""
        out = np.empty(3, np.int64)  # (per call: clients on other threads scan at once)
        n = _scan(
            frame,
            self._head,
            self._between,
            self._vec_open,
            self._tail,
            self._prefix_words,
            self._prefix_at,
            self._kinds,
            self._slots,
            self._max,
            self._protos,
            self._proto_at,
            self._units,
            self._unit_at,
            self._factors,
            self._allowed,
            ints,
            seconds,
            starts,
            lengths,
            chars,
            row,
            char,
            out,
        )
        if n < 0:
            return -1, char, ""
        return int(n), int(out[2]), frame[out[0] : out[1]].tobytes().decode("ascii")

    def text(
        self, starts: np.ndarray, lengths: np.ndarray, chars: np.ndarray, empty_is_null: bool
    ) -> pa.Array:
        """The string array of the spans ``chars[starts[r]:starts[r] + lengths[r]]``; with
        ``empty_is_null``, an empty span is a null (Zeek's unset ``string``)."""
        n = len(starts)
        offsets = np.empty(n + 1, np.int32)
        data = np.empty(int(lengths.sum()), np.uint8)
        valid = np.empty((n + 7) // 8 if empty_is_null else 0, np.uint8)
        nulls = _gather(starts, lengths, chars, offsets, data, valid)
        bitmap = pa.py_buffer(valid) if nulls else None
        return pa.StringArray.from_buffers(
            n, pa.py_buffer(offsets), pa.py_buffer(data), bitmap, nulls
        )


def _allowed() -> np.ndarray:
    """The bytes a string (row 0) and an address (row 1) may hold in the canonical layout:
    printable ASCII but a backslash; an address only ``0-9 : . A-F a-f``."""
    table = np.zeros((2, 256), np.bool_)
    table[0, 32:127] = True
    table[0, ord("\\")] = False
    for ch in b"0123456789:.ABCDEFabcdef":
        table[1, ch] = True
    return table


# -- the kernel -----------------------------------------------------------------------------
# One function walks the values: numba counts references to the arrays passed to a helper,
# and those atomic counts cost more than the scan itself when paid per value.


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _expect(buf: np.ndarray, i: int, lit: np.ndarray) -> int:  # pragma: no cover - compiled
    """The index after ``lit`` at ``i``, or -1."""
    m: int = lit.shape[0]
    if i < 0 or i + m > buf.shape[0]:
        return -1
    for k in range(m):
        if buf[i + k] != lit[k]:
            return -1
    return i + m


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _string_end(buf: np.ndarray, i: int) -> int:  # pragma: no cover - compiled
    """The index of the closing quote of the string opening at ``i`` (printable ASCII without
    escapes), or -1."""
    n = buf.shape[0]
    if i < 0 or i >= n or buf[i] != 34:  # "
        return -1
    for j in range(i + 1, n):
        c = buf[j]
        if c == 34:
            return j
        if c < 32 or c >= 127 or c == 92:  # control, non-ASCII, backslash
            return -1
    return -1


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _scan(
    buf: np.ndarray,
    head: np.ndarray,
    between: np.ndarray,
    vec_open: np.ndarray,
    tail: np.ndarray,
    prefix_words: np.ndarray,
    prefix_at: np.ndarray,
    kinds: np.ndarray,
    slots: np.ndarray,
    most: np.ndarray,
    protos: np.ndarray,
    proto_at: np.ndarray,
    units: np.ndarray,
    unit_at: np.ndarray,
    factors: np.ndarray,
    allowed: np.ndarray,
    ints: np.ndarray,
    seconds: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    chars: np.ndarray,
    row0: int,
    char0: int,
    out: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """Flows read (-1: not taken); ``out``: the version's span and the end of ``chars``."""
    n = buf.shape[0]
    cap = starts.shape[1]  # (every store has this many rows)
    at = char0
    end = _string_end(buf, _expect(buf, 0, head))  # the topic
    version = _expect(buf, end + 1, between) if end >= 0 else -1
    end = _string_end(buf, version)
    if end < 0 or end + 1 >= n or buf[end + 1] != 125:  # }
        return -1
    out[0], out[1] = version + 1, end
    i = end + 2
    rows = -1
    for c in range(kinds.shape[0]):
        i = _expect(buf, i, vec_open)
        if i < 0 or i >= n:
            return -1
        kind, slot = kinds[c], slots[c]
        p0, p1 = prefix_at[c], prefix_at[c + 1]
        whole_words = (p1 - p0) // 8  # whole words, then the word ending the prefix
        k = 0
        if buf[i] == 93:  # ]: no flows
            i += 1
        else:
            while True:
                row = row0 + k
                if row >= cap or i + p1 - p0 > n:
                    return -1
                for w in range(whole_words):
                    if word_at(buf, i + 8 * w) != prefix_words[c, w]:
                        return -1
                if word_at(buf, i + p1 - p0 - 8) != prefix_words[c, whole_words]:
                    return -1
                i += p1 - p0
                if kind == 0:  # COUNT: 0, or up to 18 digits without a leading zero
                    j, v = i, 0
                    while j < n and 48 <= buf[j] <= 57:
                        if j - i == 18:
                            return -1
                        v = v * 10 + (buf[j] - 48)
                        j += 1
                    if j == i or (buf[i] == 48 and j - i > 1) or v > most[c]:
                        return -1
                    ints[slot, row] = v
                    i = j
                elif kind == 1 or kind == 2:  # PORT "80/tcp", TIMESPAN "-1500ms"
                    if i >= n or buf[i] != 34:
                        return -1
                    j, v, sign = i + 1, 0, 1
                    if kind == 2 and j < n and buf[j] == 45:  # -
                        sign = -1
                        j += 1
                    d = j
                    while j < n and 48 <= buf[j] <= 57:
                        if j - d == (5 if kind == 1 else 18):
                            return -1
                        v = v * 10 + (buf[j] - 48)
                        j += 1
                    if j == d or j >= n:
                        return -1
                    if kind == 1:
                        if buf[j] != 47 or v > 65535:  # /
                            return -1
                        j += 1
                    e = j
                    while e < n and buf[e] != 34:
                        e += 1
                    if e >= n:
                        return -1
                    names, name_at = (protos, proto_at) if kind == 1 else (units, unit_at)
                    w = name_at.shape[0] - 2
                    while w >= 0:  # which word buf[j:e] is
                        if name_at[w + 1] - name_at[w] == e - j:
                            q = 0
                            while q < e - j and buf[j + q] == names[name_at[w] + q]:
                                q += 1
                            if q == e - j:
                                break
                        w -= 1
                    if w < 0:
                        return -1
                    if kind == 1:
                        ints[slot, row] = v
                    else:
                        seconds[slot, row] = np.float64(sign * v) * factors[w]
                    i = e + 1
                else:  # TEXT, ADDRESS: a string; REAL: a JSON number. Copied into chars.
                    if kind == 5:
                        first = j = i
                        if j < n and buf[j] == 45:
                            j += 1
                        d = j
                        while j < n and 48 <= buf[j] <= 57:
                            j += 1
                        whole = j - d
                        if whole == 0 or (buf[d] == 48 and whole > 1):
                            return -1
                        # A JSON integer is read as an integer by the general path: one of
                        # more than 15 digits may not be a double exactly, and "-0" is 0.
                        if (j >= n or (buf[j] != 46 and buf[j] != 101 and buf[j] != 69)) and (
                            whole > 15 or (d > first and whole == 1 and buf[d] == 48)
                        ):
                            return -1
                        if j < n and buf[j] == 46:  # .
                            j += 1
                            d = j
                            while j < n and 48 <= buf[j] <= 57:
                                j += 1
                            if j == d:
                                return -1
                        exp = 0
                        if j < n and (buf[j] == 101 or buf[j] == 69):  # e E
                            j += 1
                            negative = j < n and buf[j] == 45
                            if j < n and (buf[j] == 43 or buf[j] == 45):
                                j += 1
                            d = j
                            while j < n and 48 <= buf[j] <= 57:
                                if j - d == 3:
                                    return -1
                                exp = exp * 10 + (buf[j] - 48)
                                j += 1
                            if j == d:
                                return -1
                            if negative:
                                exp = -exp
                        if whole + exp > 308:  # could be beyond a double: the general path
                            return -1
                        last = j
                        for q in range(last - first):
                            chars[at + q] = buf[first + q]
                    else:
                        if i >= n or buf[i] != 34:
                            return -1
                        first = j = i + 1
                        ok = allowed[kind - 3]
                        while j < n and buf[j] != 34:  # (copied as it is checked)
                            ch = buf[j]
                            if not ok[ch]:
                                return -1
                            chars[at + j - first] = ch
                            j += 1
                        if j >= n or (kind == 4 and j == first):
                            return -1
                        last = j
                        j += 1
                    starts[slot, row] = at
                    lengths[slot, row] = last - first
                    at += last - first
                    i = j
                if i + 1 >= n or buf[i] != 125:  # }
                    return -1
                k += 1
                i += 1
                if buf[i] == 44:  # ,
                    i += 1
                elif buf[i] == 93:  # ]
                    i += 1
                    break
                else:
                    return -1
        if i >= n or buf[i] != 125:
            return -1
        i += 1
        if rows < 0:
            rows = k
        elif k != rows:
            return -1
    i = _expect(buf, i, tail)
    if i < 0:
        return -1
    while i < n and (buf[i] == 32 or buf[i] == 9 or buf[i] == 10 or buf[i] == 13):
        i += 1
    if i != n:
        return -1
    out[2] = at
    return rows


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _gather(
    starts: np.ndarray,
    lengths: np.ndarray,
    chars: np.ndarray,
    offsets: np.ndarray,
    data: np.ndarray,
    valid: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """The spans as Arrow string buffers; spans that follow each other in ``chars`` (a
    frame's values of one column do) are copied as one run. With ``valid`` (one bit a row),
    empty spans are marked null there: returns how many (0 without ``valid``)."""
    at = 0
    offsets[0] = 0
    run_from, run_to, run = 0, 0, 0
    for r in range(starts.shape[0]):
        s, m = starts[r], lengths[r]
        if s != run_from + run:
            data[run_to : run_to + run] = chars[run_from : run_from + run]
            run_from, run_to, run = s, at, 0
        run += m
        at += m
        offsets[r + 1] = at
    data[run_to : run_to + run] = chars[run_from : run_from + run]
    if valid.shape[0] == 0:
        return 0
    nulls = 0
    for b in range(valid.shape[0]):
        bits = 0
        for k in range(min(8, starts.shape[0] - 8 * b)):
            if lengths[8 * b + k] > 0:
                bits |= 1 << k
            else:
                nulls += 1
        valid[b] = bits
    return nulls
