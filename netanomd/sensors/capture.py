"""What a capture file is, from its first bytes: classic pcap (either byte order, microsecond
or nanosecond timestamps) or pcapng. Anything else is refused before a sensor runs on it."""

from __future__ import annotations

from pathlib import Path

from netanomd.errors import InputError

#: The first four bytes of each capture format, as stored on disk.
MAGIC: dict[bytes, str] = {
    bytes.fromhex("d4c3b2a1"): "pcap",  # little-endian, microseconds
    bytes.fromhex("a1b2c3d4"): "pcap",  # big-endian, microseconds
    bytes.fromhex("4d3cb2a1"): "pcap",  # little-endian, nanoseconds
    bytes.fromhex("a1b23c4d"): "pcap",  # big-endian, nanoseconds
    bytes.fromhex("0a0d0d0a"): "pcapng",  # section header block, either byte order
}


def capture_format(path: str | Path) -> str:
    """``pcap`` or ``pcapng``; an :class:`InputError` naming the file and what it holds instead."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{path}: is a directory, not a capture file")
    try:
        with p.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    kind = MAGIC.get(head)
    if kind is not None:
        return kind
    if not head:
        raise InputError(f"{path}: empty file, not a capture")
    if head[:2] == b"\x1f\x8b":
        raise InputError(f"{path}: gzip-compressed; decompress it first (gunzip), then retry")
    raise InputError(
        f"{path}: not a pcap or pcapng capture (first bytes {head.hex()}; a pcap starts with "
        "d4c3b2a1 or a1b2c3d4, a pcapng with 0a0d0d0a)"
        + (
            "; it looks like text: score logs with 'netanomd score'"
            if all(32 <= b < 127 or b in b"\t\r\n" for b in head)
            else ""
        )
    )


def _text(head: bytes) -> bool:
    return all(32 <= b < 127 or b in b"\t\r\n" for b in head)
