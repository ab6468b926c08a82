"""Suricata EVE JSON reader: ``event_type: flow`` records become flow records.

``alert`` events (Suricata's own signatures) go to the input's
:class:`~netanomd.sources.suricata_alerts.SignatureJoin`, which attaches them to the flow of the
same ``flow_id``. Other event types (dns, http, netflow, stats, ...) are skipped and counted per
type in ``stats.skipped``. A block of lines is decoded at once (one msgspec ``decode_lines``
call into typed structs that read only the fields below and check their types and ranges) and
its columns are built at once; only a block holding a bad line is decoded line by line, to name
the line and what is wrong with it (``flow event missing or bad field (src_port: 70000 is not an
integer from 0 to 65535)``). Mapping:

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
import logging
import operator
import re
import reprlib
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any

import msgspec
import msgspec.structs
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from netanomd.errors import InputError
from netanomd.flow import FLOW_SCHEMA, FlowBatch, FlowRecord, canonical_addresses
from netanomd.sources import MAX_COUNT, ReadStats, int_range
from netanomd.sources._text import FileSource, line_blocks, open_binary
from netanomd.sources.suricata_alerts import SignatureJoin

log = logging.getLogger(__name__)

ETHERNET_HEADER = 14
_SYN, _FIN, _RST, _ACK = 0x02, 0x01, 0x04, 0x10

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

#: Where Suricata's time layout (``2013-03-07T21:42:06.869344+0000``) has digits, and what it
#: has between them: its texts are parsed column-wise by :func:`_layout_micros`.
_LAYOUT = "0000-00-00T00:00:00.000000+0000"
_DIGITS = np.array([c == "0" for c in _LAYOUT])
_SEPARATORS = np.array([ord(c) for c in _LAYOUT])
#: Microseconds beyond which a float64 no longer holds every integer (the division would round
#: twice): such times take the scalar path.
_EXACT_MICROS = 2**53
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _layout_micros(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Epoch microseconds of the texts in Suricata's own layout, computed column-wise from their
    characters (no regex, no parse per text), and which texts they are: a text of another
    spelling, or one whose date, time or offset :func:`datetime.datetime.fromisoformat` might
    refuse (a day the month lacks, hour 24, second 60, an offset of 24 hours or more), is left
    to the scalar parse, as is one too far from 1970 for a float64 to hold its microseconds."""
    n = len(texts)
    width = len(_LAYOUT)
    chars = np.zeros((n, width), dtype=np.int64)
    fits = np.fromiter(map(len, texts), np.int64, n) == width
    if fits.any():
        rows = np.flatnonzero(fits)
        picked = texts if rows.size == n else [texts[i] for i in rows.tolist()]
        chars[rows] = np.array(picked, dtype=f"<U{width}").view(np.uint32).reshape(-1, width)
    digit = chars - ord("0")
    ok = fits & ((digit[:, _DIGITS] >= 0) & (digit[:, _DIGITS] <= 9)).all(axis=1)
    seps = chars[:, ~_DIGITS] == _SEPARATORS[~_DIGITS]
    sign = np.where(chars[:, 26] == ord("-"), -1, 1)
    seps[:, -1] |= chars[:, 26] == ord("-")  # the offset's sign: '+' or '-'
    ok &= seps.all(axis=1)

    def num(a: int, b: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.int64)
        for k in range(a, b):
            out = out * 10 + digit[:, k]
        return out

    year, month, day = num(0, 4), num(5, 7), num(8, 10)
    hour, minute, second, micro = num(11, 13), num(14, 16), num(17, 19), num(20, 26)
    off_h, off_m = num(27, 29), num(29, 31)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    days = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + (leap & (month == 2))
    ok &= (year >= 1) & month_ok & (day >= 1) & (day <= days)
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59) & (off_h <= 23) & (off_m <= 59)
    # days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * np.where(month > 2, month - 3, month + 9) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    epoch_days = era * 146097 + doe - 719468
    seconds = epoch_days * 86400 + hour * 3600 + minute * 60 + second
    seconds -= sign * (off_h * 3600 + off_m * 60)
    micros = seconds * 10**6 + micro
    ok &= np.abs(micros) < _EXACT_MICROS
    return micros, ok


