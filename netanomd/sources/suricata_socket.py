"""Suricata's EVE unix-socket output as a :class:`~netanomd.sources.LiveSource`.

Owns the socket Suricata's ``filetype: unix_dgram`` (one record per datagram) or ``unix_stream``
(one record per line; lines cut by the one :class:`~netanomd.sources._text.LineSplitter` per
connection) output connects to: binding it (mode 0660, so Suricata's group may write; the
directory decides who), reading everything waiting on one wake-up (``recv`` until it would block,
into one reused buffer; datagrams are waited for with one ``poll``), micro-batching by count or
time (a batch is decoded ``batch_wait`` seconds after its oldest record was read at the latest),
and decoding the batch at once with the EVE decoder. Suricata cannot be paused through a socket:
the emit callable's policy decides what happens when scoring falls behind.
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

from netanomd.sources import Emit, ReadStats
from netanomd.sources._text import LineSplitter
from netanomd.sources.suricata_alerts import SignatureJoin
from netanomd.sources.suricata_eve import eve_lines_to_batch

log = logging.getLogger(__name__)

#: Where Linux keeps how many datagrams a Unix socket queues (per network namespace).
DGRAM_QLEN = Path("/proc/sys/net/unix/max_dgram_qlen")
#: A queue shorter than this overflows while the scoring thread holds the GIL for one switch
#: interval (5 ms) at 100,000 records a second: Suricata's sends are then refused and lost.
DGRAM_QLEN_ENOUGH = 512


def dgram_queue_problem(setting: Path = DGRAM_QLEN) -> str | None:
    """What is wrong with the kernel's Unix datagram queue length for Suricata's ``unix_dgram``
    output, or None (also where the setting cannot be read: not Linux)."""
    try:
        qlen = int(setting.read_text().strip())
    except (OSError, ValueError):
        return None
    if qlen >= DGRAM_QLEN_ENOUGH:
        return None
    return (
        f"net.unix.max_dgram_qlen is {qlen}: Suricata's unix_dgram records are dropped on "
        f"Suricata's side (uncounted here) once {qlen} wait on the socket; use kind: stream "
        f"(Suricata's unix_stream), or raise it to {DGRAM_QLEN_ENOUGH} or more (README, "
        "'Suricata EVE sockets')"
    )


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
        #: Records read and not yet decoded (a datagram each, or a line of a stream).
        self._pending: list[bytes] = []
        #: When the oldest pending record was read (``time.monotonic``).
        self._first = 0.0
        #: Suricata writes one record per datagram; the largest fits in the receive buffer.
        self._buffer = bytearray(1 << 20)

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
        else:
            srv.listen(8)
        srv.setblocking(False)
        self.ready.set()
        try:
            if self.kind == "dgram":
                self._serve_datagrams(srv)
            else:
                self._serve_stream(srv)
            self._flush()
        finally:
            srv.close()
            self.path.unlink(missing_ok=True)

    def _timeout(self) -> float:
        """Seconds until the pending batch is due (0.2 when nothing is pending)."""
        if self._pending:
            return max(self._first + self.batch_wait - time.monotonic(), 0.0)
        return 0.2

    def _serve_datagrams(self, srv: socket.socket) -> None:
        """Wait (one ``poll``, no selector bookkeeping: Suricata sends a few records per
        wake-up) and read whatever is waiting, until stopped."""
        poller = select.poll()
        poller.register(srv, select.POLLIN)
        while not self._stop.is_set():
            if poller.poll(self._timeout() * 1000):
                self._read_datagrams(srv)
            if self._pending and time.monotonic() - self._first >= self.batch_wait:
                self._flush()

    def _serve_stream(self, srv: socket.socket) -> None:
        """Accept connections and read their lines, until stopped."""
        sel = selectors.DefaultSelector()
        sel.register(srv, selectors.EVENT_READ, None)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(self._timeout()):
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    if sock is srv:
                        conn, _ = srv.accept()
                        conn.setblocking(False)
                        sel.register(conn, selectors.EVENT_READ, LineSplitter())
                    elif not self._read_stream(sock, key.data):
                        sel.unregister(sock)
                        sock.close()
                if self._pending and time.monotonic() - self._first >= self.batch_wait:
                    self._flush()
        finally:
            for key in list(sel.get_map().values()):
                if key.fileobj is not srv:
                    key.fileobj.close()  # type: ignore[union-attr]
            sel.close()

    #: Datagrams read between looks at the clock and the stop flag.
    _CHECK_EVERY = 64

    def _read_datagrams(self, sock: socket.socket) -> None:
        """Every datagram waiting, into a reused buffer; a batch is decoded whenever
        ``batch_lines`` records are pending or the oldest has waited ``batch_wait`` (looked at
        every few dozen datagrams: a steady stream never lets the socket run dry)."""
        buffer = self._buffer
        view = memoryview(buffer)
        recv_into = sock.recv_into
        pending = self._pending
        while True:
            for _ in range(self._CHECK_EVERY):
                try:
                    n = recv_into(buffer)
                except BlockingIOError:
                    return
                if not pending:
                    self._first = time.monotonic()
                record = bytes(view[:n])
                if record.find(b"\n", 0, n - 1) < 0:
                    pending.append(record)
                else:  # several records in one datagram
                    pending.extend(ln for ln in record.splitlines() if ln.strip())
                if len(pending) >= self.batch_lines:
                    self._flush()
                    pending = self._pending
            if self._stop.is_set():
                return
            if pending and time.monotonic() - self._first >= self.batch_wait:
                self._flush()
                pending = self._pending

    def _read_stream(self, sock: socket.socket, splitter: LineSplitter) -> bool:
        """What a stream connection has sent; False once it has closed."""
        while True:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                return True
            except ConnectionError:
                data = b""
            lines = splitter.feed(data) if data else splitter.finish()
            if lines and not self._pending:
                self._first = time.monotonic()
            self._pending.extend(lines)
            if len(self._pending) >= self.batch_lines:
                self._flush()
            if not data:
                return False

    def _flush(self) -> None:
        lines, self._pending = self._pending, []
        if not lines:
            return
        batch = eve_lines_to_batch(lines, self.stats, self.name, signatures=self.signatures)
        if batch is not None:
            self.emit(batch, arrived=self._first)
