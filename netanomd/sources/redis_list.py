"""Suricata's ``redis`` EVE output as a :class:`~netanomd.sources.LiveSource`: a list shared by
several daemons, read as a reliable queue, or a pub/sub channel.

Suricata's ``mode: list`` (its default, also called ``lpush``) pushes new records on the left,
so the oldest wait on the right: a backlog is scored oldest first.

The reliable queue (Redis' documented ``LMOVE`` pattern, batched): a Lua script atomically moves
up to ``batch_lines`` records from the right of the shared list onto the left of this daemon's
*processing list* (``<key>:processing:<consumer>``), and returns them; when the list is empty,
``BLMOVE`` waits for one. A batch's records leave the processing list only in its ``ack``, once
every sink has written it (acks come in order, so the acknowledged records are the oldest: an
``LTRIM`` from the right, checked against digests of the batch's first and last record; anything
else falls back to removing each record). The ack itself only queues the batch (the scoring
thread does not wait on Redis): the reading thread sends the queued acks in the same round trip
as its next move, and before it waits in ``BLMOVE``; while it waits, and once it has stopped,
an ack is sent at once (by the thread acknowledging, or by :meth:`RedisInput.stop`), in order.
At start a daemon first re-reads its own processing list (what it had taken before it stopped
or was killed). Each consumer keeps a heartbeat key (``<key>:consumer:<name>``, TTL
``heartbeat_seconds``) and is listed with its processing list in the hash ``<key>:consumers``;
with ``recover_dead``, every daemon looks thrice per heartbeat for consumers whose heartbeat
expired and pushes their processing lists back onto the right of the shared list (oldest
first, in one Lua call, so two survivors never both take them), where the living pick them up.
Every record is scored at least once; a record that was scored but not yet acknowledged when
its daemon died is scored again (Elasticsearch keeps one copy: the ids are deterministic).

Owns connecting (with capped backoff on errors), moving or receiving, acknowledging, the
heartbeat, and decoding the records with the EVE line decoder. Records taken from a list are
handed on with backpressure, never dropped.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from netanomd.config import RedisSourceConfig
from netanomd.flow import FlowBatch
from netanomd.sources import Ack, Emit, ReadStats
from netanomd.sources.suricata_alerts import SignatureJoin
from netanomd.sources.suricata_eve import eve_lines_to_batch

log = logging.getLogger(__name__)

#: KEYS: shared list, processing list; ARGV: how many. Moves up to ARGV[1] records from the
#: right of the shared list onto the left of the processing list (oldest ends rightmost).
_MOVE = """
local items = redis.call('RPOP', KEYS[1], ARGV[1])
if not items then return {} end
for i = 1, #items, 1000 do
  redis.call('LPUSH', KEYS[2], unpack(items, i, math.min(i + 999, #items)))
end
return items
"""

#: KEYS: processing list; ARGV: count, SHA-1 of the oldest record, of the newest (hex). The n
#: oldest records are the acknowledged batch when the ends match: trim them; otherwise 0 (the
#: caller removes each).
_ACK = """
local n = tonumber(ARGV[1])
local oldest = redis.call('LINDEX', KEYS[1], -1)
local newest = redis.call('LINDEX', KEYS[1], -n)
if oldest and newest and redis.sha1hex(oldest) == ARGV[2] and redis.sha1hex(newest) == ARGV[3]
then
  redis.call('LTRIM', KEYS[1], 0, -(n + 1))
  return n
end
return 0
"""

#: KEYS: shared list, consumers hash, heartbeat key, processing list; ARGV: consumer name. If
#: the heartbeat is gone, the processing list goes back onto the right of the shared list
#: (its oldest record rightmost, popped first) and the consumer is forgotten.
_RECOVER = """
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local items = redis.call('LRANGE', KEYS[4], 0, -1)
for i = 1, #items, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(items, i, math.min(i + 999, #items)))
end
redis.call('DEL', KEYS[4])
redis.call('HDEL', KEYS[2], ARGV[1])
return #items
"""

#: KEYS: heartbeat key; ARGV: our token, TTL ms. Refreshes our heartbeat; 0 when another
#: process holds the name (ours expired and was taken, or a second daemon uses the same name).
_BEAT = """
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


def processing_list(key: str, consumer: str) -> str:
    """The processing list of ``consumer`` on the shared list ``key``."""
    return f"{key}:processing:{consumer}"


def heartbeat_key(key: str, consumer: str) -> str:
    return f"{key}:consumer:{consumer}"


def consumers_key(key: str) -> str:
    """The hash of the consumers of ``key``: name -> processing list."""
    return f"{key}:consumers"


class RedisInput:
    """Suricata's ``redis`` EVE output: a list (a reliable queue shared by several daemons) or
    pub/sub."""

    def __init__(
        self,
        url: str,
        key: str,
        mode: str,
        emit: Emit,
        *,
        batch_lines: int = 1000,
        consumer: str | None = None,
        processing: str | None = None,
        heartbeat_seconds: float = 10.0,
        recover_dead: bool = True,
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
        self.consumer = consumer or socket.gethostname()
        self.processing = processing or processing_list(key, self.consumer)
        self.heartbeat_seconds = heartbeat_seconds
        self.recover_dead = recover_dead
        self.name = name or f"redis:{key}"
        self.stats = ReadStats()
        self.signatures = SignatureJoin(self.stats)
        self.errors = 0
        #: Records put back from dead consumers' processing lists.
        self.recovered = 0
        #: Records re-read from our own processing list at start.
        self.resumed = 0
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._factory = client_factory
        self._token = uuid.uuid4().hex
        #: Batches written by every sink whose records are still to be acknowledged, oldest
        #: first; sent (in order) only while holding ``_sending``.
        self._acks: deque[list[bytes]] = deque()
        self._sending = threading.Lock()
        #: The reading thread is not about to send the queued acks (it waits in ``BLMOVE``, or
        #: has stopped): an ack is sent by whoever queues it.
        self._idle = True
        #: The client and ack script of the current connection (None before the first).
        self._link: tuple[Any, Any] | None = None

    def stop(self) -> None:
        """Stops reading; what was acknowledged is sent to Redis before this returns."""
        self._stop.set()
        self._idle = True
        try:
            self._send_acks()
        except Exception as exc:  # redis.ConnectionError and friends: read again at restart
            log.warning(
                "%s: %d acknowledged batches not removed from %s (%s); they are scored "
                "again at the next start",
                self.name,
                len(self._acks),
                self.processing,
                exc,
            )

    def _client(self) -> Any:
        if self._factory is not None:
            return self._factory(self.url)
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5)

    def run(self) -> None:
        backoff = 0.5
        resumed = False
        while not self._stop.is_set():
            try:
                client = self._client()
                if self.mode == "list":
                    self._run_list(client, resume=not resumed)
                    resumed = True
                else:
                    self._run_pubsub(client)
                backoff = 0.5
            except Exception as exc:  # redis.ConnectionError and friends: retry
                self.errors += 1
                log.warning("%s: %s; retrying in %.1fs", self.name, exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    # -- the reliable queue -------------------------------------------------------------------

    def _run_list(self, client: Any, *, resume: bool) -> None:
        move = client.register_script(_MOVE)
        self._link = (client, client.register_script(_ACK))
        self._register(client)
        # The heartbeat has its own thread: a batch held back by a slow sink must not make the
        # others think this daemon died.
        done = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat, args=(client, done), name=f"{self.name}-heartbeat", daemon=True
        )
        beat.start()
        try:
            if resume:
                # What we had taken before a stop or a kill, scored again oldest first. It stays
                # in the processing list (the newest on the left), so the acks trim it from the
                # right like any batch.
                held = client.lrange(self.processing, 0, -1)
                held.reverse()
                self.resumed += len(held)
                if held:
                    log.info(
                        "%s: re-reading %d records left in %s",
                        self.name,
                        len(held),
                        self.processing,
                    )
                for i in range(0, len(held), self.batch_lines):
                    self._emit(held[i : i + self.batch_lines], self._ack)
            self.ready.set()
            self._idle = False
            while not self._stop.is_set():
                items = self._send_acks(
                    lambda pipe: move(
                        keys=[self.key, self.processing], args=[self.batch_lines], client=pipe
                    )
                )
                if not items:
                    self._idle = True  # acks from here on are sent by the acknowledging thread
                    try:
                        self._send_acks()
                        one = client.blmove(self.key, self.processing, 1, "RIGHT", "LEFT")
                    finally:
                        self._idle = False
                    if one is None:
                        continue
                    items = [one]
                self._emit(items, self._ack)
        finally:
            # Stopped: acks are sent at once. Failed: they wait for the next connection's move.
            self._idle = self._stop.is_set()
            done.set()
            beat.join(5)
        self._send_acks()

    def _ack(self, lines: list[bytes]) -> None:
        """Every sink has written the batch of ``lines``: queue its acknowledgement, sent at
        once while the reading thread waits or has stopped (module doc)."""
        self._acks.append(lines)
        if self._idle:
            self._send_acks()

    def _send_acks(self, then: Callable[[Any], Any] | None = None) -> Any:
        """Sends the queued acks, oldest first, with ``then(pipeline)`` after them in the same
        round trip; returns what ``then`` returned. Acks not known to be sent stay queued."""
        with self._sending:
            if self._link is None:
                return None
            client, script = self._link
            batches = []
            while self._acks:
                batches.append(self._acks.popleft())
            if not batches and then is None:
                return None
            pipe = client.pipeline(transaction=False)
            for lines in batches:
                ends = [hashlib.sha1(lines[k], usedforsecurity=False).hexdigest() for k in (0, -1)]
                script(keys=[self.processing], args=[len(lines), *ends], client=pipe)
            if then is not None:
                then(pipe)
            try:
                results = pipe.execute()
            except Exception:
                # Sent again (a batch already trimmed then no longer matches the ends, and its
                # records are gone: removing each is a no-op).
                self._acks.extendleft(reversed(batches))
                raise
            left = [b for b, trimmed in zip(batches, results, strict=False) if not trimmed]
            if left:
                self._remove_each(client, left)
            return results[-1] if then is not None else None

    def _remove_each(self, client: Any, batches: list[list[bytes]]) -> None:
        """Acknowledges batches whose records are not the oldest of the processing list (it
        was taken over meanwhile): removes each record; on an error they stay queued."""
        try:
            pipe = client.pipeline(transaction=False)
            for lines in batches:
                for line in lines:
                    pipe.lrem(self.processing, -1, line)
            pipe.execute()
        except Exception as exc:
            log.warning("%s: acknowledging %d batches: %s", self.name, len(batches), exc)
            self._acks.extendleft(reversed(batches))

    def _register(self, client: Any) -> None:
        hb = heartbeat_key(self.key, self.consumer)
        old = client.set(hb, self._token, px=self._ttl_ms(), get=True)
        if old is not None and old.decode() != self._token:
            log.warning(
                "%s: consumer name %r was in use (a previous run, or another daemon with the "
                "same name: give each daemon its own 'consumer')",
                self.name,
                self.consumer,
            )
        client.hset(consumers_key(self.key), self.consumer, self.processing)

    def _ttl_ms(self) -> int:
        return max(int(self.heartbeat_seconds * 1000), 1)

    def _heartbeat(self, client: Any, done: threading.Event) -> None:
        """Thrice per heartbeat: refresh ours; with ``recover_dead``, put the records of
        consumers whose heartbeat expired back onto the shared list."""
        beat = client.register_script(_BEAT)
        recover = client.register_script(_RECOVER)
        while not done.is_set():
            try:
                self._housekeeping(client, beat, recover)
            except Exception as exc:  # the reading loop reports and reconnects
                log.debug("%s: heartbeat: %s", self.name, exc)
            done.wait(self.heartbeat_seconds / 3)

    def _housekeeping(self, client: Any, beat: Any, recover: Any) -> None:
        hb = heartbeat_key(self.key, self.consumer)
        if not beat(keys=[hb], args=[self._token, self._ttl_ms()]):
            log.error(
                "%s: another process holds consumer name %r (two daemons share the name?); "
                "taking it back",
                self.name,
                self.consumer,
            )
            self._register(client)
        if not self.recover_dead:
            return
        for raw_name, raw_list in client.hgetall(consumers_key(self.key)).items():
            name = raw_name.decode()
            if name == self.consumer:
                continue
            n = recover(
                keys=[self.key, consumers_key(self.key), heartbeat_key(self.key, name), raw_list],
                args=[name],
            )
            if n >= 0:
                self.recovered += n
                log.warning(
                    "%s: consumer %r is dead (no heartbeat for %.1fs): %d of its records are "
                    "back on %s",
                    self.name,
                    name,
                    self.heartbeat_seconds,
                    n,
                    self.key,
                )

    # -- pub/sub ------------------------------------------------------------------------------

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
                    self._emit(pending, None)
                    pending = []
        finally:
            ps.close()

    def _emit(self, items: list[bytes], done: Callable[[list[bytes]], None] | None) -> None:
        lines = [i if isinstance(i, bytes) else str(i).encode() for i in items]
        batch = eve_lines_to_batch(lines, self.stats, self.name, signatures=self.signatures)
        ack: Ack | None = None
        if done is not None:

            def ack() -> None:
                done(lines)

        if batch is None:
            if ack is None:
                return
            # Records without flows (dns, stats events) are acknowledged in their turn too.
            batch = FlowBatch.empty()
        while not self.emit(batch, ack):
            if self._stop.wait(0.05):
                return


def redis_source(cfg: RedisSourceConfig, emit: Emit, *, name: str) -> RedisInput:
    """The Redis input ``cfg`` describes, handing its batches to ``emit``."""
    return RedisInput(
        cfg.url,
        cfg.key,
        cfg.mode,
        emit,
        batch_lines=cfg.batch_lines,
        consumer=cfg.consumer,
        processing=cfg.processing_list,
        heartbeat_seconds=cfg.heartbeat_seconds,
        recover_dead=cfg.recover_dead,
        name=name,
    )
