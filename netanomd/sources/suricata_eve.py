"""Suricata EVE JSON reader: ``event_type: flow`` records become flow records.

``alert`` events (Suricata's own signatures) go to the input's
:class:`~netanomd.sources.suricata_alerts.SignatureJoin`, which attaches them to the flow of the
same ``flow_id``. Other event types (dns, http, netflow, stats, ...) are skipped and counted per
type in ``stats.skipped``. A block of lines (a file's long blocks :data:`PIECE` lines at a
time; text as read, no object per line) is decoded at once: the flow events
:mod:`~netanomd.sources.evescan` reads (Suricata's own layout and any plain re-encoding of it)
are scanned straight into typed columns in one numba pass; the other lines go to the general
decoder (one msgspec ``decode_lines`` call into typed structs that read only the fields below
and check their types and ranges, each field read off the structs in C, times cast by Arrow),
which decodes a block holding a bad line line by line, to name the line and what is wrong with
it (``flow event missing or bad field (src_port: 70000 is not an integer from 0 to 65535)``).
Both end in the same columns (conn_state and history: :mod:`~netanomd.sources.eve_states`);
the rows keep the lines' order.
Mapping:

* ``src_*`` is the originator, ``dest_*`` the responder (IPv6 addresses in their canonical
  form, as Zeek writes them: :func:`netanomd.flow.canonical_addresses`); ``proto`` is lowercased;
  ``app_proto`` becomes ``service`` (``failed`` and absent become null). ICMP has no ports:
  ``icmp_type`` and ``icmp_code`` take their places, as Zeek puts them in ``orig_p``/``resp_p``.
* ``flow.start`` is ``ts`` (epoch seconds; EVE's ``+0200``-style offsets are honoured);
  ``duration = flow.end - flow.start``.
* EVE byte counts include the 14-byte Ethernet header of every packet (VERIFIED: 610 bytes =
  Zeek's ``orig_ip_bytes`` 512 + 7 x 14), so ``orig_ip_bytes = bytes_toserver - 14 x
  pkts_toserver`` (never below 0); payload bytes are unknown and stay null.
* ``uid`` is ``"S"`` + the decimal ``flow_id``, which is also kept in ``flow_id``.
* ``conn_state`` and ``history`` are approximated from the TCP flags Suricata saw
  (``tcp.tcp_flags_ts``/``tcp_flags_tc``, hex) and the packet counts:

  ====================================================  ===========
  what EVE says                                         conn_state
  ====================================================  ===========
  no packets back (TCP with SYN, or UDP/ICMP)           S0
  responder RST, no responder ACK of a SYN-ACK          REJ
  RST from either side after data both ways             RSTO / RSTR
  FIN seen from both sides                              SF
  UDP/ICMP with packets both ways                       SF
  handshake done, no FIN/RST                            S1
  anything else                                         OTH
  ====================================================  ===========

  ``history`` gets ``S``/``s`` for SYN, ``h`` for a responder SYN+ACK, ``A``/``a`` ACK,
  ``D``/``d`` when that side sent more than headers, ``F``/``f`` FIN, ``R``/``r`` RST
  (upper case: originator).
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import logging
import operator
import re
import reprlib
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any

import msgspec
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from netanomd.errors import InputError
from netanomd.flow import FLOW_SCHEMA, FlowBatch, FlowRecord, canonical_addresses
from netanomd.sources import MAX_COUNT, ReadStats, evescan, int_range
from netanomd.sources._text import FileSource, data_blocks, open_binary, string_scalar
from netanomd.sources.eve_states import HISTORIES, STATES, state_codes
from netanomd.sources.suricata_alerts import SignatureJoin

log = logging.getLogger(__name__)

ETHERNET_HEADER = 14
#: Lines decoded at a time (:func:`eve_lines_to_batch`).
PIECE = 2048

# -- the EVE fields a flow event is read from, decoded and range-checked by msgspec -----------
# Lax mode, as the per-record reader was: "5" and 5.0 are the integer 5; 5.5, "many", -1 and
# 70000 for a port are errors naming the field and its value (:func:`_bad_field`).
# Fields not named here are skipped unread (an alert's payload, a stats event's counters).
_Port = Annotated[int, msgspec.Meta(ge=int_range("orig_p")[0], le=int_range("orig_p")[1])]
_Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
#: msgspec takes no upper bound beyond int64: :func:`_events` checks the flow id's.
_FlowId = Annotated[int, msgspec.Meta(ge=0)]
_FLOW_ID_MAX = int_range("flow_id")[1]


# gc=False: decoded JSON holds no cycles, and a thousand tracked objects per block would make
# the collector run (and walk the daemon's heap) every few blocks.
class _Flow(msgspec.Struct, gc=False):
    pkts_toserver: _Count = 0
    pkts_toclient: _Count = 0
    bytes_toserver: _Count = 0
    bytes_toclient: _Count = 0
    start: str | None = None
    end: str | None = None


class _Tcp(msgspec.Struct, gc=False):
    # Any: a flag field that is not a hex string counts as no flags (never an error).
    tcp_flags: Any = None
    tcp_flags_ts: Any = None
    tcp_flags_tc: Any = None


class _Event(msgspec.Struct, gc=False):
    event_type: str
    timestamp: str | None = None
    flow_id: _FlowId | None = None
    src_ip: str | None = None
    src_port: _Port | None = None
    dest_ip: str | None = None
    dest_port: _Port | None = None
    icmp_type: _Port | None = None
    icmp_code: _Port | None = None
    proto: Any = ""
    app_proto: Any = None
    community_id: str | None = None
    label: str | None = None
    flow: _Flow | None = None
    tcp: _Tcp | None = None


class _Kind(msgspec.Struct):
    """Only the event type: what a line the full decoder refused says it is."""

    event_type: Any


_DECODER = msgspec.json.Decoder(_Event, strict=False)
_KIND_DECODER = msgspec.json.Decoder(_Kind)


#: Epoch seconds of "YYYY-mm-ddTHH:MM:SS+hhmm" (an EVE time without its fraction): flows of
#: one batch share a few seconds. Emptied when it reaches _SECONDS_MAX entries.
_SECONDS: dict[str, int] = {}
_SECONDS_MAX = 1 << 16


def parse_time(text: str) -> float:
    """EVE timestamp (``2013-03-07T21:42:06.869344+0000``) to epoch seconds.

    Exactly ``datetime.fromisoformat(text).timestamp()`` (whole microseconds over 10**6); for
    Suricata's own layout (six digits of fraction, a ``+hhmm`` offset) the whole seconds are
    looked up per distinct second instead of parsed again."""
    micro = text[20:26]
    if len(text) == 31 and text[19] == "." and micro.isascii() and micro.isdigit():
        key = text[:19] + text[26:]
        base = _SECONDS.get(key)
        if base is None:
            if len(_SECONDS) >= _SECONDS_MAX:
                _SECONDS.clear()
            base = _SECONDS[key] = int(dt.datetime.fromisoformat(key).timestamp())
        return (base * 10**6 + int(micro)) / 10**6
    return dt.datetime.fromisoformat(text).timestamp()


#: Told of each bad line: its number and what is wrong with it.
_Bad = Callable[[int, str], None]

#: Suricata's own time layout (``2013-03-07T21:42:06.869344+0000``): where it has digits and
#: what it has between them. Texts of this layout are cast by Arrow at once (it refuses every
#: date :func:`parse_time` refuses).
_LAYOUT = b"0000-00-00T00:00:00.000000+0000"
_WIDTH = len(_LAYOUT)
_DIGIT = np.frombuffer(_LAYOUT, np.uint8) == ord("0")
_SIGN = _LAYOUT.index(b"+")
_SEPARATORS = np.frombuffer(_LAYOUT, np.uint8)[~_DIGIT]
_FIXED = np.arange(_WIDTH)[~_DIGIT] != _SIGN  # the separators other than the offset's sign
#: Microseconds beyond which a float64 no longer holds every integer (the division would round
#: twice): such times take the scalar path.
_EXACT_MICROS = 2**53


def _in_layout(arr: pa.StringArray) -> np.ndarray:
    """Which texts are spelled in Suricata's layout, from their UTF-8 bytes (straight from the
    Arrow buffer when all are as long as the layout)."""
    n = len(arr)
    _, offsets_buf, data_buf = arr.buffers()
    if n == 0 or data_buf is None:
        return np.zeros(n, bool)
    offsets = np.frombuffer(offsets_buf, np.int32, n + 1, arr.offset * 4)
    data = np.frombuffer(data_buf, np.uint8)
    fits = np.diff(offsets) == _WIDTH
    if fits.all():
        first = int(offsets[0])
        chars = data[first : first + n * _WIDTH].reshape(n, _WIDTH)
    else:
        chars = data[offsets[:-1][fits, None] + np.arange(_WIDTH)]
    digits = (chars[:, _DIGIT] - np.uint8(ord("0"))) <= 9  # wraps below '0'
    seps = chars[:, ~_DIGIT]
    sign = seps[:, ~_FIXED]
    ok: np.ndarray = digits.all(axis=1) & (seps[:, _FIXED] == _SEPARATORS[_FIXED]).all(axis=1)
    ok &= ((sign == ord("+")) | (sign == ord("-"))).all(axis=1)
    if fits.all():
        return ok
    fits[fits] = ok
    return np.asarray(fits, dtype=bool)


def parse_times(texts: Sequence[str]) -> tuple[np.ndarray, dict[int, str]]:
    """EVE timestamps to epoch seconds at once: each exactly :func:`parse_time` of it, and for
    the texts it refuses, their row and why (those rows hold NaN). Suricata's own layout is cast
    by Arrow in one call; any other spelling, or a block Arrow refuses, is parsed text by
    text."""
    out = np.full(len(texts), np.nan)
    arr = pa.array(texts, pa.string())
    fast = _in_layout(arr)
    if fast.any():
        rows = np.flatnonzero(fast)
        try:
            micros = (
                (arr if rows.size == len(texts) else arr.take(pa.array(rows)))
                .cast(pa.timestamp("us", "UTC"))
                .cast(pa.int64())
                .to_numpy()
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            fast[:] = False
        else:
            exact = np.abs(micros) < _EXACT_MICROS
            out[rows[exact]] = micros[exact] / 10**6
            fast[rows[~exact]] = False
    bad: dict[int, str] = {}
    for i in np.flatnonzero(~fast).tolist():
        try:
            out[i] = parse_time(texts[i])
        except ValueError as exc:
            bad[i] = str(exc)
    return out, bad


@functools.lru_cache(maxsize=4096)
def _hex(text: str) -> int:
    """A TCP flags string as an integer (0 when it is not hex); values beyond int64 keep their
    low byte and stay non-zero."""
    try:
        value = int(text, 16)
    except ValueError:
        return 0
    return value if -(2**62) < value < 2**62 else (value & 0xFF) | 0x100


def _flag_column(values: Sequence[Any]) -> np.ndarray:
    """TCP flag fields as integers: a field that is not a hex string counts as no flags. Each
    distinct value is looked at once."""
    try:
        codes = {v: _hex(v) if isinstance(v, str) else 0 for v in set(values)}
    except TypeError:  # an unhashable value (a list, an object): never a flags string
        return np.array([_hex(v) if isinstance(v, str) else 0 for v in values], dtype=np.int64)
    return np.fromiter(map(codes.__getitem__, values), np.int64, len(values))


def _strings(values: Sequence[str]) -> pa.Array:
    """ASCII names as an Arrow string array, built from buffers (``pa.array`` of a list would
    import pandas when this module is imported: :func:`~netanomd.sources._text.string_scalar`)."""
    offsets = np.cumsum([0, *map(len, values)], dtype=np.int32)
    data = pa.py_buffer("".join(values).encode("ascii"))
    return pa.Array.from_buffers(pa.string(), len(values), [None, pa.py_buffer(offsets), data])


#: The same names as Arrow strings, taken by code.
_STATES_ARROW = _strings(STATES.tolist())
_HISTORIES_ARROW = _strings(HISTORIES.tolist())


#: Each struct field's getter.
_GETTERS = {
    name: operator.attrgetter(name)
    for kind in (_Event, _Flow, _Tcp)
    for name in kind.__struct_fields__
}
#: The columns of a flow event read for every flow; ``timestamp`` and the ICMP fields are read
#: only where ``flow.start`` or a port is missing.
_EVENT_COLUMNS = (
    "flow",
    "tcp",
    "flow_id",
    "src_ip",
    "src_port",
    "dest_ip",
    "dest_port",
    "proto",
    "app_proto",
    "community_id",
    "label",
)
_FLOW_FIELDS: tuple[str, ...] = _Flow.__struct_fields__
_TCP_FIELDS: tuple[str, ...] = _Tcp.__struct_fields__
#: Columns by name (a list each).
_Columns = dict[str, list[Any]]


def _column(structs: Sequence[msgspec.Struct], name: str) -> list[Any]:
    """One field of each struct, read in C."""
    return list(map(_GETTERS[name], structs))


def _columns(structs: Sequence[msgspec.Struct], fields: Sequence[str]) -> _Columns:
    """The structs' fields as columns: one list per field and no object per struct (a tuple per
    struct would be tracked by the garbage collector, and make it run every block)."""
    return {name: _column(structs, name) for name in fields}


def _or(values: list[Any], structs: Sequence[msgspec.Struct], name: str) -> list[Any]:
    """``values`` with each None replaced by the field ``name`` of the same row's struct."""
    if None not in values:
        return values
    return [v if v is not None else getattr(s, name) for v, s in zip(values, structs, strict=True)]


