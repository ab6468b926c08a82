"""Open a flow file by what it contains, not by its name.

Recognised: Zeek ASCII conn.log (``#separator`` header), Zeek JSON conn.log (objects with
``id.orig_h``), Suricata EVE JSON (objects with ``event_type``), IoT-23's CSV export of
conn.log (header with ``id.orig_h``) and CICFlowMeter CSV. Any of them may be gzipped.
Anything else raises one :class:`~netanomd.errors.InputError` naming the file and why.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from netanomd.errors import InputError
from netanomd.flow import FlowBatch
from netanomd.sources import ReadStats, Source
from netanomd.sources._text import DEFAULT_BATCH, head
from netanomd.sources.cicflowmeter import CicFlowMeterSource
from netanomd.sources.formats import sniff_line
from netanomd.sources.zeek_log import ZeekCsvSource, ZeekJsonSource, ZeekTsvSource


def detect_format(path: str | Path) -> str:
    """One of ``zeek-tsv``, ``zeek-json``, ``eve``, ``zeek-csv``, ``cicflowmeter``."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{path}: is a directory, not a log file")
    data = head(p)
    if not data.strip():
        raise InputError(f"{path}: empty file")
    if b"\x00" in data[:4096]:
        raise InputError(f"{path}: binary data, not a text log (a capture? netanomd pcap {path})")
    raw_first = data.lstrip().split(b"\n", 1)[0].rstrip(b"\r")
    try:
        first = raw_first.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(raw_first) < len(data.lstrip()):  # a whole first line that is not text
            raise InputError(f"{path}: not UTF-8 text, so not a Zeek/Suricata log") from exc
        first = raw_first[: exc.start].decode("utf-8")  # the read cut a character
    return sniff_line(first, str(path))


def open_source(path: str | Path, *, batch_size: int = DEFAULT_BATCH) -> Source:
    """A :class:`Source` for the file, chosen by content."""
    kind = detect_format(path)
    if kind == "zeek-tsv":
        return ZeekTsvSource(path, batch_size)
    if kind == "zeek-json":
        return ZeekJsonSource(path, batch_size)
    if kind == "eve":
        # Imported here: the EVE scanner's numba kernels (and numba itself, ~0.25 CPU-s and
        # ~70 MiB) are loaded only where an EVE file is read.
        from netanomd.sources.suricata_eve import SuricataEveSource

        return SuricataEveSource(path, batch_size)
    if kind == "zeek-csv":
        return ZeekCsvSource(path, batch_size)
    return CicFlowMeterSource(path, batch_size)


def read_batches(
    paths: Sequence[str | Path], stats: ReadStats, *, batch_size: int = DEFAULT_BATCH
) -> Iterator[FlowBatch]:
    """Batches from every file in turn; ``stats`` accumulates each file's statistics."""
    for path in paths:
        source = open_source(path, batch_size=batch_size)
        try:
            yield from source.batches()
        finally:
            stats.merge(source.stats)
