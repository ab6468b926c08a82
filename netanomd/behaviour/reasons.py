"""Plain-language reasons: what a flow's Zeek fields mean, in an analyst's words.

Owns the decoding of ``conn_state`` and ``history`` ("lone SYN, no reply", "rejected", "one UDP
packet, no answer"), ICMP types by name (Zeek puts the ICMP type in ``orig_p`` and the code in
``resp_p``: never call them ports), service names for ports, and the wording of shares and
durations ("never seen in training", "5 min"). Sentences are for people; callers keep the
numbers as data beside them.
"""

from __future__ import annotations

import socket

import numpy as np

ICMP_TYPES: dict[int, str] = {
    0: "echo reply",
    3: "destination unreachable",
    4: "source quench",
    5: "redirect",
    8: "echo request (ping)",
    9: "router advertisement",
    10: "router solicitation",
    11: "time exceeded",
    12: "parameter problem",
    13: "timestamp request",
    14: "timestamp reply",
    17: "address mask request",
    18: "address mask reply",
}

# Names Zeek and analysts use where the system services database is silent or terse.
_PORTS: dict[tuple[str, int], str] = {
    ("tcp", 22): "SSH",
    ("tcp", 21): "FTP",
    ("tcp", 23): "Telnet",
    ("tcp", 25): "SMTP",
    ("tcp", 80): "HTTP",
    ("tcp", 443): "HTTPS",
    ("udp", 443): "QUIC",
    ("udp", 53): "DNS",
    ("tcp", 53): "DNS",
    ("udp", 67): "DHCP",
    ("udp", 68): "DHCP",
    ("udp", 123): "NTP",
    ("tcp", 445): "SMB",
    ("tcp", 3389): "RDP",
    ("tcp", 5900): "VNC",
    ("udp", 1900): "SSDP",
    ("udp", 5353): "mDNS",
    ("udp", 137): "NetBIOS name",
    ("tcp", 139): "NetBIOS session",
    ("tcp", 3306): "MySQL",
    ("tcp", 1433): "MS SQL",
    ("tcp", 2323): "Telnet (alt)",
    ("tcp", 8080): "HTTP (alt)",
    ("tcp", 902): "VMware auth",
}

_STATES: dict[str, str] = {
    "S0": "connection attempt, no reply",
    "S1": "connection established, not closed",
    "SF": "normal connection",
    "REJ": "rejected (reset by the responder)",
    "S2": "established, only the originator closed",
    "S3": "established, only the responder closed",
    "RSTO": "originator aborted (reset)",
    "RSTR": "responder aborted (reset)",
    "RSTOS0": "originator sent SYN then reset, no reply",
    "RSTRH": "responder SYN-ACK then reset, originator never seen",
    "SH": "originator sent SYN then FIN, no reply",
    "SHR": "responder SYN-ACK then FIN, originator never seen",
    "OTH": "no handshake seen (midstream or not TCP)",
}


def service_name(proto: str, port: int) -> str:
    """``"SSH (22/tcp)"``; ICMP gets its type name instead of a port."""
    proto = (proto or "").lower()
    if proto == "icmp":
        return f"ICMP {icmp_type(port)}"
    name = _PORTS.get((proto, port))
    if name is None and proto in ("tcp", "udp") and 0 <= port < 65536:
        try:
            name = socket.getservbyport(port, proto)
        except OSError:
            name = None
    return f"{name} ({port}/{proto})" if name else f"{port}/{proto}"


def icmp_type(t: int) -> str:
    return ICMP_TYPES.get(int(t), f"type {int(t)}")


def describe_flow(
    proto: str,
    conn_state: str | None,
    history: str | None,
    orig_pkts: int | None,
    resp_pkts: int | None,
) -> str:
    """What happened on the wire, e.g. ``"lone SYN, no reply"``, ``"one UDP packet, no answer"``."""
    proto = (proto or "").lower()
    hist = history or ""
    if proto == "udp" and (resp_pkts or 0) == 0:
        return "one UDP packet, no answer" if orig_pkts == 1 else "UDP packets, no answer"
    if proto == "icmp":
        return "ICMP, answered" if (resp_pkts or 0) > 0 else "ICMP, no answer"
    if conn_state == "S0" and hist in ("S", "") and (orig_pkts or 1) <= 1:
        return "lone SYN, no reply"
    if conn_state == "REJ":
        return "rejected"
    return _STATES.get(conn_state or "", f"state {conn_state or 'unknown'}")


def share(part: float, whole: float) -> str:
    """``"none"``, ``"all"``, ``"3 of 40"``: how much of a whole, in words."""
    if whole <= 0 or part <= 0:
        return "none"
    if part >= whole:
        return "all"
    return f"{int(part):,} of {int(whole):,}"


def training_share(fraction: float) -> str:
    """A share of the training data, with 0 said as what it means."""
    if fraction <= 0:
        return "never seen in training"
    return f"{fraction:.2%} of training"


def plural(n: int, noun: str) -> str:
    """``"1 host"``, ``"1,809 hosts"``."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``412th``."""
    return str(ordinals(np.array([n]))[0])


def ordinals(n: np.ndarray) -> np.ndarray:
    """:func:`ordinal` of every count at once (strings)."""
    k = np.asarray(n, dtype=np.int64)
    ones, tens = k % 10, k % 100
    suffix = np.where(
        (tens >= 10) & (tens <= 20),
        "th",
        np.select([ones == 1, ones == 2, ones == 3], ["st", "nd", "rd"], "th"),
    )
    return np.char.add(np.array([f"{x:,}" for x in k.tolist()], dtype=str), suffix)


def period(scale: float) -> str:
    """A window in words: ``"this minute"``, ``"in 10 minutes"``, ``"this hour"``."""
    return {60.0: "this minute", 600.0: "in 10 minutes", 3600.0: "this hour"}.get(
        float(scale), f"in {duration(scale)}"
    )


def host_context(new_peers: np.ndarray, scale: float) -> np.ndarray:
    """``"host's 412th new destination this hour"`` per new-peer count of a window."""
    return np.char.add(
        np.char.add("host's ", ordinals(new_peers)), f" new destination {period(scale)}"
    )


def failed_attempts(failed: np.ndarray, scale: float) -> np.ndarray:
    """``"3rd unanswered attempt at this peer and port in 10 minutes"`` per count."""
    return np.char.add(
        ordinals(failed), f" unanswered attempt at this peer and port {period(scale)}"
    )


def duration(seconds: float) -> str:
    """``"40 s"``, ``"5 min"``, ``"2.5 h"``."""
    s = max(float(seconds), 0.0)
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def amount(nbytes: float) -> str:
    """``"4.2 MB"``: bytes for people."""
    b = float(nbytes)
    for unit in ("B", "kB", "MB", "GB"):
        if b < 1000 or unit == "GB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1000
    return f"{b:.1f} TB"
