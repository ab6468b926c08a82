"""The contract's messages as the native Broker bindings present them (Python values).

``broker.Subscriber.get()`` returns ``(topic, data)`` with ``data`` already converted to Python:
an event is ``(Count(1), Count(1), (name, args[, metadata]))``; ``count`` arrives as
``broker.Count`` (``.value``), ``port`` as ``broker.Port`` (``.number()``, ``.type()``),
``addr`` as :mod:`ipaddress` objects, ``time`` as aware ``datetime``, ``interval`` as
``timedelta``, vectors as tuples. Decoding reads that shape directly (no round trip through
``broker.zeek.Event``) and never trusts it: anything out of shape raises
:class:`~netanomd.zeek.brokerjson.DecodeError` naming the argument and element.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import pyarrow as pa

from netanomd.decision import Alert
from netanomd.flow import FlowBatch
from netanomd.zeek import api
from netanomd.zeek.brokerjson import DecodeError


def _count(v: Any) -> int:
    value = getattr(v, "value", v)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"not a count: {v!r}")
    return value


def _port(v: Any) -> int:
    number = getattr(v, "number", None)
    if number is None:
        raise TypeError(f"not a port: {v!r}")
    return int(number())


def _time(v: Any) -> float:
    if not isinstance(v, dt.datetime):
        raise TypeError(f"not a time: {v!r}")
    return v.timestamp() if v.tzinfo else v.replace(tzinfo=dt.UTC).timestamp()


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
    "time": _time,
    "addr": _addr,
    "port": _port,
    "interval": _interval,
    "count": _count,
}


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


def flows_to_batch(args: Sequence[Any]) -> FlowBatch:
    """Decode ``NetAnom::flows`` arguments (native Broker values) into a FlowBatch."""
    spec = api.FLOWS.args
    if len(args) != len(spec):
        raise DecodeError(f"NetAnom::flows: expected {len(spec)} arguments, got {len(args)}")
    cols: dict[str, list[Any]] = {}
    n = -1
    for (name, typ), arg in zip(spec, args, strict=True):
        where = f"NetAnom::flows {name}"
        if not isinstance(arg, tuple | list):
            raise DecodeError(f"{where}: expected a vector, got {type(arg).__name__}")
        if n < 0:
            n = len(arg)
        elif len(arg) != n:
            raise DecodeError(f"NetAnom::flows: {name} has {len(arg)} elements, not {n}")
        decode = _DECODERS[typ.removeprefix("vector of ")]
        values = []
        for i, v in enumerate(arg):
            try:
                values.append(decode(v))
            except TypeError as exc:
                raise DecodeError(f"{where}[{i}]: {exc}") from None
        cols[name] = values
    table: dict[str, Any] = dict(cols)
    for key in ("service", "conn_state", "history", "community_id"):
        table[key] = [s or None for s in cols[key]]
    for key in (
        "orig_bytes",
        "resp_bytes",
        "missed_bytes",
        "orig_pkts",
        "orig_ip_bytes",
        "resp_pkts",
        "resp_ip_bytes",
    ):
        table[key] = pa.array(cols[key], pa.int64())
    table["source"] = ["zeek"] * max(n, 0)
    return FlowBatch.from_table(pa.table(table))


_PORT_TYPES = {"tcp": "TCP", "udp": "UDP", "icmp": "ICMP"}


def _make_port(broker: ModuleType, number: int, proto: str) -> Any:
    kind = getattr(broker.Port, _PORT_TYPES.get(proto, "Unknown"))
    return broker.Port(number, kind)


def verdict_event(broker: ModuleType, alert: Alert) -> Any:
    """``NetAnom::verdict`` for an alert, as a ``broker.zeek.Event``."""
    f = alert.flow
    return broker.zeek.Event(
        api.VERDICT.name,
        f.uid,
        ipaddress.ip_address(f.orig_h),
        _make_port(broker, f.orig_p or 0, f.proto),
        ipaddress.ip_address(f.resp_h),
        _make_port(broker, f.resp_p or 0, f.proto),
        float(alert.score),
        float(alert.threshold),
        alert.model_id,
        alert.reason,
    )


def flows_event(broker: ModuleType, batch: FlowBatch) -> Any:
    """``NetAnom::flows`` for a batch exactly as ``api.zeek`` declares it (what the Zeek package
    publishes; used by tests and for replaying logs into a daemon)."""
    rows = batch.table.to_pylist()

    def count(key: str) -> tuple[Any, ...]:
        return tuple(broker.Count(int(r[key] or 0)) for r in rows)

    def text(key: str) -> tuple[str, ...]:
        return tuple(r[key] or "" for r in rows)

    return broker.zeek.Event(
        api.FLOWS.name,
        text("uid"),
        tuple(dt.datetime.fromtimestamp(r["ts"], dt.UTC) for r in rows),
        tuple(ipaddress.ip_address(r["orig_h"]) for r in rows),
        tuple(_make_port(broker, r["orig_p"] or 0, r["proto"]) for r in rows),
        tuple(ipaddress.ip_address(r["resp_h"]) for r in rows),
        tuple(_make_port(broker, r["resp_p"] or 0, r["proto"]) for r in rows),
        text("proto"),
        text("service"),
        tuple(dt.timedelta(seconds=r["duration"] or 0.0) for r in rows),
        count("orig_bytes"),
        count("resp_bytes"),
        text("conn_state"),
        count("missed_bytes"),
        text("history"),
        count("orig_pkts"),
        count("orig_ip_bytes"),
        count("resp_pkts"),
        count("resp_ip_bytes"),
        text("community_id"),
    )
