"""Zeek over Broker's WebSocket JSON API (``ws[s]://host:port/v1/messages/json``, Zeek >= 5).

Owns the client side of the protocol: the first frame is the JSON array of topic prefixes, the
server answers one ``ack`` (endpoint id and version), then only data messages flow. Flow
batches (``NetAnom::flows``) are decoded into FlowBatches and handed to ``emit`` (a
:class:`~netanomd.sources.LiveSource`); ``NetAnom::drain`` is answered with
``NetAnom::drained`` once those batches have been through the sinks.
:meth:`ZeekWebSocketClient.publish_verdicts` hands verdicts over from any thread without
waiting (bounded; overflow dropped and counted); a sender task on the client's loop writes
them. A malformed or unexpected frame is logged (rate-limited) and counted, never fatal; an
event of another contract major version is refused and logged as an error; a dropped
connection is re-established with capped exponential backoff. Pings are answered by the
``websockets`` library. TLS: ``wss://`` URLs verify the server against the system trust store
or ``ca_file``; turning verification off is warned about at start. Logs never show the URL's
password (masked as ``config show`` masks it).

Runs on ``websockets``' asyncio implementation in one thread, reading up to :data:`READ_SIZE`
bytes off a plain TCP socket at once. Frames are micro-batched: what
arrives within ``batch_wait`` of the previous frame (up to ``max_batch`` flows) is decoded and
emitted together, because per-call overheads dominate at ~100 flows a frame. Frames stay bytes
(no UTF-8 decoding): one in the canonical layout Zeek writes is scanned straight into typed
buffers with the GIL released (:class:`~netanomd.zeek.brokerjson.FlowsAccumulator`), any other
is parsed and checked value by value. ``emit`` may
block (a full pipeline holds the reader back, which pushes back on Zeek over TCP).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Sequence
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from netanomd.config.masking import MASK, mask_str
from netanomd.errors import TransportError
from netanomd.flow import FlowBatch
from netanomd.sources import Emit
from netanomd.zeek import api
from netanomd.zeek.brokerjson import (
    DecodeError,
    FlowsAccumulator,
    VersionError,
    columns_of,
    decode_event,
    encode_event,
    loads,
    parse_event,
    shown,
)
from netanomd.zeek.transport import (
    Counters,
    Drains,
    Outbox,
    Values,
    log_malformed,
    log_refused,
)

log = logging.getLogger(__name__)

PATH = "/v1/messages/json"
#: Bytes asked of the socket per read (asyncio's socket transport asks 256 KiB): a backlog of
#: ~75 kB frames is taken in fewer reads, ~0.1 CPU-us a flow less on loopback.
READ_SIZE = 1 << 20


def tls_context(ca_file: str | None = None, verify: bool = True) -> ssl.SSLContext:
    """Client TLS for ``wss://``: system trust store, or only ``ca_file`` when given."""
    ctx = ssl.create_default_context(cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _MicroBatch:
    """The flow events of frames that arrived together (decoded as one batch, into the
    client's accumulator) and the drain tokens among them."""

    def __init__(self, acc: FlowsAccumulator) -> None:
        self.acc = acc
        self.drains: list[int] = []


class ZeekWebSocketClient:
    """Subscribes to the flow topics, emits batches, sends verdicts back."""

    def __init__(
        self,
        url: str,
        emit: Emit,
        *,
        name: str = "zeek_ws",
        topics: Sequence[str] = (api.FLOWS_TOPIC,),
        verdict_topic: str = api.VERDICTS_TOPIC,
        ssl_context: ssl.SSLContext | None = None,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_batch: int = 4096,
        batch_wait: float = 0.002,
        outbox_limit: int = 10_000,
    ) -> None:
        self.url = url.rstrip("/") + ("" if url.rstrip("/").endswith(PATH) else PATH)
        #: The URL as logs show it: a password in it masked, as ``config show`` does.
        self.shown_url = mask_str(self.url)
        self.emit = emit
        self.name = name
        self.topics = list(topics)
        self.verdict_topic = verdict_topic
        self.ssl_context = ssl_context
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_batch = max_batch
        self.batch_wait = batch_wait
        self.counters = Counters()
        self.peer: dict[str, Any] = {}
        #: Set once the first connection to Zeek is up.
        self.ready = threading.Event()
        self.outbox = Outbox(self.counters, outbox_limit)
        self.drains = Drains(self.outbox)
        self._stop = threading.Event()
        self._ws: ClientConnection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        #: Decodes every micro-batch (its buffers are reused; one batch at a time).
        self._acc = FlowsAccumulator()

    async def handshake(self, ws: ClientConnection) -> dict[str, Any]:
        await ws.send(orjson.dumps(self.topics).decode())
        ack = loads(await asyncio.wait_for(ws.recv(), 10))
        if not isinstance(ack, dict) or ack.get("type") != "ack":
            raise TransportError(f"{self.shown_url}: expected an ack, got {shown(ack)}")
        return ack

    def run(self) -> None:
        """Connect, serve, reconnect until :meth:`stop` (blocks; runs its own event loop)."""
        ctx = self.ssl_context
        if self.url.startswith("wss://") and ctx is not None and ctx.verify_mode == ssl.CERT_NONE:
            log.warning(
                "%s: the certificate of %s is not verified (insecure: true): anyone on the "
                "path can read the flows and send forged ones; use ca_file instead",
                self.name,
                self.shown_url,
            )
        asyncio.run(self._main())

    def _masked(self, text: str) -> str:
        """``text`` with the URL's password masked (exceptions may quote the URL)."""
        if self.url == self.shown_url:
            return text
        secret = self.url.split("://", 1)[-1].split("@", 1)[0].partition(":")[2]
        return text.replace(self.url, self.shown_url).replace(f":{secret}@", f":{MASK}@")

    async def _main(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        wake = self._wake = asyncio.Event()

        def nudge() -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to send
                loop.call_soon_threadsafe(wake.set)

        self.outbox.wake = nudge
        failures = 0
        while not self._stop.is_set():
            try:
                # No permessage-deflate: compressing ~75 kB frames costs both ends more CPU
                # than a LAN or loopback link saves.
                kwargs: dict[str, Any] = {
                    "open_timeout": 10,
                    "compression": None,
                    "max_size": 1 << 24,
                }
                if self.url.startswith("wss://"):
                    kwargs["ssl"] = self.ssl_context or ssl.create_default_context()
                async with connect(self.url, **kwargs) as ws:
                    self._ws = ws
                    transport: Any = ws.transport
                    if hasattr(transport, "max_size"):  # (plain TCP; TLS reads its own way)
                        transport.max_size = READ_SIZE
                    self.peer = await self.handshake(ws)
                    self.counters.connects += 1
                    failures = 0
                    log.info("connected to Zeek %s at %s", self.peer.get("version"), self.shown_url)
                    self.ready.set()
                    sender = asyncio.create_task(self._sender(ws, wake))
                    try:
                        await self._serve(ws)
                    finally:
                        sender.cancel()
            except (OSError, WebSocketException, TransportError, DecodeError, TimeoutError) as exc:
                if self._stop.is_set():
                    break
                if self._ws is not None:
                    self.counters.disconnects += 1
                failures += 1
                delay = min(self.max_backoff, self.initial_backoff * 2 ** (failures - 1))
                log.warning(
                    "Zeek WebSocket %s: %s; reconnecting in %.1fs",
                    self.shown_url,
                    self._masked(str(exc) or type(exc).__name__),
                    delay,
                )
                await self._sleep(delay)
            finally:
                self._ws = None
                self.outbox.clear()

    async def _sleep(self, delay: float) -> None:
        end = asyncio.get_running_loop().time() + delay
        while not self._stop.is_set() and asyncio.get_running_loop().time() < end:
            await asyncio.sleep(min(0.1, delay))

    async def _recv(self, ws: ClientConnection, timeout: float) -> bytes | str | None:
        # (asyncio.timeout, not wait_for: no task per frame, and no suspension at all when
        # the frame is already queued)
        try:
            async with asyncio.timeout(timeout):
                return await ws.recv(decode=False)
        except TimeoutError:
            return None

    async def _serve(self, ws: ClientConnection) -> None:
        while not self._stop.is_set():
            frame = await self._recv(ws, 0.25)
            if frame is None:
                continue
            batch = _MicroBatch(self._acc)
            try:
                self._take(frame, batch)
                while len(batch.acc) < self.max_batch and not batch.drains:
                    frame = await self._recv(ws, self.batch_wait)
                    if frame is None:
                        break
                    self._take(frame, batch)
            finally:  # a dropped connection must not lose what was already received
                self._finish(batch)

    def take_frames(self, frames: Sequence[str | bytes]) -> None:
        """Handle frames that arrived together as one micro-batch, as :meth:`run` does: every
        good ``NetAnom::flows`` event is emitted, bad frames are logged and counted. (Not
        while :meth:`run` serves: both decode into the client's one accumulator.)"""
        batch = _MicroBatch(self._acc)
        try:
            for frame in frames:
                self._take(frame, batch)
        finally:
            self._finish(batch)

    def _finish(self, batch: _MicroBatch) -> None:
        if batch.acc.events:
            self._deliver(batch.acc.build())
        for token in batch.drains:
            self.drains.request(token)

    def _take(self, frame: str | bytes, batch: _MicroBatch) -> None:
        self.counters.messages += 1
        acc, drains = batch.acc, batch.drains
        if acc.add_frame(
            frame.encode("utf-8", "surrogatepass") if isinstance(frame, str) else frame
        ):
            return
        try:
            msg = loads(frame)
            if isinstance(msg, dict) and msg.get("type") == "error":
                self.counters.server_errors += 1
                log.warning("Zeek says: %s (%s)", shown(msg.get("code")), shown(msg.get("context")))
                return
            _, name, args = parse_event(msg)
            if name == api.DRAIN.name:
                drains.append(decode_event(api.DRAIN, args)["token"])
                return
            if name != api.FLOWS.name:
                raise DecodeError(f"unexpected event {shown(name)}")
            acc.add_columns(columns_of(args))
        except VersionError as exc:
            log_refused(log, self.counters, exc)
        except DecodeError as exc:
            log_malformed(log, self.counters, exc)

    def _deliver(self, batch: FlowBatch) -> None:
        if len(batch) == 0:  # only events with no flows
            return
        self.counters.flows += len(batch)
        ack = self.drains.emitted()
        if not self.emit(batch, ack):
            self.counters.flows_dropped += len(batch)
            ack()

    def publish_verdicts(self, verdicts: Sequence[Values]) -> int:
        """Queue one ``NetAnom::verdict`` per item for the sender; returns how many were taken.

        Safe from any thread and never waits: with no Zeek connected, or the outbox full, the
        rest are dropped and counted in ``counters.verdicts_dropped``."""
        if self._ws is None:
            self.counters.verdicts_dropped += len(verdicts)
            return 0
        return self.outbox.put(api.VERDICT, verdicts)

    def publish_incidents(self, incidents: Sequence[Values]) -> int:
        """Queue one ``NetAnom::incident`` per item, as :meth:`publish_verdicts` does."""
        if self._ws is None:
            self.counters.incidents_dropped += len(incidents)
            return 0
        return self.outbox.put(api.INCIDENT, incidents)

    async def _sender(self, ws: ClientConnection, wake: asyncio.Event) -> None:
        while True:
            await wake.wait()
            wake.clear()
            items = self.outbox.take()
            frames = [
                orjson.dumps(encode_event(spec, values, self.verdict_topic)).decode()
                for spec, values in items
            ]
            sent = await self._send(ws, frames)
            self.counters.outbound([spec for spec, _ in items], sent)
            self.outbox.done()

    async def _send(self, ws: ClientConnection, frames: list[str]) -> int:
        sent = 0
        try:
            for frame in frames:
                await ws.send(frame)
                sent += 1
        except (OSError, WebSocketException) as exc:
            log.warning("could not send verdicts to Zeek: %s", exc)
        return sent

    def flush(self, timeout: float) -> bool:
        """Wait until the verdicts handed over so far are sent; False on timeout."""
        return self.outbox.wait_sent(timeout)

    def stop(self) -> None:
        self._stop.set()
        ws, loop = self._ws, self._loop
        if ws is not None and loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(ws.close(), loop)
