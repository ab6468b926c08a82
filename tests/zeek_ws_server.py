"""A WebSocket peer that speaks Broker's JSON API the way Zeek does, for tests.

Path ``/v1/messages/json`` (anything else: an ``invalid_uri`` error and close); the first
frame must be a JSON array of topic strings (else ``deserialization_failed`` with Zeek's
context strings); then one ``ack`` with an endpoint id ending in ``-websocket-N`` and the Zeek
version; after that the test publishes data messages to subscribers whose topic prefixes
match, and every frame a client sends is checked (valid JSON, a data-message with a topic and
an event the Zeek package declares for the daemon to send — ``NetAnom::verdict`` or
``NetAnom::drained`` — with the declared argument types, as Zeek checks them before running a
handler) — bad ones get the error messages Zeek sends. Pings go out every ``ping_interval``
seconds.
"""

from __future__ import annotations

import ssl
import threading
import uuid
from typing import Any

import orjson
from websockets.sync.server import Server, ServerConnection, serve

from netanomd.zeek import api
from netanomd.zeek.brokerjson import DecodeError, decode_event, parse_event


class FakeZeek:
    def __init__(self, version: str = "8.2.2", ping_interval: float = 5.0) -> None:
        self.version = version
        self.ping_interval = ping_interval
        self.node = uuid.uuid4()
        self.clients: list[tuple[ServerConnection, list[str]]] = []
        self.received: list[dict[str, Any]] = []
        self.errors_sent: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: Server | None = None
        self.port = 0
        self._n = 0

    def start(self, port: int = 0, ssl_context: ssl.SSLContext | None = None) -> str:
        """Listen (TLS with ``ssl_context``); returns the ``ws://`` or ``wss://`` URL."""
        self._server = serve(
            self._handler, "127.0.0.1", port, ping_interval=self.ping_interval, ssl=ssl_context
        )
        self.port = self._server.socket.getsockname()[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"{'wss' if ssl_context else 'ws'}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        with self._lock:
            for ws, _ in self.clients:
                ws.close()
            self.clients.clear()

    def _error(self, ws: ServerConnection, code: str, context: str) -> None:
        err = {"type": "error", "code": code, "context": context}
        self.errors_sent.append(err)
        ws.send(orjson.dumps(err).decode())

    def _handler(self, ws: ServerConnection) -> None:
        if ws.request is None or ws.request.path != "/v1/messages/json":
            self._error(ws, "invalid_uri", "invalid URI")
            ws.close()
            return
        try:
            topics = orjson.loads(ws.recv())
        except orjson.JSONDecodeError:
            self._error(ws, "deserialization_failed", "subscriptions not an array")
            ws.close()
            return
        if not isinstance(topics, list):
            self._error(ws, "deserialization_failed", "subscriptions not an array")
            ws.close()
            return
        if not all(isinstance(t, str) for t in topics):
            self._error(ws, "deserialization_failed", "individual subscription not a string")
            ws.close()
            return
        self._n += 1
        ws.send(
            orjson.dumps(
                {
                    "type": "ack",
                    "endpoint": f"{self.node}-websocket-{self._n}",
                    "version": self.version,
                }
            ).decode()
        )
        with self._lock:
            self.clients.append((ws, topics))
        try:
            for frame in ws:
                self._on_client_frame(ws, frame)
        finally:
            with self._lock:
                self.clients = [(c, t) for c, t in self.clients if c is not ws]

    def _on_client_frame(self, ws: ServerConnection, frame: str | bytes) -> None:
        try:
            msg = orjson.loads(frame)
        except orjson.JSONDecodeError:
            self._error(ws, "deserialization_failed", "failed to decode JSON object")
            return
        if not isinstance(msg, dict) or "topic" not in msg:
            self._error(ws, "deserialization_failed", "no topic in top-level JSON object")
            return
        try:
            _, name, args = parse_event(msg)
        except DecodeError:
            self._error(ws, "deserialization_failed", "failed to decode JSON object")
            return
        spec = api.BY_NAME.get(name)
        try:
            if spec not in api.OUTBOUND:
                raise DecodeError(f"no handler for {name}")
            decode_event(spec, args)
        except DecodeError:
            self._error(ws, "deserialization_failed", "failed to create Zeek event")
            return
        with self._lock:
            self.received.append(msg)

    def publish(self, message: dict[str, Any] | str) -> int:
        """Send a data message (or a raw frame) to every matching subscriber."""
        frame = message if isinstance(message, str) else orjson.dumps(message).decode()
        topic = message.get("topic", "") if isinstance(message, dict) else ""
        sent = 0
        with self._lock:
            targets = [
                ws
                for ws, topics in self.clients
                if not topic or any(topic.startswith(t) for t in topics)
            ]
        for ws in targets:
            ws.send(frame)
            sent += 1
        return sent

    def drop_clients(self) -> None:
        with self._lock:
            for ws, _ in self.clients:
                ws.close()
