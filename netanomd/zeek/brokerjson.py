"""Broker's WebSocket JSON encoding (``/v1/messages/json``): values, events, and the contract's
events, all built and parsed from their declarations in :mod:`netanomd.zeek.api`.

Every value is ``{"@data-type": T, "data": V}``; an event is the vector ``[count 1 (format),
count 1 (event), [name, [args...], (optional) [metadata...]]]`` inside a ``data-message`` with
a ``topic``. Events from Zeek 8 may come with 2 or 3 elements in the inner vector; both are
accepted. Decoding never trusts the input: anything out of shape raises
:class:`DecodeError` saying what and where, and an event of another contract major version
raises :class:`VersionError`.

Plain values (what :func:`encode_event` takes and :func:`decode_event` returns, keyed by the
argument names of the declaration): ``string`` str, ``double`` float, ``count`` int, ``addr``
str, ``port`` ``(number, proto)``, ``interval`` seconds; a vector is a list of those.
``NetAnom::flows`` has its own columnar decoder (:class:`FlowsAccumulator`) for throughput: a
frame in the canonical layout Zeek writes is scanned straight into typed buffers
(:mod:`netanomd.zeek.flowscan`), any other goes through :func:`columns_of` and Arrow; both give
the same table.
"""

from __future__ import annotations

import datetime as dt
import re
import reprlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from netanomd.errors import InputError
from netanomd.flow import FlowBatch
from netanomd.sources import int_range, out_of_range
from netanomd.sources._text import string_scalar
from netanomd.zeek import api, flowscan
from netanomd.zeek.flowscan import PORT_PROTOS, UNIT_SECONDS

_TIMESPAN = re.compile(rf"^(-?\d+)({'|'.join(UNIT_SECONDS)})$")


class DecodeError(InputError):
    """A Broker message that is not what the contract says."""


class VersionError(DecodeError):
    """An event of a contract major version this side does not speak."""


_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 80
_SHOW.maxlevel = 3


def shown(value: Any) -> str:
    """A value of a message for an error: cut short, and never walked deeper than a few
    levels (a frame may nest a thousand)."""
    return _SHOW.repr(value)


# -- values --------------------------------------------------------------------------------
def timespan(text: str) -> float:
    m = _TIMESPAN.match(text)
    if not m:
        raise DecodeError(f"bad timespan {shown(text)}")
    return int(m.group(1)) * UNIT_SECONDS[m.group(2)]


def timestamp(text: str) -> float:
    t = dt.datetime.fromisoformat(text)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)  # Broker writes UTC without a zone
    return t.timestamp()


def encode_timespan(seconds: float) -> str:
    """The coarsest of s/ms/us/ns that loses nothing, as Broker writes (``0s``, ``1500ms``,
    ``211484us``)."""
    ns = round(seconds * 1e9)
    for unit, factor in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if ns % factor == 0:
            return f"{ns // factor}{unit}"
    return f"{ns}ns"


def wrap(kind: str, value: Any) -> dict[str, Any]:
    return {"@data-type": kind, "data": value}


def _unwrap(v: Any, kind: str, where: str) -> Any:
    if not isinstance(v, dict) or v.get("@data-type") != kind or "data" not in v:
        got = v.get("@data-type") if isinstance(v, dict) else type(v).__name__
        raise DecodeError(f"{where}: expected {kind}, got {shown(got)}")
    return v["data"]


# -- events --------------------------------------------------------------------------------
def event_message(topic: str, name: str, args: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "data-message",
        "topic": topic,
        "@data-type": "vector",
        "data": [
            wrap("count", 1),
            wrap("count", 1),
            wrap("vector", [wrap("string", name), wrap("vector", list(args))]),
        ],
    }