def _problems(evs: Sequence[_Event]) -> list[tuple[int, str]]:
    """The flow events that lack what a flow record needs, with what they lack."""
    problems: list[tuple[int, str]] = []
    for i, ev in enumerate(evs):
        f = ev.flow
        if f is None:
            problems.append((i, "no 'flow' object"))
        elif ev.src_ip is None or ev.dest_ip is None:
            problems.append((i, "no 'src_ip' or 'dest_ip'"))
        elif f.start is None and ev.timestamp is None:
            problems.append((i, "no 'flow.start' or 'timestamp'"))
    return problems


def _complete(evs: Sequence[_Event]) -> tuple[_Columns, _Columns, list[str]] | None:
    """The columns of flow events, their ``flow`` objects' columns and their start times; None
    when an event lacks what a flow record needs."""
    cols = _columns(evs, _EVENT_COLUMNS)
    if None in cols["flow"] or None in cols["src_ip"] or None in cols["dest_ip"]:
        return None
    fcols = _columns(cols["flow"], _FLOW_FIELDS)
    starts = _or(fcols["start"], evs, "timestamp")
    return None if None in starts else (cols, fcols, starts)


def _flow_columns(
    evs: Sequence[_Event], nums: Sequence[int], bad: _Bad
) -> tuple[FlowBatch, Sequence[int]] | None:
    """The flow batch of a block's flow events (with their line numbers), built column by
    column, and the line number of each of its rows; an event with a missing or bad field goes
    to ``bad`` and is left out."""
    got = _complete(evs)
    if got is None:
        problems = _problems(evs)
        for i, what in problems:
            bad(nums[i], f"flow event missing or bad field ({what})")
        left = {i for i, _ in problems}
        keep = [i for i in range(len(evs)) if i not in left]
        evs, nums = [evs[i] for i in keep], [nums[i] for i in keep]
        got = _complete(evs) if evs else None
        if got is None:
            return None
    cols, fcols, starts = got
    n = len(starts)
    ends = [e if e is not None else s for e, s in zip(fcols["end"], starts, strict=True)]
    times, bad_time = parse_times(starts + ends)  # one call for both: half the fixed cost
    start, end = times[:n], times[n:]
    bad_start = {i: why for i, why in bad_time.items() if i < n}
    bad_end = {i - n: why for i, why in bad_time.items() if i >= n}
    if bad_start or bad_end:
        for i, why in sorted({**bad_end, **bad_start}.items()):  # the start's problem first
            bad(nums[i], f"flow event missing or bad field ({why})")
        rows = [i for i in range(len(evs)) if i not in bad_start and i not in bad_end]
        if not rows:
            return None
        evs, nums = [evs[i] for i in rows], [nums[i] for i in rows]
        cols = {k: [v[i] for i in rows] for k, v in cols.items()}
        fcols = {k: [v[i] for i in rows] for k, v in fcols.items()}
        start, end = start[rows], end[rows]
    return _batch(evs, cols, fcols, start, end), nums


