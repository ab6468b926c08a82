"""What the two Zeek links (Broker WebSocket JSON, native Broker) have in common.

A link receives ``NetAnom::flows`` and ``NetAnom::drain`` from Zeek and sends
``NetAnom::verdict``, ``NetAnom::incident`` and ``NetAnom::drained`` back. Outbound events
never travel on the caller's thread: :class:`Outbox` is a bounded, thread-safe hand-off onto
the link's own thread (or event loop), so the scorer publishing verdicts never waits on the
network or on the link's reader; what does not fit, or arrives while no Zeek is connected, is
dropped and counted. :class:`Drains` answers Zeek's drain requests once every batch received
before them has been through the sinks. Counters are plain integers the metrics module reads.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from netanomd.zeek import api


@dataclass
class Counters:
    #: Messages received (frames on WebSocket, Broker messages natively).
    messages: int = 0
    flows: int = 0
    malformed: int = 0
    #: Events refused because their contract major version is not ours.
    refused: int = 0
    #: Flows the pipeline did not take (``emit`` returned False).
    flows_dropped: int = 0
    #: Error messages the server sent (WebSocket ``{"type": "error"}``).
    server_errors: int = 0
    verdicts_sent: int = 0
    #: Verdicts not sent: no Zeek connected, the outbox full, or the send failed.
    verdicts_dropped: int = 0
    incidents_sent: int = 0
    #: Incidents not sent, for the same reasons as verdicts.
    incidents_dropped: int = 0
    drains_answered: int = 0
    connects: int = 0
    disconnects: int = 0

    def outbound(self, specs: Sequence[api.EventSpec], sent: int) -> None:
        """Count outbound events: the first ``sent`` of ``specs`` went out, the rest were
        dropped (verdicts and incidents are counted; drain answers are not)."""
        for i, spec in enumerate(specs):
            if spec is api.VERDICT:
                if i < sent:
                    self.verdicts_sent += 1
                else:
                    self.verdicts_dropped += 1
            elif spec is api.INCIDENT:
                if i < sent:
                    self.incidents_sent += 1
                else:
                    self.incidents_dropped += 1


#: One outbound event's plain values by argument name (``version`` is added by the codec).
Values = Mapping[str, Any]


class VerdictPublisher(Protocol):
    def publish_verdicts(self, verdicts: Sequence[Values]) -> int:
        """Hand ``NetAnom::verdict`` values to the link; returns how many were accepted.
        Never blocks."""
        ...

    def publish_incidents(self, incidents: Sequence[Values]) -> int:
        """Hand ``NetAnom::incident`` values to the link; returns how many were accepted.
        Never blocks."""
        ...


class Outbox:
    """Bounded, thread-safe queue of outbound events, drained by the link's own thread.

    ``put`` is called from any thread and returns at once; ``wake`` (set by the link) nudges
    its thread or loop. Dropped verdicts and incidents are counted in ``counters``.
    """

    def __init__(self, counters: Counters, limit: int = 10_000) -> None:
        self.counters = counters
        self.limit = limit
        self.wake: Callable[[], None] = lambda: None
        self._items: deque[tuple[api.EventSpec, Values]] = deque()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._sending = False

    def put(self, spec: api.EventSpec, items: Sequence[Values]) -> int:
        with self._lock:
            room = max(0, self.limit - len(self._items))
            accepted = list(items[:room])
            self._items.extend((spec, v) for v in accepted)
        self.counters.outbound([spec] * (len(items) - len(accepted)), 0)
        if accepted:
            self.wake()
        return len(accepted)

    def take(self) -> list[tuple[api.EventSpec, Values]]:
        """Everything queued; the link calls :meth:`done` once it has sent it."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._sending = bool(items)
        return items

    def done(self) -> None:
        with self._lock:
            self._sending = False
            if not self._items:
                self._idle.notify_all()

    def clear(self) -> None:
        """Forget what is queued (the connection is gone); verdicts and incidents count as
        dropped."""
        lost = self.take()
        self.done()
        self.counters.outbound([spec for spec, _ in lost], 0)

    def wait_sent(self, timeout: float) -> bool:
        """Wait until everything handed over has been sent (or dropped); False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._items and not self._sending, timeout)

    def __len__(self) -> int:
        return len(self._items)


class Drains:
    """Answers ``NetAnom::drain`` once every batch emitted before it has been acknowledged.

    :meth:`emitted` returns the ``ack`` to pass with a batch (call it yourself when the batch
    was dropped); :meth:`request` queues the answer until the batches in flight are through.
    """

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self._in_flight = 0
        self._waiting: list[int] = []
        self._lock = threading.Lock()

    def emitted(self) -> Callable[[], None]:
        with self._lock:
            self._in_flight += 1
        done = threading.Event()

        def ack() -> None:
            if done.is_set():
                return
            done.set()
            with self._lock:
                self._in_flight -= 1
                ready = self._waiting if self._in_flight == 0 else []
                if ready:
                    self._waiting = []
            self._answer(ready)

        return ack

    def request(self, token: int) -> None:
        with self._lock:
            if self._in_flight:
                self._waiting.append(token)
                return
        self._answer([token])

    def _answer(self, tokens: list[int]) -> None:
        if tokens:
            self.outbox.put(api.DRAINED, [{"token": t} for t in tokens])
            self.outbox.counters.drains_answered += len(tokens)


def log_malformed(log: logging.Logger, counters: Counters, what: object) -> None:
    """Count a malformed message; log the first 20 and then every 1000th."""
    counters.malformed += 1
    n = counters.malformed
    if n <= 20 or n % 1000 == 0:
        log.warning("skipped a malformed message (%d so far): %s", n, what)


def log_refused(log: logging.Logger, counters: Counters, what: object) -> None:
    """Count an event of another contract version; the first and every 1000th at ERROR."""
    counters.refused += 1
    n = counters.refused
    if n == 1 or n % 1000 == 0:
        log.error("%s (%d refused so far)", what, n)


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
