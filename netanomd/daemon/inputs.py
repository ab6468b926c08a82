"""Live inputs of the daemon (besides the Zeek transports): followed log files, Suricata's EVE
unix sockets, and a Redis list.

* :class:`LogFollower` follows a Zeek conn.log (TSV or JSON) or a Suricata ``eve.json`` like
  ``tail -F``: across rotation (rename + new file, or truncation) and from a saved offset after
  a restart. The offset (file identity + byte position) is committed only when the pipeline
  acknowledges that the flows before it reached every sink, so a restart neither re-scores nor
  skips flows; if the file was rotated while the daemon was down, the rest of the old file is
  found by its inode in the same directory and read first.
* :class:`EveSocket` binds the unix socket Suricata's ``unix_dgram`` / ``unix_stream`` EVE
  output connects to (one record per datagram or line).
* :class:`RedisInput` pops from the list Suricata's ``redis`` output pushes to (``list`` mode;
  several daemons can share one list) or subscribes to a channel (``pubsub``).

Only flow records are scored; other EVE event types are counted and ignored. Malformed lines are
counted and logged (rate-limited) with where they came from, never fatal.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netanomd.daemon.pipeline import Pipeline
from netanomd.errors import InputError
from netanomd.flow import FlowBatch
from netanomd.sources import ReadStats
from netanomd.sources.suricata_eve import eve_lines_to_batch
from netanomd.sources.zeek_log import (
    ZeekTsvHeader,
    zeek_json_lines_to_batch,
    zeek_tsv_lines_to_batch,
)

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_LINES = 2000


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
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text(json.dumps(self._data))
            os.replace(tmp, self.path)


class _Stopper:
    def __init__(self) -> None:
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()


class LogFollower(_Stopper):
    """Follow one log file (Zeek TSV/JSON conn.log or Suricata eve.json)."""

    def __init__(
        self,
        path: str | Path,
        kind: str,
        pipeline: Pipeline,
        offsets: OffsetStore,
        *,
        from_start: bool = False,
        poll: float = 0.2,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if kind not in ("zeek", "eve"):
            raise ValueError(f"kind must be zeek or eve, not {kind!r}")
        self.path = Path(path)
        self.kind = kind
        self.pipeline = pipeline
        self.offsets = offsets
        self.from_start = from_start
        self.poll = poll
        self.name = name or f"{kind}:{self.path}"
        self.stats = ReadStats()
        self.rotations = 0
        self._header: ZeekTsvHeader | None = None
        self._json = False

    # -- opening -----------------------------------------------------------------------------
    def _open(self, path: Path) -> tuple[Any, int] | None:
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

    def _read_header(self, fh: Any) -> int:
        """For Zeek logs: parse the ``#`` header (TSV) or detect JSON; returns the data start."""
        if self.kind != "zeek":
            return 0
        fh.seek(0)
        head: list[bytes] = []
        pos = 0
        while True:
            line = fh.readline()
            if not line.endswith(b"\n"):
                break
            if not line.startswith(b"#"):
                self._json = line.lstrip().startswith(b"{")
                break
            head.append(line)
            pos += len(line)
        if head:
            if not any(h.startswith(b"#fields") for h in head):
                return -1  # the header is still being written
            self._header = ZeekTsvHeader.parse([h.rstrip(b"\r\n") for h in head], str(self.path))
            self._json = False
        return pos

    # -- main loop ---------------------------------------------------------------------------
    def run(self) -> None:
        """Follow until stopped; an unexpected error is logged and following starts over
        from the last committed offset."""
        while not self.stopping:
            try:
                self._run()
                return
            except (OSError, InputError) as exc:
                log.error("%s: %s; retrying", self.name, exc)
                time.sleep(max(self.poll, 1.0))

    def _run(self) -> None:
        saved = self.offsets.get(str(self.path))
        opened = None
        while opened is None and not self.stopping:
            opened = self._open(self.path)
            if opened is None:
                time.sleep(self.poll)
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
                self._follow(got[0], got[1], saved["offset"], switch_to_current=True)
                self.rotations += 1
            start = 0
        while not self.stopping:
            fh, inode = self._follow(fh, inode, start, switch_to_current=False)
            if fh is None:
                return
            start = 0

    def _follow(
        self, fh: Any, inode: int, start: int, *, switch_to_current: bool
    ) -> tuple[Any, int]:
        """Read ``fh`` from ``start``; at EOF, return the next file to read (after rotation),
        or (None, 0) when stopping. With ``switch_to_current``, return at the first EOF."""
        data_start = self._read_header(fh)
        while data_start < 0 and not self.stopping:
            time.sleep(self.poll)
            data_start = self._read_header(fh)
        pos = max(start, data_start)
        fh.seek(pos)
        buf = b""
        lineno = 0
        while not self.stopping:
            chunk = fh.read(CHUNK)
            if chunk:
                buf += chunk
                cut = buf.rfind(b"\n")
                if cut < 0:
                    continue
                lines = buf[: cut + 1].splitlines()
                buf = buf[cut + 1 :]
                for i in range(0, len(lines), MAX_LINES):
                    part = lines[i : i + MAX_LINES]
                    pos += sum(len(x) + 1 for x in part)
                    self._emit(part, inode, pos, lineno)
                    lineno += len(part)
                continue
            if switch_to_current:
                if buf:  # an unterminated last line of a finished file
                    pos += len(buf)
                    self._emit([buf], inode, pos, lineno)
                fh.close()
                return None, 0
            # At EOF: has the file been rotated or truncated?
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                time.sleep(self.poll)
                continue
            if st.st_ino != inode:
                rest = fh.read()
                if rest:  # written just before the rename
                    buf += rest
                    continue
                fh.close()
                got = self._open(self.path)
                if got is None:
                    time.sleep(self.poll)
                    continue
                self.rotations += 1
                log.info("%s: rotated, following the new file", self.name)
                return got
            if st.st_size < pos:
                log.info("%s: truncated, reading from the start", self.name)
                self.rotations += 1
                fh.seek(0)
                self._read_header(fh)
                return fh, inode
            time.sleep(self.poll)
        fh.close()
        return None, 0

    def _emit(self, lines: list[bytes], inode: int, end: int, lineno: int) -> None:
        body = [ln for ln in lines if ln and not ln.startswith(b"#")]
        where = str(self.path)
        batch: FlowBatch | None = None
        try:
            if not body:
                batch = None
            elif self.kind == "eve":
                batch = eve_lines_to_batch(body, self.stats, where, lineno + 1)
            elif self._json or self._header is None:
                batch = zeek_json_lines_to_batch(body, self.stats, where, lineno + 1)
            else:
                batch = zeek_tsv_lines_to_batch(body, self._header, self.stats, where, lineno + 1)
        except InputError as exc:
            self.stats.bad_line(str(exc))
        key = str(self.path)

        def ack() -> None:
            self.offsets.commit(key, inode, end)

        if batch is None:
            ack()
            return
        # A file can wait: apply backpressure rather than dropping.
        while not self.pipeline.offer(batch, self.name, ack, block=True, timeout=1.0):
            if self.stopping or not self.pipeline.accepting:
                return


