"""The contract's events as the native Broker bindings present them (Python values), built and
parsed from their declarations in :mod:`netanomd.zeek.api`.

``broker.Subscriber.get()`` returns ``(topic, data)`` with ``data`` already converted to Python:
an event is ``(Count(1), Count(1), (name, args[, metadata]))``; ``count`` arrives as
``broker.Count`` (``.value``), ``port`` as ``broker.Port`` (``.number()``, ``.type()``),
``addr`` as :mod:`ipaddress` objects, ``interval`` as ``timedelta``, ``double`` as float,
vectors as tuples. Decoding reads that shape directly (no round trip through
``broker.zeek.Event``) and never trusts it: anything out of shape raises
:class:`~netanomd.zeek.brokerjson.DecodeError` naming the argument and element, and an event of
another contract major version raises :class:`~netanomd.zeek.brokerjson.VersionError`.

Plain values are those of :mod:`netanomd.zeek.brokerjson` (ports as ``(number, proto)``,
intervals in seconds, addresses as text).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

import pyarrow as pa

from netanomd.flow import FlowBatch
from netanomd.sources import MAX_COUNT
from netanomd.zeek import api
from netanomd.zeek.brokerjson import DecodeError, VersionError


def _count(v: Any) -> int:
    value = getattr(v, "value", v)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"not a count: {v!r}")
    if value > MAX_COUNT:  # a count the features cannot hold exactly is corrupt
        raise TypeError(f"count {value} is above {MAX_COUNT}")
    return value


def _port(v: Any) -> tuple[int, str]:
    number = getattr(v, "number", None)
    if number is None:
        raise TypeError(f"not a port: {v!r}")
    proto = str(v).rpartition("/")[2]  # "80/tcp" in both binding generations
    return int(number()), proto if proto in _PORT_TYPES else "?"


def _double(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError(f"not a double: {v!r}")
    return float(v)


def _interval(v: Any) -> float:
    if not isinstance(v, dt.timedelta):
        raise TypeError(f"not an interval: {v!r}")
    return v.total_seconds()


def _addr(v: Any) -> str:
    if not isinstance(v, ipaddress.IPv4Address | ipaddress.IPv6Address):
        raise TypeError(f"not an addr: {v!r}")
    return str(v)


def _string(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"not a string: {v!r}")
    return v


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "string": _string,
    "double": _double,
    "addr": _addr,
    "port": _port,
    "interval": _interval,
    "count": _count,
}

_PORT_TYPES = {"tcp": "TCP", "udp": "UDP", "icmp": "ICMP"}


def _encoders(broker: ModuleType) -> dict[str, Callable[[Any], Any]]:
    def port(value: tuple[int, str]) -> Any:
        number, proto = value
        return broker.Port(int(number), getattr(broker.Port, _PORT_TYPES.get(proto, "Unknown")))

    return {
        "string": str,
        "double": float,
        "addr": ipaddress.ip_address,
        "port": port,
        "interval": lambda s: dt.timedelta(seconds=s),
        "count": lambda n: broker.Count(int(n)),
    }


def encode_event(broker: ModuleType, spec: api.EventSpec, values: Mapping[str, Any]) -> Any:
    """``spec`` as a ``broker.zeek.Event``; ``values`` holds every argument but ``version``."""
    enc = _encoders(broker)
    args = []
    for name, typ in spec.args:
        value = api.VERSION if name == "contract" else values[name]
        encode = enc[api.element_type(typ)]
        args.append(tuple(map(encode, value)) if api.is_vector(typ) else encode(value))
    return broker.zeek.Event(spec.name, *args)


def parse_event(data: Any) -> tuple[str, Sequence[Any]]:
    """(event name, arguments) of a Zeek event message."""
    if not isinstance(data, tuple | list) or len(data) != 3:
        raise DecodeError("event message must be (format, type, event)")
    try:
        fmt, kind = _count(data[0]), _count(data[1])
    except TypeError as exc:
        raise DecodeError(f"event header: {exc}") from None
    if (fmt, kind) != (1, 1):
        raise DecodeError("not a Zeek event (format/type are not 1/1)")
    inner = data[2]
    if not isinstance(inner, tuple | list) or len(inner) not in (2, 3):
        raise DecodeError("event must be (name, args) or (name, args, metadata)")
    name, args = inner[0], inner[1]
    if not isinstance(name, str) or not isinstance(args, tuple | list):
        raise DecodeError("event name must be a string and its arguments a vector")
    return name, args


def decode_event(spec: api.EventSpec, args: Sequence[Any]) -> dict[str, Any]:
    """The plain values of ``spec``'s arguments by name, every value's type checked (the
    version first, so an event of another major version is refused as such)."""
    problem = api.version_problem(args[0] if args else None, spec.name)
    if problem:
        raise VersionError(problem)
    if len(args) != len(spec.args):
        raise DecodeError(f"{spec.name}: expected {len(spec.args)} arguments, got {len(args)}")
    out: dict[str, Any] = {}
    n = -1
    for (name, typ), arg in zip(spec.args, args, strict=True):
        where = f"{spec.name} {name}"
        decode = _DECODERS[api.element_type(typ)]
        if not api.is_vector(typ):
            try:
                out[name] = decode(arg)
            except TypeError as exc:
                raise DecodeError(f"{where}: {exc}") from None
            continue
        if not isinstance(arg, tuple | list):
            raise DecodeError(f"{where}: expected a vector, got {type(arg).__name__}")
        if n < 0:
            n = len(arg)
        elif len(arg) != n:
            raise DecodeError(f"{spec.name}: {name} has {len(arg)} elements, not {n}")
        values = []
        for i, v in enumerate(arg):
            try:
                values.append(decode(v))
            except TypeError as exc:
                raise DecodeError(f"{where}[{i}]: {exc}") from None
        out[name] = values
    return out


_COUNTS = [name for name, typ in api.FLOWS.args if api.element_type(typ) == "count"]
_EMPTY_IS_NULL = ("service", "conn_state", "history", "community_id")


def flows_to_batch(args: Sequence[Any]) -> FlowBatch:
    """Decode ``NetAnom::flows`` arguments (native Broker values) into a FlowBatch."""
    cols = decode_event(api.FLOWS, args)
    del cols["contract"]
    table: dict[str, Any] = dict(cols)
    table["orig_p"] = [p for p, _ in cols["orig_p"]]
    table["resp_p"] = [p for p, _ in cols["resp_p"]]
    for key in _EMPTY_IS_NULL:
        table[key] = [s or None for s in cols[key]]
    for key in _COUNTS:
        table[key] = pa.array(cols[key], pa.int64())
    table["source"] = ["zeek"] * len(cols["uid"])
    return FlowBatch.from_table(pa.table(table))
