"""A bounded, crash-safe, on-disk FIFO of JSON documents (the Elasticsearch delivery spool).

Layout in the spool directory: append-only segment files ``seg-<number>.jsonl`` (one document
per line) and ``cursor.json``, the position (segment, byte offset) of the first document not yet
acknowledged, replaced atomically (write + fsync + rename). A crash at any point loses nothing
that was appended and acknowledged nothing twice: on restart reading resumes at the cursor, and
documents after it are sent again (idempotent downstream thanks to deterministic ids).
Appends are flushed to the OS on every call and fsynced every ``fsync_every`` documents. A
write that fails half-way (a full disk) is cut back off the segment, and a torn last line left
by a crash is cut off when the spool is opened (counted in :attr:`Spool.torn`); a line that is
not a document anyway is skipped and counted (:attr:`Spool.corrupt`), never fatal. Files are
created ``0640`` (:mod:`netanomd.fsutil`): they hold full alert documents.

Bounded: when the total size would exceed ``max_bytes``, the ``drop_oldest`` policy deletes
whole oldest segments (moving the cursor past them), ``drop_newest`` refuses the new documents;
either way the drops are counted in :attr:`Spool.dropped`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from netanomd.fsutil import open_append, write_atomic

log = logging.getLogger(__name__)

SEGMENT_BYTES = 8 << 20


class Spool:
    def __init__(
        self,
        directory: str | os.PathLike[str],
        max_bytes: int = 1 << 30,
        overflow: str = "drop_oldest",
        segment_bytes: int = SEGMENT_BYTES,
        fsync_every: int = 1000,
    ) -> None:
        if overflow not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"overflow must be drop_oldest or drop_newest, not {overflow!r}")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.overflow = overflow
        self.segment_bytes = segment_bytes
        self.fsync_every = fsync_every
        self.dropped = 0
        #: Torn last lines (a crash during an append) cut off when the spool was opened.
        self.torn = 0
        #: Lines that were not JSON documents, skipped.
        self.corrupt = 0
        self._lock = threading.Lock()
        self._unsynced = 0
        cur = self._load_cursor()
        self._cursor_seg, self._cursor_off = cur
        segs = self._segments()
        self._write_seg = segs[-1] if segs else self._cursor_seg
        if segs:
            self._cut_torn_tail(self._seg_path(self._write_seg))
        self._fh = open_append(self._seg_path(self._write_seg))

    def _cut_torn_tail(self, path: Path) -> None:
        """Truncate a segment to its last complete line (what a crash mid-append leaves)."""
        with open(path, "rb+") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return
            back = min(size, 1 << 20)
            fh.seek(size - back)
            tail = fh.read()
            if tail.endswith(b"\n"):
                return
            cut = tail.rfind(b"\n")
            if cut < 0 and back < size:
                return  # no line end in the last MiB: not a torn document; peek skips it
            keep = size - back + cut + 1
            fh.truncate(keep)
        self.torn += 1
        log.warning("%s: cut off a torn last line (%d bytes)", path, size - keep)

    # -- files -----------------------------------------------------------------------------
    def _seg_path(self, n: int) -> Path:
        return self.dir / f"seg-{n:012d}.jsonl"

    def _segments(self) -> list[int]:
        return sorted(int(p.name[4:16]) for p in self.dir.glob("seg-*.jsonl"))

    def _load_cursor(self) -> tuple[int, int]:
        path = self.dir / "cursor.json"
        if not path.exists():
            segs = self._segments()
            return (segs[0] if segs else 0), 0
        data = json.loads(path.read_text())
        return int(data["segment"]), int(data["offset"])

    def _save_cursor(self) -> None:
        cursor = {"segment": self._cursor_seg, "offset": self._cursor_off}
        write_atomic(self.dir / "cursor.json", json.dumps(cursor).encode())

    # -- writing ---------------------------------------------------------------------------
    def size(self) -> int:
        """Bytes on disk not yet acknowledged."""
        total = 0
        for n in self._segments():
            if n < self._cursor_seg:
                continue
            size = self._seg_path(n).stat().st_size
            total += size - (self._cursor_off if n == self._cursor_seg else 0)
        return total

    def append(self, docs: Sequence[dict[str, Any]]) -> int:
        """Append documents; returns how many were accepted (the rest count as dropped)."""
        lines = [orjson.dumps(d) + b"\n" for d in docs]
        with self._lock:
            need = sum(len(x) for x in lines)
            if self.size() + need > self.max_bytes:
                if self.overflow == "drop_newest":
                    room = self.max_bytes - self.size()
                    keep = 0
                    while keep < len(lines) and len(lines[keep]) <= room:
                        room -= len(lines[keep])
                        keep += 1
                    self.dropped += len(lines) - keep
                    if keep < len(lines):
                        log.warning("spool full: dropped %d newest documents", len(lines) - keep)
                    lines = lines[:keep]
                else:
                    self._drop_oldest(need)
            if self._fh.tell() >= self.segment_bytes:
                self._fh.close()
                self._write_seg += 1
                self._fh = open_append(self._seg_path(self._write_seg))
            start = self._fh.tell()
            try:
                self._fh.write(b"".join(lines))
                self._fh.flush()
            except OSError:
                self._undo(start)
                raise
            self._unsynced += len(lines)
            if self._unsynced >= self.fsync_every:
                os.fsync(self._fh.fileno())
                self._unsynced = 0
            return len(lines)

    def _undo(self, start: int) -> None:
        """Cut a half-written append back off (a full disk): reopen, truncate to ``start``."""
        path = self._seg_path(self._write_seg)
        with contextlib.suppress(OSError):  # the buffered rest cannot go anywhere either
            self._fh.close()
        with open(path, "rb+") as fh:
            fh.truncate(start)
        self._fh = open_append(path)

    def _drop_oldest(self, need: int) -> None:
        while self.size() + need > self.max_bytes:
            segs = [n for n in self._segments() if n >= self._cursor_seg]
            if len(segs) <= 1:  # only the segment being written: start a new one
                self._fh.close()
                self._write_seg += 1
                self._fh = open_append(self._seg_path(self._write_seg))
                segs = [n for n in self._segments() if n >= self._cursor_seg]
            oldest = segs[0]
            path = self._seg_path(oldest)
            with open(path, "rb") as fh:
                fh.seek(self._cursor_off if oldest == self._cursor_seg else 0)
                lost = fh.read().count(b"\n")
            self.dropped += lost
            log.warning("spool full: dropped %d oldest documents", lost)
            path.unlink()
            self._cursor_seg, self._cursor_off = segs[1], 0
            self._save_cursor()

    # -- reading ---------------------------------------------------------------------------
    def peek(self, max_docs: int) -> tuple[list[dict[str, Any]], tuple[int, int]]:
        """Up to ``max_docs`` oldest unacknowledged documents and the position after them."""
        with self._lock:
            self._fh.flush()
            docs: list[dict[str, Any]] = []
            seg, off = self._cursor_seg, self._cursor_off
            for n in self._segments():
                if n < seg:
                    continue
                with open(self._seg_path(n), "rb") as fh:
                    fh.seek(off if n == seg else 0)
                    pos = fh.tell()
                    for line in fh:
                        if not line.endswith(b"\n"):
                            break  # a write still in progress: not yet a document
                        pos += len(line)
                        try:
                            doc = orjson.loads(line)
                        except orjson.JSONDecodeError:
                            doc = None
                        if not isinstance(doc, dict) or "_id" not in doc:
                            self.corrupt += 1
                            log.error(
                                "%s: skipped a line that is not a spooled document",
                                self._seg_path(n),
                            )
                            continue
                        docs.append(doc)
                        if len(docs) >= max_docs:
                            return docs, (n, pos)
                seg, off = n, pos
            return docs, (seg, off)

    def ack(self, position: tuple[int, int]) -> None:
        """Everything before ``position`` is delivered: move the cursor, delete old segments."""
        with self._lock:
            self._cursor_seg, self._cursor_off = position
            self._save_cursor()
            for n in self._segments():
                if n < self._cursor_seg and n != self._write_seg:
                    self._seg_path(n).unlink()

    def close(self) -> None:
        with self._lock:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
