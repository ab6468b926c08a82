"""A small, bounded HTTP/1.1 server for the daemon's endpoint: limits, TLS, no thread per client.

Owns the transport side of :mod:`netanomd.daemon.http`: one event-loop thread accepts and reads
every connection (a slow or idle client costs a file descriptor and a buffer, never a thread);
a complete request goes to the endpoint's ``handle`` — inline on the loop for ``GET`` (cheap:
metrics, health), on a small worker pool otherwise (``POST /v1/score`` scores on it). One
request per connection (``Connection: close``).

Bounds (:class:`Limits`): the whole request (TLS handshake included) must arrive within
``request_timeout`` seconds; the head is at most 16 KiB; the body needs a valid
``Content-Length`` of at most ``max_body`` bytes (no chunked bodies); at most
``max_connections`` connections are open at once — a new one evicts the oldest connection still
sending its request, and is refused at once with 503 when every slot is busy with a request
being answered. Faults answer 4xx/5xx without a traceback (after an early refusal, what the
client still sends is read and dropped for up to a second, so it gets the answer rather than a
reset) and are counted per kind (:attr:`HttpServer.rejected`); each kind is logged at most once
a minute (:class:`RateLimitedLog`), the event loop's own errors included.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from netanomd.errors import ConfigError

log = logging.getLogger(__name__)

MAX_HEAD = 16 << 10
MAX_HEADERS = 100


@dataclass(frozen=True)
class Limits:
    """What one client may cost."""

    max_connections: int = 64
    request_timeout: float = 5.0
    max_body: int = 1 << 20
    workers: int = 2


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class BadRequest(Exception):
    """A request the server refuses: the status, a kind for counting and a message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class RateLimitedLog:
    """One log line per kind at most every ``interval`` seconds, saying how many more
    happened in between (a flood of bad requests never floods the journal)."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}
        self._lock = threading.Lock()

    def warning(self, kind: str, message: str, *, exc_info: BaseException | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.interval:
                self._quiet[kind] = self._quiet.get(kind, 0) + 1
                return
            more = self._quiet.pop(kind, 0)
            self._last[kind] = now
        extra = f" ({more} more since the last such line)" if more else ""
        self.logger.warning("http %s: %s%s", kind, message, extra, exc_info=exc_info)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context (TLS 1.2 or later) from PEM files; a bad file names the key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"sinks.metrics.tls_cert/tls_key: cannot load {cert} with {key}: {exc}"
        ) from None
    return ctx


@dataclass
class _Conn:
    started: float
    writer: asyncio.StreamWriter
    reading: bool = True


class HttpServer:
    """Serves ``handle(request) -> Response`` on ``host:port`` (bound at construction, so the
    port is known and a bind error surfaces at start) until :meth:`stop`."""

    def __init__(
        self,
        host: str,
        port: int,
        handle: Callable[[Request], Response],
        limits: Limits = Limits(),
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.handle = handle
        self.limits = limits
        self.tls = tls
        try:
            self.sock = socket.create_server(
                (host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET
            )
        except OSError as exc:
            raise ConfigError(
                f"sinks.metrics.listen: cannot listen on {host}:{port}: {exc}"
            ) from None
        self.port = int(self.sock.getsockname()[1])
        #: Refused or failed requests per kind (bad_request, unauthorized, timeout, ...).
        self.rejected: dict[str, int] = {}
        self.log = RateLimitedLog(log)
        self._conns: dict[int, _Conn] = {}
        self._ids = itertools.count()
        self._pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="http-worker")
        self._loop = asyncio.new_event_loop()
        self._stopped: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._started = threading.Event()

    @property
    def connections(self) -> int:
        return len(self._conns)

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)

    def stop(self) -> None:
        if self._thread.is_alive() and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.sock.close()

    def count(self, kind: str, message: str, exc: BaseException | None = None) -> None:
        self.rejected[kind] = self.rejected.get(kind, 0) + 1
        self.log.warning(kind, message, exc_info=exc)

    # -- the loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.set_exception_handler(self._loop_error)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """What asyncio would print to stderr (accept() out of file descriptors, a failed
        callback) goes to the package log, counted and rate-limited like the rest."""
        exc = context.get("exception")
        message = str(context.get("message", ""))
        if isinstance(exc, OSError):  # the system's refusal: its message says it all
            self.count("loop_error", f"{message}: {exc}")
        else:
            self.count("loop_error", message or repr(exc), exc)

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        server = await asyncio.start_server(
            self._client,
            sock=self.sock,
            ssl=self.tls,
            ssl_handshake_timeout=self.limits.request_timeout if self.tls else None,
            limit=MAX_HEAD,
        )
        self._started.set()
        async with server:
            await self._stopped.wait()
            server.close()
            for c in list(self._conns.values()):
                c.writer.transport.abort()

    async def _make_room(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Whether a new connection may stay: at the cap, the oldest one still sending its
        request is cut off for it; when none is, the new one is refused."""
        if len(self._conns) < self.limits.max_connections:
            return True
        reading = [(c.started, cid) for cid, c in self._conns.items() if c.reading]
        if reading:
            _, oldest = min(reading)
            self._conns.pop(oldest).writer.transport.abort()
            self.count("evicted", "connection limit reached: cut off the oldest slow request")
            return True
        self.count("refused", f"{len(self._conns)} connections busy: refused a new one")
        # Take what the client sent first (briefly): closing with unread data would reset the
        # connection and the client could lose the answer.
        with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError):
            await asyncio.wait_for(reader.read(MAX_HEAD), timeout=0.2)
        writer.write(_render(_error(503, "too many connections; retry later")))
        writer.transport.close()
        return False

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not await self._make_room(reader, writer):
            return
        cid = next(self._ids)
        conn = self._conns[cid] = _Conn(time.monotonic(), writer)
        try:
            try:
                request = await asyncio.wait_for(
                    self._read(reader), timeout=self.limits.request_timeout
                )
            except BadRequest as exc:
                self.count(exc.kind, str(exc))
                await self._write(writer, _error(exc.status, str(exc)))
                await self._linger(reader, writer)
                return
            except TimeoutError:
                self.count("timeout", f"request not complete in {self.limits.request_timeout}s")
                await self._write(writer, _error(408, "request not complete in time"))
                return
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                return  # the client went away (or was cut off)
            conn.reading = False
            if request.method == "GET":
                response = self._call(request)
            else:
                loop = asyncio.get_running_loop()
                response = await loop.run_in_executor(self._pool, self._call, request)
            await self._write(writer, response)
        finally:
            self._conns.pop(cid, None)
            writer.close()

    def _call(self, request: Request) -> Response:
        try:
            return self.handle(request)
        except BadRequest as exc:
            self.count(exc.kind, str(exc))
            return _error(exc.status, str(exc))
        except Exception as exc:  # an endpoint bug must answer 500, not kill the connection
            self.count("internal_error", f"{request.method} {request.path}: {exc!r}", exc)
            return _error(500, "internal error (logged)")

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """After refusing a request early (a body over the limit, say), read and drop what
        the client is still sending, for a second at most: closing with unread data would
        reset the connection, and the client could lose the answer."""
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
            deadline = time.monotonic() + 1.0
            budget = 8 * self.limits.max_body
            while budget > 0 and (left := deadline - time.monotonic()) > 0:
                chunk = await asyncio.wait_for(reader.read(65536), timeout=left)
                if not chunk:
                    break
                budget -= len(chunk)

    async def _write(self, writer: asyncio.StreamWriter, response: Response) -> None:
        writer.write(_render(response))
        with contextlib.suppress(ConnectionError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.drain(), timeout=self.limits.request_timeout)

    async def _read(self, reader: asyncio.StreamReader) -> Request:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise BadRequest(431, "bad_request", f"request head over {MAX_HEAD} bytes") from None
        method, path, headers = parse_head(head)
        body = b""
        if method not in ("GET", "HEAD"):
            if "transfer-encoding" in headers:
                raise BadRequest(
                    400, "bad_request", "Transfer-Encoding is not accepted; send Content-Length"
                )
            length = _content_length(headers.get("content-length"), self.limits.max_body)
            body = await reader.readexactly(length)
        return Request(method, path, headers, body)


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """(method, path, headers by lower-case name) of a request head (request line and header
    lines, each ending in CRLF); :class:`BadRequest` names what is malformed."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "bad_request", f"malformed request line {lines[0][:80]!r}")
    method, path, _ = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "bad_request", f"malformed header line {line[:80]!r}")
        key = name.lower()
        if key in headers and headers[key] != value.strip():
            raise BadRequest(400, "bad_request", f"header {name} given twice")
        headers[key] = value.strip()
        if len(headers) > MAX_HEADERS:
            raise BadRequest(431, "bad_request", f"over {MAX_HEADERS} headers")
    return method, path, headers


def _content_length(value: str | None, cap: int) -> int:
    if value is None:
        raise BadRequest(400, "bad_request", "Content-Length is missing")
    if not (value.isascii() and value.isdigit()):
        raise BadRequest(400, "bad_request", f"Content-Length {value[:40]!r} is not a number")
    n = int(value)
    if n > cap:
        raise BadRequest(413, "too_large", f"body of {n} bytes is over the limit of {cap}")
    return n


def _error(status: int, message: str) -> Response:
    return Response(status, json.dumps({"error": message}).encode())


def _render(r: Response) -> bytes:
    try:
        reason = HTTPStatus(r.status).phrase
    except ValueError:
        reason = "Unknown"
    head = [
        f"HTTP/1.1 {r.status} {reason}",
        f"Content-Type: {r.content_type}",
        f"Content-Length: {len(r.body)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in r.headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + r.body
