"""Suricata's EVE unix-socket output as a :class:`~netanomd.sources.LiveSource`.

Owns the socket Suricata's ``filetype: unix_dgram`` (one record per datagram) or ``unix_stream``
(one record per line; a connection's unended last line kept for its next read) output connects
to: binding it (mode 0660, so Suricata's group may write; the directory decides who), reading
everything waiting on one wake-up (datagrams many per system call, by
:class:`~netanomd.sources.datagrams.DatagramReader`, waited for with one ``poll``; a stream with
``recv_into`` one reused buffer until a read comes back short), micro-batching by count or time
(a batch is decoded ``batch_wait`` seconds after its oldest record was read at the latest), and
decoding the batch at once with the EVE decoder, as one block of lines (no object per record;
datagrams are read where the kernel wrote them, in slots for a batch's ``batch_lines``
records). Suricata cannot be paused through a socket, and drops what does not fit in the
kernel's queue: the emit callable's policy decides what happens when scoring falls behind.

A wake-up costs more than the records it reads when they come one or two at a time (the
sender is slower than the reader). Where the kernel's queue has room for it (a stream
connection's buffer, or a datagram queue of :data:`DGRAM_QLEN_ENOUGH` records or more), the
reader lets records gather for :data:`LINGER` seconds after a read that found few before it
looks again: at 100,000 records a second that is ~50 records a wake-up instead of ~1, and
never more than a tenth of what the queue holds at 200,000 a second.
"""

from __future__ import annotations

import logging
import os
import select
import selectors
import socket
import threading
import time
from pathlib import Path

from netanomd.sources import Emit, ReadStats, evescan
from netanomd.sources.datagrams import DatagramReader
from netanomd.sources.suricata_alerts import SignatureJoin
from netanomd.sources.suricata_eve import eve_block_to_batch

log = logging.getLogger(__name__)

#: Where Linux keeps how many datagrams a Unix socket queues (per network namespace).
DGRAM_QLEN = Path("/proc/sys/net/unix/max_dgram_qlen")
#: A queue shorter than this overflows while the scoring thread holds the GIL for one switch
#: interval (5 ms) at 100,000 records a second: Suricata's sends are then refused and lost.
DGRAM_QLEN_ENOUGH = 512


#: Seconds records may gather in the kernel's queue after a read that found few of them.
LINGER = 0.0005
#: A read that found fewer records than this lingers (more: the reader is behind; look again).
FEW = 64


def dgram_queue_length(setting: Path = DGRAM_QLEN) -> int | None:
    """How many datagrams the kernel queues on a Unix socket, or None where the setting cannot
    be read (not Linux)."""
    try:
        return int(setting.read_text().strip())
    except (OSError, ValueError):
        return None


def dgram_queue_problem(setting: Path = DGRAM_QLEN) -> str | None:
    """What is wrong with the kernel's Unix datagram queue length for Suricata's ``unix_dgram``
    output, or None (also where the setting cannot be read: not Linux)."""
    qlen = dgram_queue_length(setting)
    if qlen is None or qlen >= DGRAM_QLEN_ENOUGH:
        return None
    return (
        f"net.unix.max_dgram_qlen is {qlen}: Suricata's unix_dgram records are dropped on "
        f"Suricata's side (uncounted here) once {qlen} wait on the socket; use kind: stream "
        f"(Suricata's unix_stream), or raise it to {DGRAM_QLEN_ENOUGH} or more (README, "
        "'Suricata EVE sockets')"
    )


class _Text:
    """What one stream connection has sent and is not decoded yet: the chunks as read, the
    last maybe ending within a line."""

    __slots__ = ("chunks", "closed")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        #: The connection has closed: nothing more comes.
        self.closed = False

    def take(self) -> tuple[bytes, int]:
        """``(text, stop)``: the whole lines sent so far are ``text[:stop]`` (no copy of one
        chunk); what follows them is kept."""
        chunks = self.chunks
        if not chunks:
            return b"", 0
        text = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        stop = text.rfind(b"\n") + 1
        self.chunks = [text[stop:]] if stop < len(text) else []
        return text, stop


