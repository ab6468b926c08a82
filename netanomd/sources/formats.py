"""Which flow-log format a text is, decided from its first line, and the decoder that turns the
lines of a live, line-oriented log into FlowBatches.

:func:`sniff_line` is the one format rule: the file readers (:func:`netanomd.sources.files.
detect_format`) and the live followers both use it. :class:`LineDecoder` keeps what a stream of
lines has said so far (a Zeek ``#`` header, or JSON) and decodes blocks of data lines; it does not
decide before it has seen a whole first data line, so a Zeek log that is empty when first opened
(as right after Zeek creates it) is not mistaken for JSON.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import orjson

from netanomd.errors import InputError
from netanomd.flow import FlowBatch
from netanomd.sources import ReadStats
from netanomd.sources.cicflowmeter import looks_like_cic
from netanomd.sources.suricata_alerts import SignatureJoin
from netanomd.sources.zeek_log import (
    ZeekTsvHeader,
    zeek_json_lines_to_batch,
    zeek_tsv_lines_to_batch,
)

#: Formats a followed file, a socket or a Redis list may carry (one record per line).
LINE_FORMATS = ("zeek-tsv", "zeek-json", "eve")


def sniff_line(first: str, where: str) -> str:
    """The format whose first line is ``first``: ``zeek-tsv``, ``zeek-json``, ``eve``,
    ``zeek-csv`` or ``cicflowmeter``; :class:`InputError` naming ``where`` otherwise."""
    if first.startswith("#separator") or first.startswith("#fields"):
        return "zeek-tsv"
    if first.startswith("{"):
        try:
            obj = orjson.loads(first)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"{where}:1: starts like JSON but is not valid JSON ({exc})") from exc
        if isinstance(obj, dict) and "event_type" in obj:
            return "eve"
        if isinstance(obj, dict) and "id.orig_h" in obj:
            return "zeek-json"
        raise InputError(f"{where}: JSON, but neither a Zeek conn log nor Suricata EVE")
    if "," in first:
        names = [h.strip() for h in first.split(",")]
        if "id.orig_h" in names:
            return "zeek-csv"
        if looks_like_cic(first):
            return "cicflowmeter"
    raise InputError(
        f"{where}: not a flow log (expected a Zeek conn.log, Suricata EVE JSON or "
        f"CICFlowMeter CSV; first line starts {first[:40]!r})"
    )


class LineDecoder:
    """Decodes one stream of log lines (a followed file from its start, a socket, a list).

    ``decode(lines, first_line)`` takes lines in order (without line ends) and returns the flows
    they hold, or None; ``#`` lines before the first data line are the Zeek header, later ones
    (``#close``) are skipped, and a new ``#separator`` starts a new header (a file truncated and
    rewritten): the lines before it are decoded with the old header, those after it with the
    new one. A new header that cannot be parsed is counted as a bad line and the old one is kept,
    so one stray ``#separator`` line cannot silence the stream. Malformed lines are counted in
    ``stats`` with ``where`` and their line number.
    """

    def __init__(self, where: str, stats: ReadStats, formats: Sequence[str] = LINE_FORMATS):
        self.where = where
        self.stats = stats
        #: Suricata alert events waiting for their flows (an EVE stream).
        self.signatures = SignatureJoin(stats)
        self.formats = tuple(formats)
        #: The decided format, None until the first data line.
        self.format: str | None = None
        self._head: list[bytes] = []
        #: A new header is being read (lines since a ``#separator``, or the top of the stream).
        self._reading_head = True
        self._header: ZeekTsvHeader | None = None

    def decode(self, lines: Sequence[bytes], first_line: int = 1) -> FlowBatch | None:
        batches = [b for b in self._walk(lines, first_line, decode=True) if b is not None]
        if not batches:
            return None
        return batches[0] if len(batches) == 1 else FlowBatch.concat(batches)

    def prime(self, lines: Sequence[bytes]) -> None:
        """Learn the header and the format from the top of a file without decoding its data
        (a follower resuming from a saved offset)."""
        for _ in self._walk(lines, 1, decode=False):
            pass

    def _walk(
        self, lines: Sequence[bytes], first_line: int, *, decode: bool
    ) -> Iterator[FlowBatch | None]:
        """The batches of the runs of data lines that share a format and header. A run keeps
        skipped lines as empty ones, so the decoders number its lines right."""
        body: list[bytes] = []
        start = first_line
        for i, line in enumerate(lines):
            lineno = first_line + i
            if line.startswith(b"#"):
                if line.startswith(b"#separator") and not self._reading_head:
                    self._head, self._reading_head = [], True
                if self._reading_head:
                    self._head.append(line)
            elif line.strip() and self._reading_head:
                if body:  # the lines so far go with the header they came under
                    if decode:
                        yield self._decode(body, start)
                    body = []
                if not self._decide(line, lineno):
                    line = b""  # counted as bad
            if not line.strip() or line.startswith(b"#"):
                if body:
                    body.append(b"")
                continue
            if not body:
                start = lineno
            body.append(line)
        if body and decode:
            yield self._decode(body, start)

    def _decode(self, body: list[bytes], first_line: int) -> FlowBatch | None:
        while body and not body[-1]:
            body.pop()
        if not body:
            return None
        if self.format == "eve":
            # Imported here, as netanomd.sources.files does: numba only where EVE is read.
            from netanomd.sources.suricata_eve import eve_lines_to_batch

            return eve_lines_to_batch(body, self.stats, self.where, first_line, self.signatures)
        if self.format == "zeek-json":
            return zeek_json_lines_to_batch(body, self.stats, self.where, first_line)
        assert self._header is not None
        return zeek_tsv_lines_to_batch(body, self._header, self.stats, self.where, first_line)

    def _decide(self, line: bytes, lineno: int) -> bool:
        """Decide the format (and the Zeek header) on the first data line after a header;
        False (line counted as bad) if it cannot be one of ``formats`` and no earlier decision
        stands."""
        head, self._head, self._reading_head = self._head, [], False
        try:
            if head:
                self._header = ZeekTsvHeader.parse(head, self.where)
                fmt = "zeek-tsv"
            else:
                fmt = sniff_line(line.decode("utf-8", "replace"), f"{self.where}:{lineno}")
            if fmt not in self.formats:
                raise InputError(f"{self.where}:{lineno}: a {fmt} log cannot be read line by line")
        except InputError as exc:
            if self.format is not None:  # a stray header line: keep the header in force
                self.stats.bad_line(f"{exc} (header lines before line {lineno} ignored)")
                return True
            self.stats.bad_line(str(exc))
            self._head, self._reading_head = head, True  # the next data line tries again
            return False
        self.format = fmt
        return True
