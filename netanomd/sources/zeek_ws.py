"""Zeek over Broker's WebSocket JSON API (``ws[s]://host:port/v1/messages/json``, Zeek >= 5).

Owns the client side of the protocol: the first frame is the JSON array of topic prefixes, the
server answers one ``ack`` (endpoint id and version), then only data messages flow. Flow
batches (``NetAnom::flows``) are decoded into FlowBatches and handed to ``on_batch``;
:meth:`ZeekWebSocketClient.send_verdicts` sends alerts back as ``NetAnom::verdict`` events
(thread-safe: the websockets connection serialises sends). A malformed or unexpected frame is
logged (rate-limited) and counted, never fatal; a dropped connection is re-established with
capped exponential backoff. Pings are answered by the ``websockets`` library. TLS: ``wss://``
URLs verify the server against the system trust store or ``ca_file``.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from netanomd.decision import Alert
from netanomd.errors import TransportError
from netanomd.zeek import api
from netanomd.zeek.brokerjson import (
    DecodeError,
    flows_to_batch,
    loads,
    parse_event,
    verdict_message,
)
from netanomd.zeek.transport import Counters, OnBatch, log_malformed

log = logging.getLogger(__name__)

PATH = "/v1/messages/json"


def tls_context(ca_file: str | None = None, verify: bool = True) -> ssl.SSLContext:
    """Client TLS for ``wss://``: system trust store, or only ``ca_file`` when given."""
    ctx = ssl.create_default_context(cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ZeekWebSocketClient:
    """Subscribes to the flow topics, hands batches on, sends verdicts back."""

    def __init__(
        self,
        url: str,
        on_batch: OnBatch,
        *,
        topics: Sequence[str] = (api.FLOWS_TOPIC,),
        verdict_topic: str = api.VERDICTS_TOPIC,
        ssl_context: ssl.SSLContext | None = None,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/") + ("" if url.rstrip("/").endswith(PATH) else PATH)
        self.on_batch = on_batch
        self.topics = list(topics)
        self.verdict_topic = verdict_topic
        self.ssl_context = ssl_context
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        self.counters = Counters()
        self.peer: dict[str, Any] = {}
        self._stop = threading.Event()
        self._ws: ClientConnection | None = None

    def handshake(self, ws: ClientConnection) -> dict[str, Any]:
        ws.send(orjson.dumps(self.topics).decode())
        ack = loads(ws.recv(timeout=10))
        if not isinstance(ack, dict) or ack.get("type") != "ack":
            raise TransportError(f"{self.url}: expected an ack, got {str(ack)[:120]}")
        return ack

    def run(self) -> None:
        """Connect, serve, reconnect until :meth:`stop`."""
        failures = 0
        while not self._stop.is_set():
            try:
                kwargs: dict[str, Any] = {"open_timeout": 10}
                if self.url.startswith("wss://"):
                    kwargs["ssl"] = self.ssl_context or ssl.create_default_context()
                with connect(self.url, **kwargs) as ws:
                    self._ws = ws
                    self.peer = self.handshake(ws)
                    self.counters.connects += 1
                    failures = 0
                    log.info("connected to Zeek %s at %s", self.peer.get("version"), self.url)
                    self._serve(ws)
            except (OSError, WebSocketException, TransportError, DecodeError, TimeoutError) as exc:
                if self._stop.is_set():
                    break
                failures += 1
                delay = min(self.max_backoff, self.initial_backoff * 2 ** (failures - 1))
                log.warning("Zeek WebSocket %s: %s; reconnecting in %.1fs", self.url, exc, delay)
                self.sleep(delay)
            finally:
                self._ws = None

    def _serve(self, ws: ClientConnection) -> None:
        while not self._stop.is_set():
            try:
                frame = ws.recv(timeout=0.5)
            except TimeoutError:
                continue
            self.counters.messages += 1
            try:
                self.on_frame(frame)
            except DecodeError as exc:
                log_malformed(log, self.counters, exc)

    def on_frame(self, frame: str | bytes) -> None:
        msg = loads(frame)
        if isinstance(msg, dict) and msg.get("type") == "error":
            self.counters.server_errors += 1
            log.warning("Zeek says: %s (%s)", msg.get("code"), msg.get("context"))
            return
        _, name, args = parse_event(msg)
        if name != api.FLOWS.name:
            raise DecodeError(f"unexpected event {name!r}")
        batch = flows_to_batch(args)
        self.counters.flows += len(batch)
        self.on_batch(batch)

    def send_verdicts(self, alerts: Sequence[Alert]) -> int:
        """Send one ``NetAnom::verdict`` per alert; returns how many went out."""
        ws = self._ws
        if ws is None:
            self.counters.verdicts_dropped += len(alerts)
            return 0
        frames = []
        for a in alerts:
            f = a.flow
            out = verdict_message(
                f.uid,
                f.orig_h,
                f.orig_p or 0,
                f.resp_h,
                f.resp_p or 0,
                f.proto,
                a.score,
                a.threshold,
                a.model_id,
                a.reason,
                topic=self.verdict_topic,
            )
            frames.append(orjson.dumps(out).decode())
        sent = 0
        try:
            for frame in frames:
                ws.send(frame)
                sent += 1
        except (OSError, WebSocketException) as exc:
            log.warning("could not send verdicts to Zeek: %s", exc)
        self.counters.verdicts_sent += sent
        self.counters.verdicts_dropped += len(frames) - sent
        return sent

    def stop(self) -> None:
        self._stop.set()
        if self._ws is not None:
            self._ws.close()