class EveSocket:
    """The unix socket Suricata's EVE ``unix_dgram`` / ``unix_stream`` output connects to."""

    def __init__(
        self,
        path: str | Path,
        kind: str,
        emit: Emit,
        *,
        batch_lines: int = 1000,
        batch_wait: float = 0.01,
        name: str | None = None,
    ) -> None:
        if kind not in ("dgram", "stream"):
            raise ValueError(f"kind must be dgram or stream, not {kind!r}")
        self.path = Path(path)
        self.kind = kind
        self.emit = emit
        self.batch_lines = batch_lines
        self.batch_wait = batch_wait
        self.name = name or f"eve-{kind}:{self.path}"
        self.stats = ReadStats()
        self.signatures = SignatureJoin(self.stats)
        self.ready = threading.Event()
        self._stop = threading.Event()
        #: Text read and not yet decoded, per stream connection; the datagrams read and not yet
        #: decoded (while reading datagrams); how many records (whole lines) they hold.
        self._texts: list[_Text] = []
        self._datagrams: DatagramReader | None = None
        self._lines = 0
        #: When the oldest pending record was read (``time.monotonic``).
        self._first = 0.0
        #: What a stream connection's reads go into (made at the first; datagrams have slots).
        self._buffer: bytearray | None = None
        #: Seconds to let records gather after a read that found few (0: the queue is short).
        self._linger = min(LINGER, batch_wait / 2)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        self.path.unlink(missing_ok=True)
        kind = socket.SOCK_DGRAM if self.kind == "dgram" else socket.SOCK_STREAM
        srv = socket.socket(socket.AF_UNIX, kind)
        srv.bind(str(self.path))
        os.chmod(self.path, 0o660)
        if self.kind == "dgram":
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            problem = dgram_queue_problem()
            if problem:
                log.warning("%s: %s", self.name, problem)
            if (dgram_queue_length() or 0) < DGRAM_QLEN_ENOUGH:
                self._linger = 0.0  # Suricata would drop what gathers beyond the queue
        else:
            srv.listen(8)
        srv.setblocking(False)
        self.ready.set()
        try:
            if self.kind == "dgram":
                self._serve_datagrams(srv)
            else:
                self._serve_stream(srv)
        finally:
            srv.close()
            self.path.unlink(missing_ok=True)

    def _timeout(self) -> float:
        """Seconds until the pending batch is due (0.2 when nothing is pending)."""
        if self._lines:
            return max(self._first + self.batch_wait - time.monotonic(), 0.0)
        return 0.2

    def _serve_datagrams(self, srv: socket.socket) -> None:
        """Wait (one ``poll``, no selector bookkeeping) and read whatever is waiting, until
        stopped; after a read that found few records, let more gather (module doc)."""
        poller = select.poll()
        poller.register(srv, select.POLLIN)
        reader = self._datagrams = DatagramReader(srv, slots=self.batch_lines)
        try:
            while not self._stop.is_set():
                ready = poller.poll(self._timeout() * 1000)
                if ready and self._read_datagrams(reader) < FEW and self._linger:
                    time.sleep(self._linger)
                if self._lines and time.monotonic() - self._first >= self.batch_wait:
                    self._flush()
            self._flush()
        finally:
            self._datagrams = None
            reader.close()

    def _serve_stream(self, srv: socket.socket) -> None:
        """Accept connections and read their lines, until stopped; after a wake-up whose reads
        found few lines, let more gather (module doc)."""
        sel = selectors.DefaultSelector()
        sel.register(srv, selectors.EVENT_READ, None)
        try:
            while not self._stop.is_set():
                lines = 0
                for key, _ in sel.select(self._timeout()):
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    if sock is srv:
                        conn, _ = srv.accept()
                        conn.setblocking(False)
                        text = _Text()
                        self._texts.append(text)
                        sel.register(conn, selectors.EVENT_READ, text)
                        continue
                    got = self._read_stream(sock, key.data)
                    if got < 0:
                        sel.unregister(sock)
                        sock.close()
                        if not key.data.chunks and key.data in self._texts:  # all decoded
                            self._texts.remove(key.data)
                    lines += max(got, 0)
                if 0 < lines < FEW and self._linger:
                    time.sleep(self._linger)
                if self._lines and time.monotonic() - self._first >= self.batch_wait:
                    self._flush()
            self._flush()
        finally:
            for key in list(sel.get_map().values()):
                if key.fileobj is not srv:
                    key.fileobj.close()  # type: ignore[union-attr]
            sel.close()

    def _read_datagrams(self, reader: DatagramReader) -> int:
        """Every datagram waiting, many per system call, into the reader's slots (a line each,
        or several); a batch is decoded whenever ``batch_lines`` records are held (the slots
        are full) or the oldest has waited ``batch_wait`` (looked at after each call: a steady
        stream never lets the socket run dry). Returns how many datagrams it read."""
        read = 0
        while True:
            want = reader.free
            got = reader.read()
            if got:
                if not self._lines:
                    self._first = time.monotonic()
                self._lines += got
                read += got
            if got < want or self._stop.is_set():
                return read
            self._flush()

    def _read_stream(self, sock: socket.socket, text: _Text) -> int:
        """What a stream connection has sent, into ``text``, read into the reused buffer
        until a read comes back short (all that was waiting: no read that would block); how
        many lines, or -1 once the connection has closed (its unended last line then ends)."""
        if self._buffer is None:
            self._buffer = bytearray(1 << 20)
        buffer = self._buffer
        view = memoryview(buffer)
        got = 0
        while True:
            try:
                n = sock.recv_into(buffer)
            except BlockingIOError:
                return got
            except ConnectionError:
                n = 0
            if n:
                data = bytes(view[:n])
                lines = data.count(b"\n")
            else:  # closed: an unended last line ends here
                data, lines = b"\n", 1
                if not text.chunks or text.chunks[-1].endswith(b"\n"):
                    data, lines = b"", 0
                text.closed = True
            if data:
                text.chunks.append(data)
            if lines:
                if not self._lines:
                    self._first = time.monotonic()
                self._lines += lines
                got += lines
                if self._lines >= self.batch_lines:
                    self._flush()
            if not n:
                return -1
            if n < len(buffer):
                return got

    def _flush(self) -> None:
        """Decode the records read so far (a stream sender's unended last line waits)."""
        self._lines = 0
        if self._datagrams is not None:
            if len(self._datagrams):
                self._decode(self._datagrams.take())
            return
        parts = [part for t in self._texts if (part := t.take())[1]]
        self._texts = [t for t in self._texts if t.chunks or not t.closed]
        if not parts:
            return
        text, stop = parts[0] if len(parts) == 1 else (b"".join(t[:s] for t, s in parts), None)
        self._decode(evescan.block_of_text(text, stop))

    def _decode(self, block: evescan.Block) -> None:
        """Decode a block of lines at once, and hand its flows on."""
        batch = eve_block_to_batch(block, self.stats, self.name, signatures=self.signatures)
        if batch is not None:
            self.emit(batch, arrived=self._first)
