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
import re
import reprlib
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, cast

import msgspec
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

#: An EVE time as Suricata writes it (``2013-03-07T21:42:06.869344+0000``): parsed column-wise.
_EVE_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}[+-][0-9]{4}$"
#: Microseconds beyond which a float64 no longer holds every integer (the division would round
#: twice): such times take the scalar path.
_EXACT_MICROS = 2**53


def parse_times(texts: Sequence[str]) -> tuple[np.ndarray, dict[int, str]]:
    """EVE timestamps to epoch seconds at once: each exactly :func:`parse_time` of it, and for
    the texts it refuses, their row and why (those rows hold NaN). Suricata's own layout is cast
    by Arrow in one call (Arrow refuses every date :func:`parse_time` refuses); any other
    spelling, or a block Arrow refuses, is parsed text by text."""
    out = np.full(len(texts), np.nan)
    arr = pa.array(texts, pa.string())
    fast = np.asarray(pc.match_substring_regex(arr, _EVE_TIME))
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
    """TCP flag fields as integers: a field that is not a hex string counts as no flags."""
    return np.array([_hex(v) if isinstance(v, str) else 0 for v in values], dtype=np.int64)


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


def _flow_columns(evs: Sequence[_Event], nums: Sequence[int], bad: _Bad) -> FlowBatch | None:
    """The flow batch of a block's flow events (with their line numbers), built column by
    column; an event with a missing or bad field goes to ``bad`` and is left out."""
    problems: list[tuple[int, str]] = []
    keep: list[int] = []
    for i, ev in enumerate(evs):
        f = ev.flow
        if f is None:
            problems.append((i, "no 'flow' object"))
        elif ev.src_ip is None or ev.dest_ip is None:
            problems.append((i, "no 'src_ip' or 'dest_ip'"))
        elif f.start is None and ev.timestamp is None:
            problems.append((i, "no 'flow.start' or 'timestamp'"))
        else:
            keep.append(i)
    if problems:
        for i, what in problems:
            bad(nums[i], f"flow event missing or bad field ({what})")
        evs, nums = [evs[i] for i in keep], [nums[i] for i in keep]
    flows = cast("list[_Flow]", [e.flow for e in evs])
    starts = cast(
        "list[str]",
        [f.start if f.start is not None else e.timestamp for f, e in zip(flows, evs, strict=True)],
    )
    ends = [f.end if f.end is not None else t for f, t in zip(flows, starts, strict=True)]
    start, bad_start = parse_times(starts)
    end, bad_end = parse_times(ends)
    if bad_start or bad_end:
        for i, why in sorted({**bad_end, **bad_start}.items()):  # the start's problem first
            bad(nums[i], f"flow event missing or bad field ({why})")
        rows = [i for i in range(len(evs)) if i not in bad_start and i not in bad_end]
        evs, flows = [evs[i] for i in rows], [flows[i] for i in rows]
        start, end = start[rows], end[rows]
    return _batch(evs, flows, start, end) if evs else None


def _batch(
    evs: Sequence[_Event], flows: Sequence[_Flow], start: np.ndarray, end: np.ndarray
) -> FlowBatch:
    """The batch of checked flow events whose start and end times are parsed."""
    n = len(evs)
    pts = np.array([f.pkts_toserver for f in flows], dtype=np.int64)
    ptc = np.array([f.pkts_toclient for f in flows], dtype=np.int64)
    bts = np.array([f.bytes_toserver for f in flows], dtype=np.int64)
    btc = np.array([f.bytes_toclient for f in flows], dtype=np.int64)
    proto = [(p if isinstance(p, str) else str(p)).lower() for p in (e.proto for e in evs)]
    tcps = [e.tcp for e in evs]
    is_tcp = np.array(
        [p == "tcp" and t is not None for p, t in zip(proto, tcps, strict=True)], dtype=bool
    )
    if is_tcp.any():
        none = _Tcp()
        tcp = [t if t is not None else none for t in tcps]
        flags_ts = _flag_column([t.tcp_flags_ts for t in tcp])
        flags_tc = _flag_column([t.tcp_flags_tc for t in tcp])
        flags = _flag_column([t.tcp_flags for t in tcp])
    else:
        flags_ts = flags_tc = flags = np.zeros(n, dtype=np.int64)
    header = 40 + ETHERNET_HEADER
    states, histories = conn_states(
        is_tcp, flags_ts, flags_tc, flags, pts > 0, ptc > 0, bts > pts * header, btc > ptc * header
    )
    ids = [e.flow_id for e in evs]
    apps = [e.app_proto for e in evs]
    uids = (
        [f"S{i}" for i in ids]
        if None not in ids
        else [
            f"S{i}" if i is not None else f"S{t}" for i, t in zip(ids, start.tolist(), strict=True)
        ]
    )
    given: dict[str, pa.Array] = {
        "ts": pa.array(start, pa.float64()),
        "uid": pa.array(uids, pa.string()),
        "orig_h": pa.array([e.src_ip for e in evs], pa.string()),
        "orig_p": pa.array(
            [e.icmp_type if e.src_port is None else e.src_port for e in evs], pa.int32()
        ),
        "resp_h": pa.array([e.dest_ip for e in evs], pa.string()),
        "resp_p": pa.array(
            [e.icmp_code if e.dest_port is None else e.dest_port for e in evs], pa.int32()
        ),
        "proto": pa.array(proto, pa.string()),
        "service": pa.array(
            [a if isinstance(a, str) and a != "failed" else None for a in apps],
            pa.string(),
        ),
        "duration": pa.array(np.maximum(end - start, 0.0), pa.float64()),
        "conn_state": pa.array(states, pa.string()),
        "history": pa.array(histories, pa.string()),
        "orig_pkts": pa.array(pts),
        "orig_ip_bytes": pa.array(np.maximum(bts - ETHERNET_HEADER * pts, 0)),
        "resp_pkts": pa.array(ptc),
        "resp_ip_bytes": pa.array(np.maximum(btc - ETHERNET_HEADER * ptc, 0)),
        "community_id": pa.array([e.community_id for e in evs], pa.string()),
        "flow_id": pa.array(ids, pa.uint64()),
        "source": pa.array(["suricata"] * n, pa.string()),
        "label": pa.array([e.label for e in evs], pa.string()),
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
    if (
        events is not None
        and len(events) == len(nums)
        and not any(e.flow_id is not None and e.flow_id > _FLOW_ID_MAX for e in events)
    ):
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
    kinds = [e.event_type for e in events]
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