class EveSocket(_Stopper):
    """The unix socket Suricata's EVE ``unix_dgram`` / ``unix_stream`` output connects to."""

    def __init__(
        self,
        path: str | Path,
        kind: str,
        pipeline: Pipeline,
        *,
        batch_lines: int = 1000,
        batch_wait: float = 0.01,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if kind not in ("dgram", "stream"):
            raise ValueError(f"kind must be dgram or stream, not {kind!r}")
        self.path = Path(path)
        self.kind = kind
        self.pipeline = pipeline
        self.batch_lines = batch_lines
        self.batch_wait = batch_wait
        self.name = name or f"eve-{kind}:{self.path}"
        self.stats = ReadStats()
        self.ready = threading.Event()
        self._pending: list[bytes] = []
        self._first = 0.0

    def run(self) -> None:
        self.path.unlink(missing_ok=True)
        kind = socket.SOCK_DGRAM if self.kind == "dgram" else socket.SOCK_STREAM
        srv = socket.socket(socket.AF_UNIX, kind)
        srv.bind(str(self.path))
        os.chmod(self.path, 0o660)  # Suricata's group may write (the directory decides who)
        if self.kind == "dgram":
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        else:
            srv.listen(8)
        srv.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(srv, selectors.EVENT_READ, None)
        partial: dict[int, bytes] = {}
        self.ready.set()
        try:
            while not self.stopping:
                timeout = self.batch_wait if self._pending else 0.2
                for key, _ in sel.select(timeout):
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    if sock is srv and self.kind == "stream":
                        conn, _ = srv.accept()
                        conn.setblocking(False)
                        sel.register(conn, selectors.EVENT_READ, None)
                        continue
                    try:
                        data = sock.recv(1 << 20)
                    except BlockingIOError:
                        continue
                    if self.kind == "dgram":
                        self._add(data.splitlines())
                        continue
                    if not data:
                        sel.unregister(sock)
                        sock.close()
                        partial.pop(id(sock), None)
                        continue
                    data = partial.pop(id(sock), b"") + data
                    cut = data.rfind(b"\n")
                    if cut < len(data) - 1:
                        partial[id(sock)] = data[cut + 1 :]
                    self._add(data[: cut + 1].splitlines())
                if self._pending and (
                    len(self._pending) >= self.batch_lines
                    or time.monotonic() - self._first >= self.batch_wait
                ):
                    self._flush()
            self._flush()
        finally:
            sel.close()
            srv.close()
            self.path.unlink(missing_ok=True)

    def _add(self, lines: list[bytes]) -> None:
        if not self._pending:
            self._first = time.monotonic()
        self._pending.extend(ln for ln in lines if ln.strip())
        if len(self._pending) >= self.batch_lines:
            self._flush()

    def _flush(self) -> None:
        lines, self._pending = self._pending, []
        if not lines:
            return
        batch = eve_lines_to_batch(lines, self.stats, self.name)
        if batch is not None:
            # Suricata cannot be paused through a socket: the pipeline's policy decides.
            self.pipeline.offer(batch, self.name, block=False, arrived=self._first)


class RedisInput(_Stopper):
    """Suricata's ``redis`` EVE output: a list (LPOP, shared by several daemons) or pub/sub."""

    def __init__(
        self,
        url: str,
        key: str,
        mode: str,
        pipeline: Pipeline,
        *,
        batch_lines: int = 1000,
        client_factory: Callable[[str], Any] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if mode not in ("list", "pubsub"):
            raise ValueError(f"mode must be list or pubsub, not {mode!r}")
        self.url = url
        self.key = key
        self.mode = mode
        self.pipeline = pipeline
        self.batch_lines = batch_lines
        self.name = name or f"redis:{key}"
        self.stats = ReadStats()
        self.errors = 0
        self._factory = client_factory

    def _client(self) -> Any:
        if self._factory is not None:
            return self._factory(self.url)
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5)

    def run(self) -> None:
        backoff = 0.5
        while not self.stopping:
            try:
                client = self._client()
                if self.mode == "list":
                    self._run_list(client)
                else:
                    self._run_pubsub(client)
                backoff = 0.5
            except Exception as exc:  # redis.ConnectionError and friends: retry
                self.errors += 1
                log.warning("%s: %s; retrying in %.1fs", self.name, exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    def _run_list(self, client: Any) -> None:
        while not self.stopping:
            items = client.lpop(self.key, self.batch_lines)
            if not items:
                got = client.blpop([self.key], timeout=1)
                if got is None:
                    continue
                items = [got[1]]
            self._emit(items)

    def _run_pubsub(self, client: Any) -> None:
        ps = client.pubsub(ignore_subscribe_messages=True)
        ps.subscribe(self.key)
        pending: list[bytes] = []
        first = 0.0
        try:
            while not self.stopping:
                msg = ps.get_message(timeout=0.05)
                if msg is not None and msg.get("type") == "message":
                    if not pending:
                        first = time.monotonic()
                    pending.append(msg["data"])
                if pending and (
                    len(pending) >= self.batch_lines or time.monotonic() - first > 0.05
                ):
                    self._emit(pending)
                    pending = []
        finally:
            ps.close()

    def _emit(self, items: list[bytes]) -> None:
        batch = eve_lines_to_batch(
            [i if isinstance(i, bytes) else str(i).encode() for i in items], self.stats, self.name
        )
        if batch is None:
            return
        # Items popped from a list are ours: wait for room rather than dropping them.
        while not self.pipeline.offer(batch, self.name, block=True, timeout=1.0):
            if self.stopping:
                return
