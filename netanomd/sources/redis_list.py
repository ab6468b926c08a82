"""Suricata's ``redis`` EVE output as a :class:`~netanomd.sources.LiveSource`: a list (popped in
batches; several daemons can share one list) or a pub/sub channel.

Suricata's ``mode: list`` (its default, also called ``lpush``) pushes new records on the left,
so the oldest wait on the right: the list is popped from the right (``RPOP``/``BRPOP``), and a
backlog is scored oldest first.

Owns connecting (with capped backoff on errors), popping or receiving, and decoding the records
with the EVE line decoder. Records popped from a list are ours alone: they are handed on with
backpressure, never dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from netanomd.sources import Emit, ReadStats
from netanomd.sources.suricata_alerts import SignatureJoin
from netanomd.sources.suricata_eve import eve_lines_to_batch

log = logging.getLogger(__name__)


class RedisInput:
    """Suricata's ``redis`` EVE output: a list (RPOP, shared by several daemons) or pub/sub."""

    def __init__(
        self,
        url: str,
        key: str,
        mode: str,
        emit: Emit,
        *,
        batch_lines: int = 1000,
        client_factory: Callable[[str], Any] | None = None,
        name: str | None = None,
    ) -> None:
        if mode not in ("list", "pubsub"):
            raise ValueError(f"mode must be list or pubsub, not {mode!r}")
        self.url = url
        self.key = key
        self.mode = mode
        self.emit = emit
        self.batch_lines = batch_lines
        self.name = name or f"redis:{key}"
        self.stats = ReadStats()
        self.signatures = SignatureJoin(self.stats)
        self.errors = 0
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._factory = client_factory

    def stop(self) -> None:
        self._stop.set()

    def _client(self) -> Any:
        if self._factory is not None:
            return self._factory(self.url)
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5)

    def run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
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
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _run_list(self, client: Any) -> None:
        while not self._stop.is_set():
            items = client.rpop(self.key, self.batch_lines)
            self.ready.set()
            if not items:
                got = client.brpop([self.key], timeout=1)
                if got is None:
                    continue
                items = [got[1]]
            self._emit(items)

    def _run_pubsub(self, client: Any) -> None:
        ps = client.pubsub(ignore_subscribe_messages=True)
        ps.subscribe(self.key)
        self.ready.set()
        pending: list[bytes] = []
        first = 0.0
        try:
            while not self._stop.is_set():
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
            [i if isinstance(i, bytes) else str(i).encode() for i in items],
            self.stats,
            self.name,
            signatures=self.signatures,
        )
        if batch is None:
            return
        while not self.emit(batch):
            if self._stop.wait(0.05):
                return