def _lowered(protos: Sequence[Any]) -> pa.Array:
    """The ``proto`` column lowercased (a value that is not a string as ``str`` has it)."""
    try:
        arr = pa.array(protos, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    else:
        if arr.null_count == 0 and pc.all(pc.string_is_ascii(arr)).as_py() is not False:
            return pc.ascii_lower(arr)
    return pa.array([(p if isinstance(p, str) else str(p)).lower() for p in protos], pa.string())


def _services(apps: Sequence[Any]) -> pa.Array:
    """``app_proto`` as ``service``: ``failed``, absent and values that are not strings are
    null."""
    try:
        arr = pa.array(apps, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(
            [a if isinstance(a, str) and a != "failed" else None for a in apps], pa.string()
        )
    failed = pc.equal(arr, string_scalar("failed"))
    if not pc.any(failed).as_py():
        return arr
    return pc.if_else(pc.fill_null(failed, False), pa.nulls(1, pa.string())[0], arr)


def _uids(ids: Sequence[int | None], flow_ids: pa.Array, start: np.ndarray) -> pa.Array:
    """``uid``: "S" + the flow id (+ the start time where there is no flow id)."""
    if not flow_ids.null_count:
        s = string_scalar("S")
        return pc.binary_join_element_wise(s, pc.cast(flow_ids, pa.string()), string_scalar(""))
    return pa.array(
        [f"S{i}" if i is not None else f"S{t}" for i, t in zip(ids, start.tolist(), strict=True)],
        pa.string(),
    )


def _flags(tcps: Sequence[Any], is_tcp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The TCP flag integers (each side's, and the combined ones) of the flows' ``tcp``
    objects; zeros for a block without TCP."""
    n = len(tcps)
    if not is_tcp.any():
        zeros = np.zeros(n, dtype=np.int64)
        return zeros, zeros, zeros
    if None in tcps:
        none = _Tcp()
        tcps = [t if t is not None else none for t in tcps]
    tcols = _columns(tcps, _TCP_FIELDS)
    # one look at the three columns' values: the same few strings
    every = _flag_column(tcols["tcp_flags_ts"] + tcols["tcp_flags_tc"] + tcols["tcp_flags"])
    return every[:n], every[n : 2 * n], every[2 * n :]


def _batch(
    evs: Sequence[_Event], cols: _Columns, fcols: _Columns, start: np.ndarray, end: np.ndarray
) -> FlowBatch:
    """The batch of checked flow events (their columns, and their ``flow`` objects' columns)
    whose start and end times are parsed."""
    n = len(start)

    def count(name: str) -> np.ndarray:
        return np.fromiter(fcols[name], np.int64, n)

    proto = _lowered(cols["proto"])
    tcps = cols["tcp"]
    has_tcp = np.fromiter(map(operator.is_not, tcps, itertools.repeat(None)), bool, n)
    is_tcp = has_tcp & np.asarray(pc.equal(proto, string_scalar("tcp")), dtype=bool)
    ids = cols["flow_id"]
    flow_ids = pa.array(ids, pa.uint64())
    given: dict[str, pa.Array] = {
        "uid": _uids(ids, flow_ids, start),
        "orig_h": pa.array(cols["src_ip"], pa.string()),
        "orig_p": pa.array(_or(cols["src_port"], evs, "icmp_type"), pa.int32()),
        "resp_h": pa.array(cols["dest_ip"], pa.string()),
        "resp_p": pa.array(_or(cols["dest_port"], evs, "icmp_code"), pa.int32()),
        "proto": proto,
        "service": _services(cols["app_proto"]),
        "community_id": pa.array(cols["community_id"], pa.string()),
        "flow_id": flow_ids,
        "label": pa.array(cols["label"], pa.string()),
    }
    counts = (
        count("pkts_toserver"),
        count("pkts_toclient"),
        count("bytes_toserver"),
        count("bytes_toclient"),
    )
    return _assemble(given, start, end, is_tcp, _flags(tcps, is_tcp), counts)


def _assemble(
    given: dict[str, pa.Array],
    start: np.ndarray,
    end: np.ndarray,
    is_tcp: np.ndarray,
    flags: tuple[np.ndarray, np.ndarray, np.ndarray],
    counts: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> FlowBatch:
    """The batch of flows whose text and id columns are ``given``, with their start and end
    times, whether each is TCP, their TCP flag integers (each side's, and the combined ones)
    and their packet and byte counts (to server, to client): both decoders end here."""
    n = len(start)
    pts, ptc, bts, btc = counts
    header = 40 + ETHERNET_HEADER
    states, histories = state_codes(
        is_tcp, *flags, pts > 0, ptc > 0, bts > pts * header, btc > ptc * header
    )
    given = {
        **given,
        "ts": pa.array(start, pa.float64()),
        "duration": pa.array(np.maximum(end - start, 0.0), pa.float64()),
        "conn_state": _STATES_ARROW.take(pa.array(states)),
        "history": _HISTORIES_ARROW.take(pa.array(histories)),
        "orig_pkts": pa.array(pts),
        "orig_ip_bytes": pa.array(np.maximum(bts - ETHERNET_HEADER * pts, 0)),
        "resp_pkts": pa.array(ptc),
        "resp_ip_bytes": pa.array(np.maximum(btc - ETHERNET_HEADER * ptc, 0)),
        "source": pa.repeat(string_scalar("suricata"), n),
    }
    arrays = [given[f.name] if f.name in given else _nulls(f, n) for f in FLOW_SCHEMA]
    return FlowBatch(canonical_addresses(pa.Table.from_arrays(arrays, schema=FLOW_SCHEMA)))


#: A column of nulls per flow field, :data:`PIECE` long (sliced: no allocation per batch).
_NULLS = {f.name: pa.nulls(PIECE, f.type) for f in FLOW_SCHEMA}


def _nulls(field: pa.Field, n: int) -> pa.Array:
    """``n`` nulls of the flow field ``field``."""
    return _NULLS[field.name].slice(0, n) if n <= PIECE else pa.nulls(n, field.type)


def _port(scanned: evescan.Scanned, name: str, icmp: str) -> pa.Array:
    """A port column of scanned flows: the port, else the ICMP field in its place, else
    null."""
    has = scanned.has(name)
    ports = scanned.ints[evescan.CODE[name]]
    if has.all():
        return pa.array(ports.astype(np.int32))
    has_icmp = scanned.has(icmp)
    ports = np.where(has, ports, scanned.ints[evescan.CODE[icmp]]).astype(np.int32)
    valid = has | has_icmp
    return pa.array(ports, pa.int32(), mask=None if valid.all() else ~valid)


#: The text columns of scanned flows: (flow column, EVE field).
_SCANNED_TEXTS = (
    ("uid", "flow_id"),
    ("orig_h", "src_ip"),
    ("resp_h", "dest_ip"),
    ("proto", "proto"),
    ("service", "app_proto"),
    ("community_id", "community_id"),
    ("label", "label"),
)


def _scanned_batch(scanned: evescan.Scanned) -> FlowBatch:
    """The batch of the flow events the scanner took."""
    ints, code = scanned.ints, evescan.CODE
    start_us = ints[code["start"]]
    start = start_us / 10**6  # as parse_times divides Arrow's microseconds
    end = np.where(scanned.has("end"), ints[code["end"]], start_us) / 10**6
    texts = scanned.texts(
        [field for _, field in _SCANNED_TEXTS],
        lower=["proto"],
        prefix={"flow_id": "S"},  # uid: "S" + the flow id's digits
        valid={
            "app_proto": scanned.has("app_proto") & ~scanned.has(evescan.APP_FAILED),
            "community_id": scanned.has("community_id"),
            "label": scanned.has("label"),
        },
    )
    given: dict[str, pa.Array] = {
        **{column: text for (column, _), text in zip(_SCANNED_TEXTS, texts, strict=True)},
        "orig_p": _port(scanned, "src_port", "icmp_type"),
        "resp_p": _port(scanned, "dest_port", "icmp_code"),
        "flow_id": pa.array(ints[code["flow_id"]].astype(np.uint64)),
    }
    is_tcp = scanned.has("tcp") & scanned.has(evescan.TCP_PROTO)
    flags = (ints[code["tcp_flags_ts"]], ints[code["tcp_flags_tc"]], ints[code["tcp_flags"]])
    counts = (
        ints[code["pkts_toserver"]],
        ints[code["pkts_toclient"]],
        ints[code["bytes_toserver"]],
        ints[code["bytes_toclient"]],
    )
    return _assemble(given, start, end, is_tcp, flags, counts)


def _expected(field: str) -> str:
    """What the EVE field ``field`` must hold, as the other readers say it."""
    if field in ("src_ip", "dest_ip"):
        return "an address"
    if field in ("flow", "tcp"):
        return "an object"
    if field in _Flow.__struct_fields__[:4] or field in ("flow_id", "src_port", "dest_port"):
        lo, hi = int_range({"src_port": "orig_p", "dest_port": "resp_p"}.get(field, field))
        return f"an integer from {lo} to {hi}"
    return "a string"


def _bad_field(line: bytes, path: Sequence[str]) -> str:
    """A flow event's bad field, with its value as the line has it: ``flow event missing or bad
    field (src_port: 70000 is not an integer from 0 to 65535)``."""
    try:
        value = orjson.loads(line)
        for key in path:
            value = value[key]
        shown = reprlib.repr(value)
    except (orjson.JSONDecodeError, KeyError, TypeError, RecursionError):
        shown = "its value"
    return f"flow event missing or bad field ({path[-1]}: {shown} is not {_expected(path[-1])})"


def _refused(exc: Exception, line: bytes) -> tuple[str, str | None]:
    """Why the decoder refused a line: (what is wrong, None) for a bad line — not JSON (or
    nested too deeply to read), not an EVE record, or a flow event with a missing or bad field
    — or ("", its type) for an event of another type whose fields we do not read (skipped, not
    malformed)."""
    if isinstance(exc, RecursionError):
        return "invalid JSON (nested too deeply)", None
    if not isinstance(exc, msgspec.ValidationError):
        return f"invalid JSON ({exc})", None
    try:
        kind = _KIND_DECODER.decode(line).event_type
    except (msgspec.DecodeError, RecursionError):
        return "not a Suricata EVE record (no event_type)", None
    if kind != "flow":
        return "", str(kind)
    path = re.findall(r"\.(\w+)", str(exc).rpartition("- at `$")[2])
    if not path:
        return f"flow event missing or bad field ({exc})", None
    return _bad_field(line, path), None


_FLOW_ID = operator.attrgetter("flow_id")
_EVENT_TYPE = operator.attrgetter("event_type")


def _one_line_each(lines: Sequence[bytes]) -> bool:
    """Whether no line holds a line end (``memchr`` per line, in C)."""
    return not any(map(operator.contains, lines, itertools.repeat(10)))


def _beyond(events: Sequence[_Event]) -> bool:
    """Whether an event's flow id is beyond what Suricata's 64-bit ids hold."""
    ids = list(map(_FLOW_ID, events))
    if None in ids:
        ids = [i for i in ids if i is not None]
    return bool(ids) and max(ids) > _FLOW_ID_MAX


def _events(
    lines: Sequence[bytes], line_nums: Sequence[int], stats: ReadStats, bad: _Bad
) -> tuple[Sequence[int], list[_Event]]:
    """The decoded events of lines (with their line numbers) and the line number of each;
    bad lines go to ``bad``, events of types whose fields do not decode are counted as skipped.
    The lines go to msgspec at once; only lines with a bad one among them are decoded one by
    one."""
    block = b"\n".join(lines)
    try:
        events = _DECODER.decode_lines(block)
    except (msgspec.DecodeError, RecursionError):
        events = None
    if events is not None and not _beyond(events):
        if len(events) == len(lines) and _one_line_each(lines):
            # a line each (none blank, none holding a line end)
            return line_nums, events
        nums = [line_nums[i] for i, ln in enumerate(lines) if ln.strip()]
        if len(events) == len(nums):
            return nums, events
    nums, events = [], []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            ev = _DECODER.decode(line)
        except (msgspec.DecodeError, RecursionError) as exc:
            problem, kind = _refused(exc, line)
            if kind is not None:
                stats.skip(kind)
            else:
                bad(line_nums[i], problem)
            continue
        if ev.flow_id is not None and ev.flow_id > _FLOW_ID_MAX:
            if ev.event_type == "flow":
                bad(line_nums[i], _bad_field(line, ["flow_id"]))
            else:
                stats.skip(ev.event_type)
            continue
        nums.append(line_nums[i])
        events.append(ev)
    return nums, events


def _general(
    lines: Sequence[bytes],
    line_nums: Sequence[int],
    stats: ReadStats,
    note: _Bad,
    signatures: SignatureJoin | None,
) -> tuple[FlowBatch, Sequence[int]] | None:
    """The flow batch of lines (with their line numbers) read by the general decoder, and each
    row's line number (None without flow events); alerts go to ``signatures``, other types are
    counted as skipped, bad lines go to ``note``."""
    nums, events = _events(lines, line_nums, stats, note)
    kinds = list(map(_EVENT_TYPE, events))
    if kinds.count("flow") != len(kinds):
        flows: list[_Event] = []
        flow_nums: list[int] = []
        line_of: dict[int, bytes] = {}
        for num, ev, kind in zip(nums, events, kinds, strict=True):
            if kind == "flow":
                flows.append(ev)
                flow_nums.append(num)
            elif kind == "alert" and signatures is not None:
                line_of = line_of or dict(zip(line_nums, lines, strict=True))
                try:  # alerts are few beside flows: their whole record is read again
                    signatures.add(orjson.loads(line_of[num]))
                except Exception as exc:
                    note(num, f"bad alert event ({exc!r})")
            else:
                stats.skip(kind)
        nums, events = flow_nums, flows
    return _flow_columns(events, nums, note) if events else None


def _decode(
    block: evescan.Block,
    first_line: int,
    stats: ReadStats,
    bad: _Bad,
    signatures: SignatureJoin | None = None,
    scan: bool = True,
) -> FlowBatch | None:
    """The flow batch of a block of lines (None without flow events); alerts go to
    ``signatures``, other types are counted as skipped, bad lines go to ``bad`` in line order.
    The flow events the scanner takes (with ``scan``) are read by it, the other lines by the
    general decoder; the rows keep the lines' order."""
    found: list[tuple[int, str]] = []

    def note(num: int, what: str) -> None:
        found.append((num, what))

    n = len(block)
    scanned = evescan.scan(block) if scan else None
    if scanned is not None and len(scanned.lines) == n:
        return _scanned_batch(scanned)
    rest: Sequence[int] = range(n)
    if scanned is not None and len(scanned.lines):
        left = np.ones(n, bool)
        left[scanned.lines] = False
        rest = np.flatnonzero(left).tolist()
    general = _general(
        [block.line(i) for i in rest],
        [first_line + i for i in rest],
        stats,
        note,
        signatures,
    )
    for num, what in sorted(found, key=lambda x: x[0]):
        bad(num, what)
    if scanned is None or not len(scanned.lines):
        return general[0] if general is not None else None
    fast = _scanned_batch(scanned)
    if general is None:
        return fast
    order = np.argsort(np.concatenate([scanned.lines, np.asarray(general[1]) - first_line]))
    return FlowBatch.concat([fast, general[0]]).take(order)


def eve_lines_to_batch(
    lines: Sequence[bytes],
    stats: ReadStats,
    where: str,
    first_line: int = 1,
    signatures: SignatureJoin | None = None,
    *,
    scan: bool = True,
) -> FlowBatch | None:
    """Decode EVE lines into a batch of flow records (:func:`eve_block_to_batch` of them)."""
    return eve_block_to_batch(
        evescan.block_of_lines(lines), stats, where, first_line, signatures, scan=scan
    )


def eve_text_to_batch(
    text: bytes,
    stats: ReadStats,
    where: str,
    first_line: int = 1,
    signatures: SignatureJoin | None = None,
    *,
    stop: int | None = None,
) -> FlowBatch | None:
    """Decode EVE text, ``text[:stop]`` (lines, each ended by ``\\n``, the last one maybe
    not; a ``\\r`` before a line end is left out), into a batch of flow records, with no
    object per line (:func:`eve_block_to_batch` of it)."""
    block = evescan.block_of_text(text, stop)
    return eve_block_to_batch(block, stats, where, first_line, signatures)


def eve_block_to_batch(
    block: evescan.Block,
    stats: ReadStats,
    where: str,
    first_line: int = 1,
    signatures: SignatureJoin | None = None,
    *,
    scan: bool = True,
) -> FlowBatch | None:
    """Decode a block of EVE lines into a batch of flow records; other event types are
    counted in ``stats.skipped``, bad lines in ``stats.malformed`` with ``where`` and their
    line number. The flow events :mod:`~netanomd.sources.evescan` reads are read by it;
    ``scan=False`` sends every line to the general decoder (the reference the scanner is
    tested against).

    With ``signatures`` (the input's join, kept across calls) alert events are kept there and
    the batch's flows carry the signatures that fired on them; without, they are skipped.

    A long block (a file's) is decoded :data:`PIECE` lines at a time: a piece's columns stay
    in the CPU's caches while they are read (a block of 32,768 lines costs ~1.5x the CPU per
    line). Its alerts are all kept before its flows are joined, as for a short one."""

    def bad(num: int, what: str) -> None:
        stats.bad_line(f"{where}:{num}: {what}")

    pieces = [
        _decode(block.piece(i, i + PIECE), first_line + i, stats, bad, signatures, scan)
        for i in range(0, len(block), PIECE)
    ]
    found = [p for p in pieces if p is not None]
    if not found:
        return None
    batch = found[0] if len(found) == 1 else FlowBatch.concat(found)
    stats.rows += len(batch)
    return signatures.attach(batch) if signatures is not None else batch


def parse_eve_line(line: bytes, where: str = "<eve>") -> FlowRecord | None:
    """One EVE line: a FlowRecord for a flow event, None for other event types.

    Raises :class:`InputError` naming ``where`` for malformed input.
    """
    problems: list[str] = []
    note: _Bad = lambda _, what: problems.append(f"{where}: {what}")  # noqa: E731
    batch = _decode(evescan.block_of_lines([line]), 1, ReadStats(), note)
    if problems:
        raise InputError(problems[0])
    return batch.record(0) if batch is not None else None


class SuricataEveSource(FileSource):
    """A Suricata ``eve.json`` file (plain or gzipped)."""

    kind = "suricata-eve"

    def batches(self) -> Iterator[FlowBatch]:
        signatures = SignatureJoin(self.stats)
        with open_binary(self.path) as fh:
            for start, text in data_blocks(fh, self.batch_size):
                batch = eve_text_to_batch(text, self.stats, self.path, start, signatures)
                if batch is not None:
                    yield batch
        signatures.finish()


__all__ = [
    "SuricataEveSource",
    "eve_block_to_batch",
    "eve_lines_to_batch",
    "eve_text_to_batch",
    "parse_eve_line",
]