def parse_event(msg: Any) -> tuple[str, str, list[Any]]:
    """(topic, event name, wrapped arguments) of a data message carrying an event."""
    if not isinstance(msg, dict) or msg.get("type") != "data-message":
        raise DecodeError(f"not a data-message: {shown(msg)}")
    topic = msg.get("topic")
    if not isinstance(topic, str):
        raise DecodeError("data-message without a topic")
    outer = _unwrap(msg, "vector", "message")
    if not isinstance(outer, list) or len(outer) != 3:
        raise DecodeError("event vector must have 3 elements (format, type, event)")
    if _unwrap(outer[0], "count", "format") != 1 or _unwrap(outer[1], "count", "type") != 1:
        raise DecodeError("not a Zeek event (format/type are not 1/1)")
    inner = _unwrap(outer[2], "vector", "event")
    if not isinstance(inner, list) or len(inner) not in (2, 3):
        raise DecodeError("event must be [name, args] or [name, args, metadata]")
    name = _unwrap(inner[0], "string", "event name")
    args = _unwrap(inner[1], "vector", f"{name} arguments")
    if not isinstance(args, list):
        raise DecodeError(f"{name}: arguments are not a vector")
    return topic, name, args


# -- plain values <-> Broker JSON values, per Zeek type of the contract ---------------------
_PROTO = {"tcp", "udp", "icmp"}


def _port_text(value: tuple[int, str]) -> str:
    number, proto = value
    return f"{int(number)}/{proto if proto in _PROTO else '?'}"


def _port_value(text: Any) -> tuple[int, str]:
    if not isinstance(text, str):
        raise TypeError(f"not a port: {shown(text)}")
    number, _, proto = text.partition("/")
    if not number.isdigit() or int(number) > 65535 or proto not in PORT_PROTOS:
        raise TypeError(f"bad port {shown(text)}")
    return int(number), proto


def _checked(kind: type, what: str) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, kind):
            raise TypeError(f"not {what}: {shown(v)}")
        return v

    return check


def _real(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError(f"not a real: {shown(v)}")
    return float(v)


def _span(v: Any) -> float:
    if not isinstance(v, str):
        raise TypeError(f"not a timespan: {shown(v)}")
    try:
        return timespan(v)
    except DecodeError as exc:
        raise TypeError(str(exc)) from None


#: Zeek type -> (plain value -> JSON data, JSON data -> plain value).
_CODECS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "string": (str, _checked(str, "a string")),
    "double": (float, _real),
    "count": (int, _checked(int, "a count")),
    "addr": (str, _checked(str, "an address")),
    "port": (_port_text, _port_value),
    "interval": (encode_timespan, _span),
}


def encode_event(spec: api.EventSpec, values: Mapping[str, Any], topic: str) -> dict[str, Any]:
    """``spec`` as a data message; ``values`` holds every argument but ``version`` by name."""
    args = []
    for name, typ in spec.args:
        value = api.VERSION if name == "contract" else values[name]
        kind = api.element_type(typ)
        encode, tag = _CODECS[kind][0], api.BROKER_TYPES[kind]
        if api.is_vector(typ):
            args.append(wrap("vector", [wrap(tag, encode(v)) for v in value]))
        else:
            args.append(wrap(tag, encode(value)))
    return event_message(topic, spec.name, args)


def check_version(spec: api.EventSpec, args: Sequence[Any]) -> None:
    """Refuse an event whose first argument is not a version of this contract's major."""
    first = args[0] if args else None
    version = first.get("data") if isinstance(first, dict) else None
    if isinstance(first, dict) and first.get("@data-type") != "string":
        version = None
    problem = api.version_problem(version, spec.name)
    if problem:
        raise VersionError(problem)


def decode_event(spec: api.EventSpec, args: Sequence[Any]) -> dict[str, Any]:
    """The plain values of ``spec``'s arguments by name, every value's type checked."""
    check_version(spec, args)
    if len(args) != len(spec.args):
        raise DecodeError(f"{spec.name}: expected {len(spec.args)} arguments, got {len(args)}")
    out: dict[str, Any] = {}
    for (name, typ), arg in zip(spec.args, args, strict=True):
        kind = api.element_type(typ)
        where = f"{spec.name} {name}"
        decode = _CODECS[kind][1]
        try:
            if api.is_vector(typ):
                out[name] = [decode(v) for v in _values(arg, api.BROKER_TYPES[kind], where)]
            else:
                out[name] = decode(_unwrap(arg, api.BROKER_TYPES[kind], where))
        except TypeError as exc:
            raise DecodeError(f"{where}: {exc}") from None
    return out


