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
``NetAnom::flows`` has its own columnar decoder (:class:`FlowsAccumulator`) for throughput.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
import reprlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from netanomd.errors import InputError
from netanomd.flow import FlowBatch
from netanomd.sources import int_range, out_of_range
from netanomd.zeek import api

_TIMESPAN = re.compile(r"^(-?\d+)(ns|us|ms|s|min|h|d)$")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


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
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


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
    if not number.isdigit() or int(number) > 65535 or proto not in (*_PROTO, "unknown", "?"):
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


_PROTOS = pa.array(["tcp", "udp", "icmp", "unknown", "?"])


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
    return pc.multiply(n.cast(pa.float64()), pc.take(_SPAN_FACTORS, unit))


_ADDRESS = r"^[0-9A-Fa-f:.]+$"
_SPAN_UNITS = pa.array(["ns", "us", "ms", "s", "min", "h", "d"])
_SPAN_FACTORS = pa.array([_UNIT_SECONDS[u] for u in _SPAN_UNITS.to_pylist()], pa.float64())


#: (argument name, Broker type of its elements) of every per-flow column of NetAnom::flows.
_COLUMNS = [
    (name, api.BROKER_TYPES[api.element_type(typ)])
    for name, typ in api.FLOWS.args
    if api.is_vector(typ)
]
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


# -- fast path: the common NetAnom::flows frame, decoded and type-checked by msgspec ----------
def _value_struct(kind: str, typ: type) -> Any:
    return msgspec.defstruct(
        f"B_{kind}", [("data", typ)], tag=kind, tag_field="@data-type", frozen=True, gc=False
    )


_PY_TYPES = {
    "count": int,
    "string": str,
    "address": str,
    "port": str,
    "real": float,
    "timespan": str,
}
_VALUE = {kind: _value_struct(kind, typ) for kind, typ in _PY_TYPES.items()}


def _vector_struct(name: str, element: Any) -> Any:
    return msgspec.defstruct(name, [("data", element)], tag="vector", tag_field="@data-type")


_ARGS = _vector_struct(
    "B_flows_args",
    tuple.__class_getitem__(
        (
            _VALUE["string"],
            *(_vector_struct(f"B_vec_{n}", list.__class_getitem__(_VALUE[k])) for n, k in _COLUMNS),
        )
    ),
)
_EVENT = _vector_struct("B_flows_event", tuple.__class_getitem__((_VALUE["string"], _ARGS)))
_FlowsMessage = msgspec.defstruct(
    "B_flows_message",
    [
        ("type", str),
        ("topic", str),
        ("data", tuple.__class_getitem__((_VALUE["count"], _VALUE["count"], _EVENT))),
        ("data_type", str, msgspec.field(name="@data-type", default="")),
    ],
)
_DATA = operator.attrgetter("data")
_FLOWS_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_FlowsMessage)


def fast_flows_columns(frame: str | bytes) -> list[list[Any]] | None:
    """The column values of a ``NetAnom::flows`` data message of this contract version in its
    usual shape (two-element event, every value of the declared Broker type), decoded and
    checked in one pass; None for anything else (errors, other events or versions, metadata,
    malformed frames), which then takes the general path with its precise error messages."""
    try:
        m = _FLOWS_DECODER.decode(frame)
    except (msgspec.DecodeError, RecursionError):  # too deep for msgspec: the general path
        return None
    head, kind, event = m.data
    if (
        m.type != "data-message"
        or m.data_type != "vector"
        or head.data != 1
        or kind.data != 1
        or event.data[0].data != api.FLOWS.name
    ):
        return None
    version, *columns = event.data[1].data
    if api.version_problem(version.data, api.FLOWS.name):
        return None
    return [list(map(_DATA, arg.data)) for arg in columns]


class FlowsAccumulator:
    """Collects the flows of several ``NetAnom::flows`` events and decodes them as one batch.

    :meth:`add` does the per-value work that needs Python (unwrapping, Broker type of every
    element, equal vector lengths) and refuses a bad event without touching what was
    collected; :meth:`build` validates and converts whole columns with Arrow (addresses, ports,
    timespans), so the per-event cost stays small when frames carry ~100 flows.
    """

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {name: [] for name, _ in _COLUMNS}
        self.events = 0

    def __len__(self) -> int:
        return len(self.columns["uid"])

    def add(self, args: list[Any]) -> int:
        """Add one event's arguments; returns its number of flows."""
        return self.add_columns(columns_of(args))

    def add_columns(self, columns: list[list[Any]]) -> int:
        """Add one event's column values, one list per column (type-checked already)."""
        n = len(columns[0])
        for (name, _), values in zip(_COLUMNS, columns, strict=True):
            if len(values) != n:
                raise DecodeError(f"NetAnom::flows: {name} has {len(values)} elements, not {n}")
        for (name, _), values in zip(_COLUMNS, columns, strict=True):
            self.columns[name].extend(values)
        self.events += 1
        return n

    def build(self) -> FlowBatch:
        """Decode everything added into one FlowBatch (source ``zeek``)."""
        table: dict[str, pa.Array] = {}
        n = len(self)
        if n == 0:  # events with empty vectors: nothing to check
            return FlowBatch.empty()
        for name, kind in _COLUMNS:
            where = f"NetAnom::flows {name}"
            values = self.columns[name]
            if kind == "count":
                table[name] = _counts(values, name, where)
                continue
            if kind == "real":
                table[name] = _array(values, pa.float64(), where)
                continue
            arr = _array(values, pa.string(), where)
            if kind == "address":
                ok = pc.match_substring_regex(arr, _ADDRESS)
                if not pc.all(ok).as_py():
                    bad = ok.to_pylist().index(False)
                    raise DecodeError(f"{where}[{bad}]: bad address {shown(values[bad])}")
                table[name] = arr
            elif kind == "port":
                table[name] = _ports(arr, where)
            elif kind == "timespan":
                table[name] = _timespans(arr, where)
            elif name in _EMPTY_IS_NULL:
                table[name] = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
            else:
                table[name] = arr
        table["source"] = pa.array(["zeek"] * n, pa.string())
        return FlowBatch.from_table(pa.table(table))


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
