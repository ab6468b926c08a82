"""Suricata EVE JSON reader: ``event_type: flow`` records become flow records.

``alert`` events (Suricata's own signatures) go to the input's
:class:`~netanomd.sources.suricata_alerts.SignatureJoin`, which attaches them to the flow of
the same ``flow_id``. Other event types (dns, http, netflow, stats, ...) are skipped and counted
per type in ``stats.skipped``. Mapping:

* ``src_*`` is the originator, ``dest_*`` the responder; ``proto`` is lowercased;
  ``app_proto`` becomes ``service`` (``failed`` and absent become null).
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
import logging
import reprlib
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from netanomd.errors import InputError
from netanomd.flow import FlowBatch, FlowRecord
from netanomd.sources import ReadStats, int_range
from netanomd.sources._text import FileSource, line_blocks, open_binary
from netanomd.sources.suricata_alerts import SignatureJoin

log = logging.getLogger(__name__)

ETHERNET_HEADER = 14
_SYN, _FIN, _RST, _ACK = 0x02, 0x01, 0x04, 0x10


def parse_time(text: str) -> float:
    """EVE timestamp (``2013-03-07T21:42:06.869344+0000``) to epoch seconds."""
    return dt.datetime.fromisoformat(text).timestamp()


def _flags(value: Any) -> int:
    if isinstance(value, str):
        try:
            return int(value, 16)
        except ValueError:
            return 0
    return 0


def conn_state_and_history(
    proto: str, tcp: dict[str, Any] | None, pkts_ts: int, pkts_tc: int, bytes_ts: int, bytes_tc: int
) -> tuple[str, str]:
    """Approximate Zeek ``conn_state`` and ``history`` from an EVE flow (see module doc)."""
    if proto != "tcp" or tcp is None:
        return ("SF" if pkts_tc > 0 and pkts_ts > 0 else "S0"), ("Dd" if pkts_tc else "D")
    ts = _flags(tcp.get("tcp_flags_ts"))
    tc = _flags(tcp.get("tcp_flags_tc"))
    if not ts and not tc:  # only the combined flags are known
        both = _flags(tcp.get("tcp_flags"))
        ts, tc = both, both if pkts_tc else 0
    hist = ""
    if ts & _SYN:
        hist += "S"
    if tc & _SYN and tc & _ACK:
        hist += "h"
    if ts & _ACK:
        hist += "A"
    # Data beyond 40 bytes of IP+TCP header per packet (plus Ethernet) means payload.
    if bytes_ts > pkts_ts * (40 + ETHERNET_HEADER):
        hist += "D"
    if bytes_tc > pkts_tc * (40 + ETHERNET_HEADER):
        hist += "d"
    if ts & _FIN:
        hist += "F"
    if tc & _FIN:
        hist += "f"
    if ts & _RST:
        hist += "R"
    if tc & _RST:
        hist += "r"
    if pkts_tc == 0:
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


def _int(obj: dict[str, Any], key: str, column: str) -> int:
    """``obj[key]`` (0 when absent) as an integer in the range of the flow column it fills."""
    value = obj.get(key, 0)
    lo, hi = int_range(column)
    number = int(value)
    if not lo <= number <= hi or (isinstance(value, float) and value != number):
        raise ValueError(f"{key}: {reprlib.repr(value)} is not an integer from {lo} to {hi}")
    return number


def _text(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key}: {reprlib.repr(value)} is not a string")
    return value


def _address(ev: dict[str, Any], key: str) -> str:
    value = ev[key]
    if not isinstance(value, str):
        raise ValueError(f"{key}: {reprlib.repr(value)} is not an address")
    return value


def record_from_event(ev: dict[str, Any]) -> FlowRecord:
    """A FlowRecord from a decoded EVE ``flow`` event (raises KeyError/ValueError/TypeError)."""
    flow = ev["flow"]
    if not isinstance(flow, dict):
        raise TypeError(f"'flow' is a {type(flow).__name__}, not an object")
    if not isinstance(ev.get("tcp", {}), dict):
        raise TypeError(f"'tcp' is a {type(ev['tcp']).__name__}, not an object")
    proto = str(ev.get("proto", "")).lower()
    pts, ptc = _int(flow, "pkts_toserver", "orig_pkts"), _int(flow, "pkts_toclient", "resp_pkts")
    bts = _int(flow, "bytes_toserver", "orig_ip_bytes")
    btc = _int(flow, "bytes_toclient", "resp_ip_bytes")
    start = parse_time(flow["start"]) if "start" in flow else parse_time(ev["timestamp"])
    end = parse_time(flow["end"]) if "end" in flow else start
    state, hist = conn_state_and_history(proto, ev.get("tcp"), pts, ptc, bts, btc)
    app = ev.get("app_proto")
    flow_id = _int(ev, "flow_id", "flow_id") if "flow_id" in ev else None
    return FlowRecord(
        ts=start,
        uid=f"S{flow_id}" if flow_id is not None else f"S{start}",
        orig_h=_address(ev, "src_ip"),
        orig_p=_int(ev, "src_port", "orig_p") if "src_port" in ev else None,
        resp_h=_address(ev, "dest_ip"),
        resp_p=_int(ev, "dest_port", "resp_p") if "dest_port" in ev else None,
        proto=proto,
        service=app if isinstance(app, str) and app != "failed" else None,
        duration=max(end - start, 0.0),
        conn_state=state,
        history=hist,
        orig_pkts=pts,
        orig_ip_bytes=max(bts - ETHERNET_HEADER * pts, 0),
        resp_pkts=ptc,
        resp_ip_bytes=max(btc - ETHERNET_HEADER * ptc, 0),
        community_id=_text(ev, "community_id"),
        flow_id=flow_id,
        source="suricata",
        label=_text(ev, "label"),
    )


def parse_eve_line(line: bytes, where: str = "<eve>") -> FlowRecord | None:
    """One EVE line: a FlowRecord for a flow event, None for other event types.

    Raises :class:`InputError` naming ``where`` for malformed input.
    """
    try:
        ev = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{where}: invalid JSON ({exc})") from exc
    if not isinstance(ev, dict) or "event_type" not in ev:
        raise InputError(f"{where}: not a Suricata EVE record (no event_type)")
    if ev["event_type"] != "flow":
        return None
    try:
        return record_from_event(ev)
    except Exception as exc:
        raise InputError(f"{where}: flow event missing or bad field ({exc!r})") from exc


def eve_lines_to_batch(
    lines: Sequence[bytes],
    stats: ReadStats,
    where: str,
    first_line: int = 1,
    signatures: SignatureJoin | None = None,
) -> FlowBatch | None:
    """Parse EVE lines into a batch of flow records; other event types are counted.

    With ``signatures`` (the input's join, kept across calls) alert events are kept there and
    the batch's flows carry the signatures that fired on them; without, they are skipped."""
    records: list[FlowRecord] = []
    for offset, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            ev = orjson.loads(line)
            if not isinstance(ev, dict) or "event_type" not in ev:
                raise ValueError("not a Suricata EVE record (no event_type)")
        except ValueError as exc:
            stats.bad_line(f"{where}:{first_line + offset}: {exc}")
            continue
        kind = ev["event_type"]
        if kind == "alert" and signatures is not None:
            try:
                signatures.add(ev)
            except Exception as exc:
                stats.bad_line(f"{where}:{first_line + offset}: bad alert event ({exc!r})")
            continue
        if kind != "flow":
            stats.skip(str(kind))
            continue
        try:
            records.append(record_from_event(ev))
        except Exception as exc:  # any single record is skipped, never fatal to the source
            stats.bad_line(f"{where}:{first_line + offset}: bad flow event ({exc!r})")
    if not records:
        return None
    stats.rows += len(records)
    batch = FlowBatch.from_records(records)
    return signatures.attach(batch) if signatures is not None else batch


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
