"""Followed log files: a Zeek conn.log (TSV or JSON) or a Suricata ``eve.json``, read like
``tail -F`` as a :class:`~netanomd.sources.LiveSource`.

Owns following across rotation (rename + new file, or truncation) and resuming after a restart.
Positions are byte offsets saved in :class:`OffsetStore` (``offsets.json``), committed only when
the pipeline acknowledges that everything before them reached every sink, so a restart neither
re-scores nor skips flows; if the file was rotated while the daemon was down, the rest of the old
file is found by its inode in the same directory and read first. Lines are cut by the one
:class:`~netanomd.sources._text.LineSplitter` (exact byte counts, CRLF included) and decoded by
:class:`~netanomd.sources.formats.LineDecoder` (format decided on the first data line, so a log
that is empty when first opened is not mistaken for JSON).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import IO

from netanomd.errors import InputError
from netanomd.flow import FlowBatch
from netanomd.fsutil import write_atomic
from netanomd.sources import Ack, Emit, ReadStats
from netanomd.sources._text import LineSplitter
from netanomd.sources.formats import LINE_FORMATS, LineDecoder

log = logging.getLogger(__name__)

#: Bytes read at a time; the flows of one read go to the pipeline as one batch.
CHUNK = 1 << 20


class OffsetStore:
    """Byte offsets of followed files, saved atomically as JSON (``offsets.json``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._data: dict[str, dict[str, int]] = json.loads(self.path.read_text())
        except FileNotFoundError:
            self._data = {}
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable (%s); following files from their end", self.path, exc)
            self._data = {}

    def get(self, key: str) -> dict[str, int] | None:
        with self._lock:
            return dict(self._data[key]) if key in self._data else None

    def commit(self, key: str, inode: int, offset: int) -> None:
        with self._lock:
            self._data[key] = {"inode": inode, "offset": offset}
            write_atomic(self.path, json.dumps(self._data).encode(), fsync=False)


class LogFollower:
    """Follow one log file; every read's flows go to ``emit`` with an ack that saves the offset."""

    def __init__(
        self,
        path: str | Path,
        emit: Emit,
        offsets: OffsetStore,
        *,
        from_start: bool = False,
        poll: float = 0.2,
        name: str | None = None,
        formats: tuple[str, ...] = LINE_FORMATS,
    ) -> None:
        self.path = Path(path)
        self.emit = emit
        self.offsets = offsets
        self.from_start = from_start
        self.poll = poll
        self.formats = formats
        self.name = name or f"follow:{self.path}"
        self.stats = ReadStats()
        self.rotations = 0
        self.ready = threading.Event()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- main loop ---------------------------------------------------------------------------
    def run(self) -> None:
        """Follow until stopped; an unexpected error is logged and following starts over
        from the last committed offset."""
        self.ready.set()
        while not self.stopping:
            try:
                self._run()
                return
            except (OSError, InputError) as exc:
                log.error("%s: %s; retrying", self.name, exc)
                self._stop.wait(max(self.poll, 1.0))

    def _run(self) -> None:
        saved = self.offsets.get(str(self.path))
        opened = None
        while opened is None and not self.stopping:
            opened = self._open(self.path)
            if opened is None:
                self._stop.wait(self.poll)
        if opened is None:
            return
        fh, inode = opened
        size = os.fstat(fh.fileno()).st_size
        if saved is None:
            start = 0 if self.from_start else size
        elif saved["inode"] == inode:
            start = saved["offset"] if saved["offset"] <= size else 0
        else:
            # Rotated while we were down: finish the old file (found by inode), then read the
            # current one from its start.
            old = self._find_rotated(saved["inode"])
            got = self._open(old) if old is not None else None
            if got is not None:
                log.info("%s: finishing rotated %s from offset %d", self.name, old, saved["offset"])
                self._follow(got[0], got[1], saved["offset"], finish=True)
                self.rotations += 1
            start = 0
        next_file: tuple[IO[bytes], int] | None = (fh, inode)
        while next_file is not None and not self.stopping:
            next_file = self._follow(*next_file, start, finish=False)
            start = 0

    def _open(self, path: Path) -> tuple[IO[bytes], int] | None:
        try:
            fh = open(path, "rb")  # noqa: SIM115 - owned by the follow loop
        except FileNotFoundError:
            return None
        return fh, os.fstat(fh.fileno()).st_ino

    def _find_rotated(self, inode: int) -> Path | None:
        for p in self.path.parent.iterdir():
            try:
                if p.is_file() and p.stat().st_ino == inode and p != self.path:
                    return p
            except OSError:
                continue
        return None

    def _follow(
        self, fh: IO[bytes], inode: int, start: int, *, finish: bool
    ) -> tuple[IO[bytes], int] | None:
        """Read ``fh`` from ``start``; at EOF, return the next file to read (after rotation or
        truncation), or None when stopping. With ``finish``, return at the first EOF."""
        decoder = LineDecoder(str(self.path), self.stats, self.formats)
        pos = max(start, _prime(fh, decoder))
        if pos:
            decoder.where = f"{self.path} (from byte {pos})"
        fh.seek(pos)
        splitter = LineSplitter(pos)
        lineno = 1
        try:
            while not self.stopping:
                chunk = fh.read(CHUNK)
                if chunk:
                    lines = splitter.feed(chunk)
                    if lines:
                        self._emit(decoder, lines, lineno, inode, splitter.end)
                        lineno += len(lines)
                    continue
                if finish:
                    self._emit(decoder, splitter.finish(), lineno, inode, splitter.end)
                    return None
                try:  # at EOF: has the file been rotated or truncated?
                    st = os.stat(self.path)
                except FileNotFoundError:
                    self._stop.wait(self.poll)
                    continue
                if st.st_ino != inode:
                    rest = fh.read()
                    if rest:  # written just before the rename
                        lines = splitter.feed(rest)
                        self._emit(decoder, lines, lineno, inode, splitter.end)
                        lineno += len(lines)
                        continue
                    self._emit(decoder, splitter.finish(), lineno, inode, splitter.end)
                    got = self._open(self.path)
                    if got is None:
                        self._stop.wait(self.poll)
                        continue
                    self.rotations += 1
                    log.info("%s: rotated, following the new file", self.name)
                    fh.close()
                    return got
                if st.st_size < splitter.end + splitter.pending:
                    log.info("%s: truncated, reading from the start", self.name)
                    self.rotations += 1
                    fh.seek(0)
                    return fh, inode
                self._stop.wait(self.poll)
        except BaseException:
            fh.close()
            raise
        fh.close()
        return None

    def _emit(
        self, decoder: LineDecoder, lines: list[bytes], lineno: int, inode: int, end: int
    ) -> None:
        try:
            batch = decoder.decode(lines, lineno) if lines else None
        except InputError as exc:
            self.stats.bad_line(str(exc))
            batch = None
        key = str(self.path)

        def ack() -> None:
            self.offsets.commit(key, inode, end)

        # Even a read with no flows (a #close line, only bad lines) is acknowledged in order,
        # after the flows before it: its offset must not be committed ahead of theirs.
        self._hand_over(batch if batch is not None else FlowBatch.empty(), ack)

    def _hand_over(self, batch: FlowBatch, ack: Ack) -> None:
        # A file can wait: apply backpressure rather than dropping.
        while not self.emit(batch, ack):
            if self._stop.wait(0.05):
                return


def _prime(fh: IO[bytes], decoder: LineDecoder) -> int:
    """Show the decoder the top of the file (the Zeek header and the first data line); returns
    the offset just past the complete ``#`` header lines."""
    fh.seek(0)
    top: list[bytes] = []
    pos = 0
    while True:
        line = fh.readline()
        if not line.endswith(b"\n"):
            break
        text = line.rstrip(b"\r\n")
        top.append(text)
        if not text.startswith(b"#"):
            break
        pos += len(line)
    decoder.prime(top)
    return pos
