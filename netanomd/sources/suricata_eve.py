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
from typing import Annotated, Any

import msgspec
import numpy as np
import orjson
import pyarrow as pa

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


class _Flow(msgspec.Struct):
    pkts_toserver: _Count = 0
    pkts_toclient: _Count = 0
    bytes_toserver: _Count = 0
    bytes_toclient: _Count = 0
    start: str | None = None
    end: str | None = None


class _Tcp(msgspec.Struct):
    # Any: a flag field that is not a hex string counts as no flags (never an error).
    tcp_flags: Any = None
    tcp_flags_ts: Any = None
    tcp_flags_tc: Any = None


class _Event(msgspec.Struct):
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


def _flags(value: Any) -> int:
    if isinstance(value, str):
        try:
            return int(value, 16)
        except ValueError:
            return 0
    return 0


@functools.lru_cache(maxsize=4096)
def conn_state_and_history(
    tcp: bool,
    flags_ts: str | None,
    flags_tc: str | None,
    flags: str | None,
    pkts_ts: bool,
    pkts_tc: bool,
    data_ts: bool,
    data_tc: bool,
) -> tuple[str, str]:
    """Approximate Zeek ``conn_state`` and ``history`` from an EVE flow (see module doc): a
    TCP flow with a ``tcp`` object and its flag strings, whether each side sent packets and
    whether it sent payload (more than 40 bytes of IP+TCP header per packet plus Ethernet).
    Cached: a few hundred combinations cover real traffic."""
    if not tcp:
        return ("SF" if pkts_tc and pkts_ts else "S0"), ("Dd" if pkts_tc else "D")
    ts = _flags(flags_ts)
    tc = _flags(flags_tc)
    if not ts and not tc:  # only the combined flags are known
        both = _flags(flags)
        ts, tc = both, both if pkts_tc else 0
    hist = ""
    if ts & _SYN:
        hist += "S"
    if tc & _SYN and tc & _ACK:
        hist += "h"
    if ts & _ACK:
        hist += "A"
    if data_ts:
        hist += "D"
    if data_tc:
        hist += "d"
    if ts & _FIN:
        hist += "F"
    if tc & _FIN:
        hist += "f"
    if ts & _RST:
        hist += "R"
    if tc & _RST:
        hist += "r"
    if not pkts_tc:
        state = "S0" if ts & _SYN else "OTH"
    elif tc & _RST and not (tc & _SYN and tc & _ACK):
        state = "REJ" if ts & _SYN else "RSTR"
    elif ts & _RST:
        state = "RSTO"
    elif tc & _RST:
        state = "RSTR"
    elif ts & _FIN and tc & _FIN:
        state = "SF"
    elif ts & _SYN and tc & _SYN:
        state = "S1"
    else:
        state = "OTH"
    return state, hist