def parse_times(texts: Sequence[str]) -> tuple[np.ndarray, dict[int, str]]:
    """EVE timestamps to epoch seconds at once: each exactly :func:`parse_time` of it, and for
    the texts it refuses, their row and why (those rows hold NaN). Suricata's own layout is
    computed column-wise (:func:`_layout_micros`); any other spelling, and any date that
    computation leaves, is parsed text by text."""
    micros, fast = _layout_micros(texts)
    out = np.where(fast, micros / 10**6, np.nan)
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


#: conn_state names by code, in the order :func:`conn_states` decides them.
_STATES = np.array(["S0", "OTH", "REJ", "RSTR", "RSTO", "SF", "S1"], dtype=object)
#: history letters by bit: originator SYN, responder SYN+ACK, originator ACK, data each way,
#: FIN each way, RST each way.
_HISTORY_LETTERS = "ShADdFfRr"
_HISTORIES = np.array(
    [
        "".join(c for k, c in enumerate(_HISTORY_LETTERS) if code >> k & 1)
        for code in range(1 << len(_HISTORY_LETTERS))
    ],
    dtype=object,
)


def conn_states(
    tcp: np.ndarray,
    flags_ts: np.ndarray,
    flags_tc: np.ndarray,
    flags: np.ndarray,
    pkts_ts: np.ndarray,
    pkts_tc: np.ndarray,
    data_ts: np.ndarray,
    data_tc: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate Zeek ``conn_state`` and ``history`` (object arrays of str) from EVE flows
    (see module doc), column-wise: per flow whether it is TCP with a ``tcp`` object, its flag
    integers (each side's, and the combined ones), whether each side sent packets and whether
    it sent payload (more than 40 bytes of IP+TCP header per packet plus Ethernet)."""
    only_both = (flags_ts == 0) & (flags_tc == 0)  # only the combined flags are known
    ts = np.where(only_both, flags, flags_ts)
    tc = np.where(only_both, np.where(pkts_tc, flags, 0), flags_tc)
    syn_ack = (tc & _SYN != 0) & (tc & _ACK != 0)
    bits = [
        ts & _SYN != 0,
        syn_ack,
        ts & _ACK != 0,
        data_ts,
        data_tc,
        ts & _FIN != 0,
        tc & _FIN != 0,
        ts & _RST != 0,
        tc & _RST != 0,
    ]
    code = np.zeros(len(tcp), dtype=np.int64)
    for k, bit in enumerate(bits):
        code |= bit.astype(np.int64) << k
    syn_ts, rst_ts, rst_tc = bits[0], bits[7], bits[8]
    state = np.select(
        [
            ~pkts_tc,
            rst_tc & ~syn_ack,
            rst_ts,
            rst_tc,
            bits[5] & bits[6],
            syn_ts & (tc & _SYN != 0),
        ],
        [np.where(syn_ts, 0, 1), np.where(syn_ts, 2, 3), 4, 3, 5, 6],
        default=1,
    )
    other_state = np.where(pkts_tc & pkts_ts, 5, 0)
    other_history = np.where(pkts_tc, 0b11000, 0b01000)
    states = _STATES[np.where(tcp, state, other_state)]
    histories = _HISTORIES[np.where(tcp, code, other_history)]
    return states, histories


def _columns(structs: Sequence[msgspec.Struct], kind: type[msgspec.Struct]) -> dict[str, Any]:
    """The structs' fields as columns (a tuple each), transposed in C."""
    if not structs:
        return {name: () for name in kind.__struct_fields__}
    rows = map(msgspec.structs.astuple, structs)
    return dict(zip(kind.__struct_fields__, zip(*rows, strict=True), strict=True))


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


def _or(values: tuple[Any, ...], instead: tuple[Any, ...]) -> tuple[Any, ...]:
    """``values`` with each None replaced by the same row of ``instead``."""
    if None not in values:
        return values
    return tuple(v if v is not None else w for v, w in zip(values, instead, strict=True))


def _flow_columns(evs: Sequence[_Event], nums: Sequence[int], bad: _Bad) -> FlowBatch | None:
    """The flow batch of a block's flow events (with their line numbers), built column by
    column; an event with a missing or bad field goes to ``bad`` and is left out."""
    cols = _columns(evs, _Event)
    flows = cols["flow"]
    complete = None not in flows and None not in cols["src_ip"] and None not in cols["dest_ip"]
    if complete:
        fcols = _columns(flows, _Flow)
        starts = _or(fcols["start"], cols["timestamp"])
        complete = None not in starts
    if not complete:
        problems = _problems(evs)
        for i, what in problems:
            bad(nums[i], f"flow event missing or bad field ({what})")
        left = {i for i, _ in problems}
        keep = [i for i in range(len(evs)) if i not in left]
        evs, nums = [evs[i] for i in keep], [nums[i] for i in keep]
        if not evs:
            return None
        cols = _columns(evs, _Event)
        fcols = _columns(cols["flow"], _Flow)
        starts = _or(fcols["start"], cols["timestamp"])
    ends = _or(fcols["end"], starts)
    start, bad_start = parse_times(starts)
    end, bad_end = parse_times(ends)
    if bad_start or bad_end:
        for i, why in sorted({**bad_end, **bad_start}.items()):  # the start's problem first
            bad(nums[i], f"flow event missing or bad field ({why})")
        rows = [i for i in range(len(evs)) if i not in bad_start and i not in bad_end]
        if not rows:
            return None
        cols = {k: tuple(v[i] for i in rows) for k, v in cols.items()}
        fcols = {k: tuple(v[i] for i in rows) for k, v in fcols.items()}
        start, end = start[rows], end[rows]
    return _batch(cols, fcols, start, end)


def _lowered(protos: tuple[Any, ...]) -> pa.Array:
    """The ``proto`` column lowercased (a value that is not a string as ``str`` has it)."""
    if None not in protos:
        try:
            arr = pa.array(protos, pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        else:
            if pc.all(pc.string_is_ascii(arr)).as_py() is not False:
                return pc.ascii_lower(arr)
    return pa.array([(p if isinstance(p, str) else str(p)).lower() for p in protos], pa.string())


def _services(apps: tuple[Any, ...]) -> pa.Array:
    """``app_proto`` as ``service``: ``failed``, absent and values that are not strings are
    null."""
    try:
        arr = pa.array(apps, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(
            [a if isinstance(a, str) and a != "failed" else None for a in apps], pa.string()
        )
    failed = pc.fill_null(pc.equal(arr, "failed"), False)
    return pc.if_else(failed, pa.scalar(None, pa.string()), arr) if pc.any(failed).as_py() else arr


def _uids(ids: tuple[int | None, ...], flow_ids: pa.Array, start: np.ndarray) -> pa.Array:
    """``uid``: "S" + the flow id (+ the start time where there is no flow id)."""
    if not flow_ids.null_count:
        return pc.binary_join_element_wise("S", pc.cast(flow_ids, pa.string()), "")
    return pa.array(
        [f"S{i}" if i is not None else f"S{t}" for i, t in zip(ids, start.tolist(), strict=True)],
        pa.string(),
    )


def _ports(ports: tuple[int | None, ...], icmp: tuple[int | None, ...]) -> pa.Array:
    """A port column; ICMP's type or code where the event has no port."""
    return pa.array(_or(ports, icmp), pa.int32())


def _batch(
    cols: dict[str, Any], fcols: dict[str, Any], start: np.ndarray, end: np.ndarray
) -> FlowBatch:
    """The batch of checked flow events (their columns, and their ``flow`` objects' columns)
    whose start and end times are parsed."""
    n = len(start)

    def counts(name: str) -> np.ndarray:
        return np.fromiter(fcols[name], np.int64, n)

    pts, ptc = counts("pkts_toserver"), counts("pkts_toclient")
    bts, btc = counts("bytes_toserver"), counts("bytes_toclient")
    proto = _lowered(cols["proto"])
    tcps = cols["tcp"]
    has_tcp = np.array(tcps, dtype=object) != None  # noqa: E711 (element-wise)
    is_tcp = has_tcp & np.asarray(pc.equal(proto, "tcp"), dtype=bool)
    if is_tcp.any():
        none = _Tcp()
        tcols = _columns([t if t is not None else none for t in tcps], _Tcp)
        flags_ts = _flag_column(tcols["tcp_flags_ts"])
        flags_tc = _flag_column(tcols["tcp_flags_tc"])
        flags = _flag_column(tcols["tcp_flags"])
    else:
        flags_ts = flags_tc = flags = np.zeros(n, dtype=np.int64)
    header = 40 + ETHERNET_HEADER
    states, histories = conn_states(
        is_tcp, flags_ts, flags_tc, flags, pts > 0, ptc > 0, bts > pts * header, btc > ptc * header
    )
    ids = cols["flow_id"]
    flow_ids = (
        pa.array(np.fromiter(ids, np.uint64, n)) if None not in ids else pa.array(ids, pa.uint64())
    )
    given: dict[str, pa.Array] = {
        "ts": pa.array(start, pa.float64()),
        "uid": _uids(ids, flow_ids, start),
        "orig_h": pa.array(cols["src_ip"], pa.string()),
        "orig_p": _ports(cols["src_port"], cols["icmp_type"]),
        "resp_h": pa.array(cols["dest_ip"], pa.string()),
        "resp_p": _ports(cols["dest_port"], cols["icmp_code"]),
        "proto": proto,
        "service": _services(cols["app_proto"]),
        "duration": pa.array(np.maximum(end - start, 0.0), pa.float64()),
        "conn_state": pa.array(states, pa.string()),
        "history": pa.array(histories, pa.string()),
        "orig_pkts": pa.array(pts),
        "orig_ip_bytes": pa.array(np.maximum(bts - ETHERNET_HEADER * pts, 0)),
        "resp_pkts": pa.array(ptc),
        "resp_ip_bytes": pa.array(np.maximum(btc - ETHERNET_HEADER * ptc, 0)),
        "community_id": pa.array(cols["community_id"], pa.string()),
        "flow_id": flow_ids,
        "source": pa.array(["suricata"] * n, pa.string()),
        "label": pa.array(cols["label"], pa.string()),
    }
    arrays = [given[f.name] if f.name in given else pa.nulls(n, f.type) for f in FLOW_SCHEMA]
    return FlowBatch(canonical_addresses(pa.Table.from_arrays(arrays, schema=FLOW_SCHEMA)))


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


def _beyond(events: Sequence[_Event]) -> bool:
    """Whether an event's flow id is beyond what Suricata's 64-bit ids hold."""
    ids = list(map(_FLOW_ID, events))
    if None in ids:
        ids = [i for i in ids if i is not None]
    return bool(ids) and max(ids) > _FLOW_ID_MAX


def _events(
    lines: Sequence[bytes], first_line: int, stats: ReadStats, bad: _Bad
) -> tuple[list[int], list[_Event]]:
    """The decoded events of a block and their line numbers; bad lines go to ``bad``, events
    of types whose fields do not decode are counted as skipped. The whole block goes to msgspec
    at once; only a block with a bad line is decoded line by line."""
    nums = [first_line + i for i, ln in enumerate(lines) if ln.strip()]
    try:
        events = _DECODER.decode_lines(b"\n".join(lines))
    except (msgspec.DecodeError, RecursionError):
        events = None
    if events is not None and len(events) == len(nums) and not _beyond(events):
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
                bad(first_line + i, problem)
            continue
        if ev.flow_id is not None and ev.flow_id > _FLOW_ID_MAX:
            if ev.event_type == "flow":
                bad(first_line + i, _bad_field(line, ["flow_id"]))
            else:
                stats.skip(ev.event_type)
            continue
        nums.append(first_line + i)
        events.append(ev)
    return nums, events


_EVENT_TYPE = operator.attrgetter("event_type")


def _decode(
    lines: Sequence[bytes],
    first_line: int,
    stats: ReadStats,
    bad: _Bad,
    signatures: SignatureJoin | None = None,
) -> FlowBatch | None:
    """The flow batch of a block (None without flow events); alerts go to ``signatures``,
    other types are counted as skipped, bad lines go to ``bad`` in line order."""
    found: list[tuple[int, str]] = []

    def note(num: int, what: str) -> None:
        found.append((num, what))

    nums, events = _events(lines, first_line, stats, note)
    kinds = list(map(_EVENT_TYPE, events))
    if kinds.count("flow") != len(kinds):
        flows: list[_Event] = []
        flow_nums: list[int] = []
        for num, ev, kind in zip(nums, events, kinds, strict=True):
            if kind == "flow":
                flows.append(ev)
                flow_nums.append(num)
            elif kind == "alert" and signatures is not None:
                try:  # alerts are few beside flows: their whole record is read again
                    signatures.add(orjson.loads(lines[num - first_line]))
                except Exception as exc:
                    note(num, f"bad alert event ({exc!r})")
            else:
                stats.skip(kind)
        nums, events = flow_nums, flows
    batch = _flow_columns(events, nums, note) if events else None
    for num, what in sorted(found, key=lambda x: x[0]):
        bad(num, what)
    return batch


def eve_lines_to_batch(
    lines: Sequence[bytes],
    stats: ReadStats,
    where: str,
    first_line: int = 1,
    signatures: SignatureJoin | None = None,
) -> FlowBatch | None:
    """Decode EVE lines into a batch of flow records; other event types are counted in
    ``stats.skipped``, bad lines in ``stats.malformed`` with ``where`` and their line number.

    With ``signatures`` (the input's join, kept across calls) alert events are kept there and
    the batch's flows carry the signatures that fired on them; without, they are skipped."""
    batch = _decode(
        lines,
        first_line,
        stats,
        lambda num, what: stats.bad_line(f"{where}:{num}: {what}"),
        signatures,
    )
    if batch is None:
        return None
    stats.rows += len(batch)
    return signatures.attach(batch) if signatures is not None else batch


def parse_eve_line(line: bytes, where: str = "<eve>") -> FlowRecord | None:
    """One EVE line: a FlowRecord for a flow event, None for other event types.

    Raises :class:`InputError` naming ``where`` for malformed input.
    """
    problems: list[str] = []
    batch = _decode([line], 1, ReadStats(), lambda _, what: problems.append(f"{where}: {what}"))
    if problems:
        raise InputError(problems[0])
    return batch.record(0) if batch is not None else None


class SuricataEveSource(FileSource):
    """A Suricata ``eve.json`` file (plain or gzipped)."""

    kind = "suricata-eve"

    def batches(self) -> Iterator[FlowBatch]:
        signatures = SignatureJoin(self.stats)
        with open_binary(self.path) as fh:
            for start, lines in line_blocks(fh, self.batch_size):
                batch = eve_lines_to_batch(lines, self.stats, self.path, start, signatures)
                if batch is not None:
                    yield batch
        signatures.finish()


__all__ = ["SuricataEveSource", "eve_lines_to_batch", "parse_eve_line"]
