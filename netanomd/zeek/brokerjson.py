"""Broker's WebSocket JSON encoding (``/v1/messages/json``): values, events, and the contract's
two messages.

Every value is ``{"@data-type": T, "data": V}``; an event is the vector ``[count 1 (format),
count 1 (event), [name, [args...], (optional) [metadata...]]]`` inside a ``data-message`` with
a ``topic``. Events from Zeek 8 may come with 2 or 3 elements in the inner vector; both are
accepted. Decoding never trusts the input: anything out of shape raises
:class:`DecodeError` saying what and where.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa

from netanomd.errors import InputError
from netanomd.flow import FlowBatch
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
    """A Broker JSON message that is not what the contract says."""


# -- values --------------------------------------------------------------------------------
def timespan(text: str) -> float:
    m = _TIMESPAN.match(text)
    if not m:
        raise DecodeError(f"bad timespan {text!r}")
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
        raise DecodeError(f"{where}: expected {kind}, got {got!r}")
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
        raise DecodeError(f"not a data-message: {str(msg)[:80]!r}")
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


# -- the contract's messages ---------------------------------------------------------------
_PROTO = {"tcp", "udp", "icmp"}


def _vector(arg: Any, kind: str, where: str) -> list[Any]:
    items = _unwrap(arg, "vector", where)
    if not isinstance(items, list):
        raise DecodeError(f"{where}: not a vector")
    out = []
    for i, item in enumerate(items):
        out.append(_unwrap(item, kind, f"{where}[{i}]"))
    return out


def flows_to_batch(args: list[Any]) -> FlowBatch:
    """Decode the arguments of ``NetAnom::flows`` into a FlowBatch (source ``zeek``)."""
    spec = api.FLOWS.args
    if len(args) != len(spec):
        raise DecodeError(f"NetAnom::flows: expected {len(spec)} arguments, got {len(args)}")
    kinds = {
        "string": "string",
        "time": "timestamp",
        "addr": "address",
        "port": "port",
        "interval": "timespan",
        "count": "count",
    }
    cols: dict[str, list[Any]] = {}
    n = None
    for (name, typ), arg in zip(spec, args, strict=True):
        values = _vector(arg, kinds[typ.removeprefix("vector of ")], f"NetAnom::flows {name}")
        if n is None:
            n = len(values)
        elif len(values) != n:
            raise DecodeError(f"NetAnom::flows: {name} has {len(values)} elements, not {n}")
        cols[name] = values
    table: dict[str, Any] = {
        "uid": cols["uid"],
        "ts": [timestamp(t) for t in cols["ts"]],
        "orig_h": [str(ipaddress.ip_address(a)) for a in cols["orig_h"]],
        "resp_h": [str(ipaddress.ip_address(a)) for a in cols["resp_h"]],
        "orig_p": [_port(p) for p in cols["orig_p"]],
        "resp_p": [_port(p) for p in cols["resp_p"]],
        "proto": cols["proto"],
        "service": [s or None for s in cols["service"]],
        "duration": [timespan(d) for d in cols["duration"]],
        "conn_state": [s or None for s in cols["conn_state"]],
        "history": [s or None for s in cols["history"]],
        "community_id": [s or None for s in cols["community_id"]],
        "source": ["zeek"] * (n or 0),
    }
    for name in (
        "orig_bytes",
        "resp_bytes",
        "missed_bytes",
        "orig_pkts",
        "orig_ip_bytes",
        "resp_pkts",
        "resp_ip_bytes",
    ):
        table[name] = pa.array(cols[name], pa.int64())
    return FlowBatch.from_table(pa.table(table))


def _port(text: Any) -> int:
    if not isinstance(text, str) or "/" not in text:
        raise DecodeError(f"bad port {text!r}")
    number, _, _proto = text.partition("/")
    return int(number)


def verdict_message(
    uid: str,
    orig_h: str,
    orig_p: int,
    resp_h: str,
    resp_p: int,
    proto: str,
    score: float,
    threshold: float,
    model: str,
    reason: str,
    topic: str = api.VERDICTS_TOPIC,
) -> dict[str, Any]:
    """The ``NetAnom::verdict`` event as a data message."""
    p = proto if proto in _PROTO else "?"
    args = [
        wrap("string", uid),
        wrap("address", orig_h),
        wrap("port", f"{orig_p}/{p}"),
        wrap("address", resp_h),
        wrap("port", f"{resp_p}/{p}"),
        wrap("real", float(score)),
        wrap("real", float(threshold)),
        wrap("string", model),
        wrap("string", reason),
    ]
    return event_message(topic, api.VERDICT.name, args)


def flows_message(batch: FlowBatch, topic: str = api.FLOWS_TOPIC + "/0") -> dict[str, Any]:
    """``NetAnom::flows`` for a batch, exactly as the Zeek package publishes it (for tests and
    for replaying logs to a daemon)."""
    rows = batch.table.to_pylist()

    def vec(kind: str, values: list[Any]) -> dict[str, Any]:
        return wrap("vector", [wrap(kind, v) for v in values])

    def port(r: dict[str, Any], key: str) -> str:
        proto = r["proto"] if r["proto"] in _PROTO else "?"
        return f"{r[key] or 0}/{proto}"

    def ts(x: float) -> str:
        return (
            dt.datetime.fromtimestamp(x, dt.UTC)
            .replace(tzinfo=None)
            .isoformat(timespec="milliseconds")
        )

    args = (
        [
            vec("string", [r["uid"] for r in rows]),
            vec("timestamp", [ts(r["ts"]) for r in rows]),
            vec("address", [r["orig_h"] for r in rows]),
            vec("port", [port(r, "orig_p") for r in rows]),
            vec("address", [r["resp_h"] for r in rows]),
            vec("port", [port(r, "resp_p") for r in rows]),
            vec("string", [r["proto"] or "" for r in rows]),
            vec("string", [r["service"] or "" for r in rows]),
            vec("timespan", [encode_timespan(r["duration"] or 0.0) for r in rows]),
        ]
        + [
            vec("count", [r[k] or 0 for r in rows])
            if k not in ("conn_state", "history")
            else vec("string", [r[k] or "" for r in rows])
            for k in (
                "orig_bytes",
                "resp_bytes",
                "conn_state",
                "missed_bytes",
                "history",
                "orig_pkts",
                "orig_ip_bytes",
                "resp_pkts",
                "resp_ip_bytes",
            )
        ]
        + [vec("string", [r["community_id"] or "" for r in rows])]
    )
    return event_message(topic, api.FLOWS.name, args)


def loads(frame: str | bytes) -> Any:
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"frame is not JSON ({exc})") from exc