# -- NetAnom::flows, column-wise -------------------------------------------------------------
def _values(arg: Any, kind: str, where: str) -> list[Any]:
    """The plain values of a vector whose elements must all be of ``kind``."""
    items = _unwrap(arg, "vector", where)
    if not isinstance(items, list):
        raise DecodeError(f"{where}: not a vector")
    try:
        kinds = {v["@data-type"] for v in items}
        values = [v["data"] for v in items]
    except (TypeError, KeyError):  # not all Broker values (or a tag that is not a string)
        kinds = set()
    if kinds == {kind} or not items:
        return values
    for i, v in enumerate(items):
        if not isinstance(v, dict) or "@data-type" not in v or "data" not in v:
            raise DecodeError(f"{where}[{i}]: not a Broker value")
        if v["@data-type"] != kind:
            raise DecodeError(f"{where}[{i}]: expected {kind}, got {shown(v['@data-type'])}")
    raise DecodeError(f"{where}: not a vector of {kind}")  # pragma: no cover - found above


def _array(values: list[Any], typ: pa.DataType, where: str) -> pa.Array:
    try:
        return pa.array(values, typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        raise DecodeError(f"{where}: {exc}") from None


def _counts(values: list[Any], name: str, where: str) -> pa.Array:
    """Counts as int64, each in the range of its flow column (:func:`int_range`)."""
    lo, hi = int_range(name)
    try:
        arr = pa.array(values, pa.int64())
        bad = out_of_range(name, arr)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        ok = (isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in values)
        bad = [next((i for i, good in enumerate(ok) if not good), 0)]
    if bad:
        value = shown(values[bad[0]])
        raise DecodeError(f"{where}[{bad[0]}]: {value} is not a count from {lo} to {hi}")
    return arr


def _bad(where: str, what: str, arr: pa.Array, ok: pa.Array) -> DecodeError:
    """The error naming the first element of ``arr`` that is not ``ok``."""
    i = pc.fill_null(ok, False).to_pylist().index(False)
    return DecodeError(f"{where}[{i}]: bad {what} {shown(arr[i].as_py())}")


_PROTOS = pa.array(PORT_PROTOS)


def _ports(arr: pa.Array, where: str) -> pa.Array:
    """``"80/tcp"`` -> 80, checking the number and the protocol of every element."""
    parts = pc.split_pattern(arr, "/", max_splits=1)
    two = pc.equal(pc.list_value_length(parts), 2)
    if not pc.all(two).as_py():
        raise _bad(where, "port", arr, two)
    number, proto = pc.list_element(parts, 0), pc.list_element(parts, 1)
    # ASCII digits only: utf8_is_digit takes "٣", which the cast then refuses.
    ok = pc.and_(
        pc.match_substring_regex(number, r"^[0-9]{1,5}$"), pc.is_in(proto, value_set=_PROTOS)
    )
    if not pc.all(ok).as_py():
        raise _bad(where, "port", arr, ok)
    ports = number.cast(pa.int32())
    ok = pc.less_equal(ports, 65535)
    if not pc.all(ok).as_py():
        raise _bad(where, "port", arr, ok)
    return ports


def _timespans(arr: pa.Array, where: str) -> pa.Array:
    """Broker timespans (``"1500ms"``, ``"-3s"``) -> seconds."""
    number = pc.utf8_rtrim(arr, characters="abcdefghijklmnopqrstuvwxyz")
    unit = pc.index_in(pc.utf8_ltrim(arr, characters="-0123456789"), value_set=_SPAN_UNITS)
    ok = pc.and_(pc.is_valid(unit), pc.match_substring_regex(number, r"^-?[0-9]{1,18}$"))
    if not pc.all(ok).as_py():
        raise _bad(where, "timespan", arr, ok)
    try:
        n = number.cast(pa.int64())
    except pa.ArrowInvalid as exc:
        raise DecodeError(f"{where}: {exc}") from None
    # (beyond 2**53 a count of units is rounded to the nearest double, as the scanner does)
    return pc.multiply(n.cast(pa.float64(), safe=False), pc.take(_SPAN_FACTORS, unit))


_ADDRESS = r"^[0-9A-Fa-f:.]+$"
_SPAN_UNITS = pa.array(list(UNIT_SECONDS))
_SPAN_FACTORS = pa.array(list(UNIT_SECONDS.values()), pa.float64())


#: (argument name, Broker type of its elements) of every per-flow column of NetAnom::flows.
_COLUMNS = [
    (name, api.BROKER_TYPES[api.element_type(typ)])
    for name, typ in api.FLOWS.args
    if api.is_vector(typ)
]
#: The string columns where Zeek's empty string means unset (null in a FlowBatch).
_EMPTY_IS_NULL = {"service", "conn_state", "history", "community_id"}


def columns_of(args: list[Any]) -> list[list[Any]]:
    """The plain values of each ``NetAnom::flows`` column, every element's type checked (the
    version checked first)."""
    check_version(api.FLOWS, args)
    if len(args) != len(api.FLOWS.args):
        raise DecodeError(
            f"NetAnom::flows: expected {len(api.FLOWS.args)} arguments, got {len(args)}"
        )
    return [
        _values(arg, kind, f"NetAnom::flows {name}")
        for (name, kind), arg in zip(_COLUMNS, args[1:], strict=True)
    ]


class FlowsAccumulator:
    """Collects the flows of several ``NetAnom::flows`` events and decodes them as one batch.

    :meth:`add_frame` takes a frame in Broker's canonical layout straight into typed buffers
    (:class:`~netanomd.zeek.flowscan.FlowsScanner`: no Python object per value);
    :meth:`add_columns` takes the checked column values of an event the general decoder
    (:func:`columns_of`) read, converting them with Arrow. Either refuses a bad event without
    touching what was collected; :meth:`build` hands the batch over and starts the next one
    (the buffers are kept, unless a huge frame grew them).
    """

    def __init__(self, rows: int = 8192) -> None:
        _SCANNER.warm()
        self._size = rows
        self._allocate(rows, rows * 64)
        self._rows = 0  # scanned since the last piece
        self._char = 0
        #: Decoded columns, in arrival order (a piece per general-path event, one for the
        #: frames scanned between them).
        self._pieces: list[list[pa.Array]] = []
        self._decoded = 0
        self.events = 0
        #: The contract version of the last frame taken (accepted; others are checked).
        self._accepted = ""

    def __len__(self) -> int:
        return self._decoded + self._rows

    def add_frame(self, frame: bytes) -> bool:
        """Add a ``NetAnom::flows`` frame of this contract's major version in the canonical
        layout; False (nothing added) for any other frame, which the general path then
        decodes or names."""
        buf = np.frombuffer(frame, np.uint8)
        self._room(self._rows + len(buf) // _SCANNER.bytes_per_flow + 1, self._char + len(buf))
        n, char, version = _SCANNER.scan(
            buf,
            self._ints,
            self._seconds,
            self._starts,
            self._lengths,
            self._chars,
            self._rows,
            self._char,
        )
        if n < 0:
            return False
        if version != self._accepted:  # (frames of one Zeek carry one version)
            if api.version_problem(version, api.FLOWS.name):
                return False
            self._accepted = version
        self._rows += n
        self._char = char
        self.events += 1
        return True

    def add(self, args: list[Any]) -> int:
        """Add one event's arguments; returns its number of flows."""
        return self.add_columns(columns_of(args))

    def add_columns(self, columns: list[list[Any]]) -> int:
        """Add one event's column values, one list per column (type-checked already, as
        :func:`columns_of` returns them); every value is checked here."""
        n = len(columns[0])
        for (name, _), values in zip(_COLUMNS, columns, strict=True):
            if len(values) != n:
                raise DecodeError(f"NetAnom::flows: {name} has {len(values)} elements, not {n}")
        if n:  # (empty vectors: nothing to check)
            piece = [
                _column(name, kind, values)
                for (name, kind), values in zip(_COLUMNS, columns, strict=True)
            ]
            self._flush()
            self._pieces.append(piece)
            self._decoded += n
        self.events += 1
        return n

    def build(self) -> FlowBatch:
        """Everything added as one FlowBatch (source ``zeek``); the accumulator is empty after."""
        self._flush()
        pieces, n = self._pieces, self._decoded
        self._pieces, self._decoded, self.events = [], 0, 0
        if self._starts.shape[1] > 8 * self._size or len(self._chars) > 512 * self._size:
            self._allocate(self._size, self._size * 64)  # (a huge frame is not kept around)
        if n == 0:
            return FlowBatch.empty()
        table: dict[str, pa.Array] = {}
        for i, (name, _) in enumerate(_COLUMNS):
            table[name] = (
                pa.concat_arrays([p[i] for p in pieces]) if len(pieces) > 1 else pieces[0][i]
            )
        table["source"] = pa.repeat(string_scalar("zeek"), n)
        return FlowBatch.from_table(pa.table(table))

    def _flush(self) -> None:
        """The scanned rows as a piece of decoded columns (copies: the buffers are reused)."""
        n = self._rows
        if n == 0:
            return
        piece = []
        for col in _SCANNER.columns:
            if col.kind == flowscan.COUNT:
                piece.append(pa.array(self._ints[col.slot, :n].copy()))
            elif col.kind == flowscan.PORT:
                piece.append(pa.array(self._ints[col.slot, :n].astype(np.int32)))
            elif col.kind == flowscan.TIMESPAN:
                piece.append(pa.array(self._seconds[col.slot, :n].copy()))
            else:
                text = _SCANNER.text(
                    self._starts[col.slot, :n],
                    self._lengths[col.slot, :n],
                    self._chars,
                    col.name in _EMPTY_IS_NULL,
                )
                piece.append(text.cast(pa.float64()) if col.kind == flowscan.REAL else text)
        self._pieces.append(piece)
        self._decoded += n
        self._rows = self._char = 0

    def _allocate(self, rows: int, chars: int) -> None:
        scan = _SCANNER
        self._ints = np.empty((scan.n_ints, rows), np.int64)
        self._seconds = np.empty((scan.n_seconds, rows), np.float64)
        self._starts = np.empty((scan.n_spans, rows), np.int64)
        self._lengths = np.empty((scan.n_spans, rows), np.int64)
        self._chars = np.empty(chars, np.uint8)

    def _room(self, rows: int, chars: int) -> None:
        """Grow the buffers (keeping what they hold) to take ``rows`` rows, ``chars`` bytes."""
        cap = self._starts.shape[1]
        if rows > cap:
            cap = max(rows, 2 * cap)
            for attr in ("_ints", "_seconds", "_starts", "_lengths"):
                old = getattr(self, attr)
                new = np.empty((old.shape[0], cap), old.dtype)
                new[:, : self._rows] = old[:, : self._rows]
                setattr(self, attr, new)
        if chars > len(self._chars):
            new_chars = np.empty(max(chars, 2 * len(self._chars)), np.uint8)
            new_chars[: self._char] = self._chars[: self._char]
            self._chars = new_chars


def _column(name: str, kind: str, values: list[Any]) -> pa.Array:
    """One column of an event from the general decoder, every value checked and converted
    as :class:`~netanomd.zeek.flowscan.FlowsScanner` converts it."""
    where = f"NetAnom::flows {name}"
    if kind == "count":
        return _counts(values, name, where)
    if kind == "real":
        return _array(values, pa.float64(), where)
    arr = _array(values, pa.string(), where)
    if kind == "address":
        ok = pc.match_substring_regex(arr, _ADDRESS)
        if not pc.all(ok).as_py():
            bad = ok.to_pylist().index(False)
            raise DecodeError(f"{where}[{bad}]: bad address {shown(values[bad])}")
    elif kind == "port":
        return _ports(arr, where)
    elif kind == "timespan":
        return _timespans(arr, where)
    elif name in _EMPTY_IS_NULL:
        return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
    return arr


_SCANNER = flowscan.FlowsScanner(event_message)


def flows_to_batch(args: list[Any]) -> FlowBatch:
    """Decode the arguments of one ``NetAnom::flows`` event into a FlowBatch."""
    acc = FlowsAccumulator()
    acc.add(args)
    return acc.build()


def loads(frame: str | bytes) -> Any:
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"frame is not JSON ({exc})") from exc