def _flag_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class _Columns:
    """The flow columns of a block of EVE events: :meth:`add` checks a flow event and works out
    what is not a plain field (times, state, history); :meth:`batch` builds each column at once."""

    def __init__(self) -> None:
        self.events: list[_Event] = []
        self.ts: list[float] = []
        self.duration: list[float] = []
        self.proto: list[str] = []
        self.orig_h: list[str] = []
        self.resp_h: list[str] = []
        self.state_history: list[tuple[str, str]] = []

    def add(self, ev: _Event) -> None:
        """Take one flow event (raises ValueError naming what is missing or bad)."""
        f = ev.flow
        if f is None:
            raise ValueError("no 'flow' object")
        if ev.src_ip is None or ev.dest_ip is None:
            raise ValueError("no 'src_ip' or 'dest_ip'")
        when = f.start if f.start is not None else ev.timestamp
        if when is None:
            raise ValueError("no 'flow.start' or 'timestamp'")
        start = parse_time(when)
        end = parse_time(f.end) if f.end is not None else start
        pts, ptc = f.pkts_toserver, f.pkts_toclient
        p = ev.proto
        proto = (p if isinstance(p, str) else str(p)).lower()
        tcp = ev.tcp
        if proto == "tcp" and tcp is not None:
            header = 40 + ETHERNET_HEADER
            sh = conn_state_and_history(
                True,
                _flag_text(tcp.tcp_flags_ts),
                _flag_text(tcp.tcp_flags_tc),
                _flag_text(tcp.tcp_flags),
                pts > 0,
                ptc > 0,
                f.bytes_toserver > pts * header,
                f.bytes_toclient > ptc * header,
            )
        else:
            sh = conn_state_and_history(False, None, None, None, pts > 0, ptc > 0, False, False)
        self.events.append(ev)
        self.ts.append(start)
        self.duration.append(max(end - start, 0.0))
        self.proto.append(proto)
        self.orig_h.append(ev.src_ip)
        self.resp_h.append(ev.dest_ip)
        self.state_history.append(sh)

    def __len__(self) -> int:
        return len(self.events)

    def batch(self) -> FlowBatch:
        evs = self.events
        n = len(evs)
        flows = [e.flow for e in evs]
        counts = np.array(
            [(f.pkts_toserver, f.bytes_toserver, f.pkts_toclient, f.bytes_toclient) for f in flows],  # type: ignore[union-attr]
            dtype=np.int64,
        ).reshape(n, 4)
        pts, bts, ptc, btc = counts.T
        apps = [e.app_proto for e in evs]
        given: dict[str, pa.Array] = {
            "ts": pa.array(self.ts, pa.float64()),
            "uid": pa.array(
                [
                    f"S{e.flow_id}" if e.flow_id is not None else f"S{t}"
                    for e, t in zip(evs, self.ts, strict=True)
                ],
                pa.string(),
            ),
            "orig_h": pa.array(self.orig_h, pa.string()),
            "orig_p": pa.array(
                [e.icmp_type if e.src_port is None else e.src_port for e in evs], pa.int32()
            ),
            "resp_h": pa.array(self.resp_h, pa.string()),
            "resp_p": pa.array(
                [e.icmp_code if e.dest_port is None else e.dest_port for e in evs], pa.int32()
            ),
            "proto": pa.array(self.proto, pa.string()),
            "service": pa.array(
                [a if isinstance(a, str) and a != "failed" else None for a in apps], pa.string()
            ),
            "duration": pa.array(self.duration, pa.float64()),
            "conn_state": pa.array([sh[0] for sh in self.state_history], pa.string()),
            "history": pa.array([sh[1] for sh in self.state_history], pa.string()),
            "orig_pkts": pa.array(pts),
            "orig_ip_bytes": pa.array(np.maximum(bts - ETHERNET_HEADER * pts, 0)),
            "resp_pkts": pa.array(ptc),
            "resp_ip_bytes": pa.array(np.maximum(btc - ETHERNET_HEADER * ptc, 0)),
            "community_id": pa.array([e.community_id for e in evs], pa.string()),
            "flow_id": pa.array([e.flow_id for e in evs], pa.uint64()),
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


#: Told of each bad line: its number and what is wrong with it.
_Bad = Callable[[int, str], None]


def _events(
    lines: Sequence[bytes], first_line: int, stats: ReadStats, bad: _Bad
) -> Iterator[tuple[int, _Event]]:
    """The decoded events of a block with their line numbers; bad lines go to ``bad``, events
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
        yield from zip(nums, events, strict=True)
        return
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
        yield first_line + i, ev


def _decode(
    lines: Sequence[bytes],
    first_line: int,
    stats: ReadStats,
    bad: _Bad,
    signatures: SignatureJoin | None = None,
) -> _Columns:
    cols = _Columns()
    for num, ev in _events(lines, first_line, stats, bad):
        if ev.event_type == "alert" and signatures is not None:
            try:  # alerts are few beside flows: their whole record is read again
                signatures.add(orjson.loads(lines[num - first_line]))
            except Exception as exc:
                bad(num, f"bad alert event ({exc!r})")
            continue
        if ev.event_type != "flow":
            stats.skip(ev.event_type)
            continue
        try:
            cols.add(ev)
        except ValueError as exc:  # any single record is skipped, never fatal to the source
            bad(num, f"flow event missing or bad field ({exc})")
    return cols


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
    cols = _decode(
        lines,
        first_line,
        stats,
        lambda num, what: stats.bad_line(f"{where}:{num}: {what}"),
        signatures,
    )
    if not len(cols):
        return None
    stats.rows += len(cols)
    batch = cols.batch()
    return signatures.attach(batch) if signatures is not None else batch


def parse_eve_line(line: bytes, where: str = "<eve>") -> FlowRecord | None:
    """One EVE line: a FlowRecord for a flow event, None for other event types.

    Raises :class:`InputError` naming ``where`` for malformed input.
    """
    problems: list[str] = []
    cols = _decode([line], 1, ReadStats(), lambda _, what: problems.append(f"{where}: {what}"))
    if problems:
        raise InputError(problems[0])
    return cols.batch().record(0) if len(cols) else None


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
