"""Zeek over native Broker peering (the ``broker`` Python bindings that ship with Zeek).

Owns the daemon's Broker endpoint: it either peers with Zeek (``connect``; Broker keeps
retrying in the background until Zeek is up, and again after Zeek restarts) or listens for
Zeek to peer with it (``Broker::peer`` in local.zeek, or the package's
``NetAnom::broker_peer``). A status subscriber logs and counts peers added and lost; a failed
connection attempt is a warning naming the Zeek versions these bindings can peer with. Flow
events (``NetAnom::flows``) on the subscribed topic prefixes are decoded into FlowBatches and
handed to ``emit`` (a :class:`~netanomd.sources.LiveSource`); ``NetAnom::drain`` is answered
with ``NetAnom::drained`` once those batches have been through the sinks.
:meth:`ZeekBrokerClient.publish_verdicts` hands verdicts to the endpoint's thread without
waiting (bounded; overflow dropped and counted). Malformed messages are counted and skipped;
events of another contract major version are refused and logged as errors.

Works with both binding generations (see :mod:`netanomd.zeek.binding`); bindings that cannot
peer with the local Zeek are refused at construction. Broker 1.4's
``StatusSubscriber.get(timeout)`` cannot convert its result, so statuses are polled; the
thread sleeps in ``select`` on the subscriber's descriptor and a wake-up pipe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from netanomd.sources import Emit
from netanomd.zeek import api, binding
from netanomd.zeek.brokerjson import DecodeError, VersionError
from netanomd.zeek.brokerpy import decode_event, encode_event, flows_to_batch, parse_event
from netanomd.zeek.transport import (
    Counters,
    Drains,
    Outbox,
    Values,
    host_port,
    log_malformed,
    log_refused,
)

log = logging.getLogger(__name__)

#: Seconds the endpoint stays up after its last publish when stopping.
LINGER = 0.5


def parse_hostport(text: str, default_port: int = 9999) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port``."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, default_port


class ZeekBrokerClient:
    """A Broker endpoint that receives flow batches and publishes verdicts."""

    def __init__(
        self,
        emit: Emit,
        *,
        name: str = "zeek_broker",
        connect: tuple[str, int] | None = None,
        listen: tuple[str, int] | None = None,
        topics: Sequence[str] = (api.FLOWS_TOPIC,),
        verdict_topic: str = api.VERDICTS_TOPIC,
        retry: float = 5.0,
        broker: ModuleType | None = None,
        zeek_version: str | None = None,
        outbox_limit: int = 10_000,
    ) -> None:
        """``zeek_version``: the Zeek to peer with, when known (default: the local one's,
        from ``zeek-config``); bindings that cannot peer with it raise TransportError."""
        if (connect is None) == (listen is None):
            raise ValueError("give exactly one of connect or listen")
        self.broker = broker or binding.load_broker()
        binding.check_peerable(self.broker, zeek_version or binding.zeek_version())
        self.emit = emit
        self.name = name
        self.connect = connect
        self.listen = listen
        self.topics = list(topics)
        self.verdict_topic = verdict_topic
        self.retry = retry
        self.counters = Counters()
        #: The port actually listened on (``listen`` with port 0 picks a free one).
        self.port: int | None = None
        #: Set once the endpoint listens or has started peering.
        self.ready = threading.Event()
        self.outbox = Outbox(self.counters, outbox_limit)
        self.drains = Drains(self.outbox)
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._pipe_lock = threading.Lock()
        self.outbox.wake = self._wake
        self._peers = 0
        self._published_at = 0.0

    @property
    def connected(self) -> bool:
        return self._peers > 0

    def _wake(self) -> None:
        with self._pipe_lock:
            if self._wake_w < 0:
                return
            with contextlib.suppress(BlockingIOError):  # full: already awake
                os.write(self._wake_w, b"\0")

    def run(self) -> None:
        try:
            with binding.endpoint(self.broker) as ep:
                self._run(ep)
        finally:
            with self._pipe_lock:
                os.close(self._wake_r)
                os.close(self._wake_w)
                self._wake_r = self._wake_w = -1

    def _run(self, ep: Any) -> None:
        sub = ep.make_subscriber(self.topics[0])
        for topic in self.topics[1:]:
            sub.add_topic(topic, True)
        status = ep.make_status_subscriber(True)
        version = binding.version(self.broker)
        if self.listen is not None:
            self.port = int(ep.listen(self.listen[0], self.listen[1]))
            if not self.port:
                raise OSError(f"Broker cannot listen on {host_port(*self.listen)}")
            log.info("Broker %s listening on %s", version, host_port(self.listen[0], self.port))
        else:
            assert self.connect is not None
            ep.peer_nosync(self.connect[0], self.connect[1], self.retry)
            log.info("Broker %s peering with %s", version, host_port(*self.connect))
        self.ready.set()
        fds = [sub.fd(), self._wake_r]
        while not self._stop.is_set():
            readable, _, _ = select.select(fds, [], [], 0.2)
            if self._wake_r in readable:
                os.read(self._wake_r, 4096)
            self._statuses(status)
            for msg in sub.poll():
                self._on_message(msg)
            self._publish(ep)
        self._publish(ep)
        # The endpoint drops what it has not delivered yet when it shuts down: give what was
        # just published a moment to reach Zeek.
        time.sleep(max(0.0, LINGER - (time.monotonic() - self._published_at)))
        self._peers = 0
        self.outbox.clear()

    def _publish(self, ep: Any) -> None:
        items = self.outbox.take()
        if not items:
            return
        if self.connected:
            for spec, values in items:
                ep.publish(self.verdict_topic, encode_event(self.broker, spec, values))
            self.counters.outbound([spec for spec, _ in items], len(items))
            self._published_at = time.monotonic()
        else:
            self.counters.outbound([spec for spec, _ in items], 0)
        self.outbox.done()

    def _statuses(self, status: Any) -> None:
        sc = self.broker.SC
        for st in status.poll():
            if isinstance(st, self.broker.Error):
                where = host_port(*self.connect) if self.connect else "a peer"
                log.warning(
                    "Broker %s: cannot peer with %s: %s (these bindings peer only with %s)",
                    binding.version(self.broker),
                    where,
                    st,
                    binding.peerable_zeek(binding.version(self.broker)),
                )
                continue
            code = st.code() if hasattr(st, "code") else None
            if code == sc.PeerAdded:
                self._peers += 1
                self.counters.connects += 1
                log.info("Zeek peer added: %s", st)
            elif code in (sc.PeerLost, sc.PeerRemoved):
                self._peers = max(0, self._peers - 1)
                self.counters.disconnects += 1
                log.warning("Zeek peer lost: %s", st)
            else:
                log.info("Broker status: %s", st)

    def _on_message(self, msg: Any) -> None:
        self.counters.messages += 1
        try:
            _topic, data = msg
            name, args = parse_event(data)
            if name == api.DRAIN.name:
                self.drains.request(decode_event(api.DRAIN, args)["token"])
                return
            if name != api.FLOWS.name:
                raise DecodeError(f"unexpected event {name!r}")
            batch = flows_to_batch(args)
        except VersionError as exc:
            log_refused(log, self.counters, exc)
            return
        except (DecodeError, ValueError, TypeError) as exc:
            log_malformed(log, self.counters, exc)
            return
        self.counters.flows += len(batch)
        ack = self.drains.emitted()
        if not self.emit(batch, ack):
            self.counters.flows_dropped += len(batch)
            ack()

    def publish_verdicts(self, verdicts: Sequence[Values]) -> int:
        """Queue one ``NetAnom::verdict`` per item for the endpoint's thread; returns how many
        were taken. Safe from any thread and never waits: with no Zeek peered, or the outbox
        full, the rest are dropped and counted in ``counters.verdicts_dropped``."""
        if not self.connected:
            self.counters.verdicts_dropped += len(verdicts)
            return 0
        return self.outbox.put(api.VERDICT, verdicts)

    def publish_incidents(self, incidents: Sequence[Values]) -> int:
        """Queue one ``NetAnom::incident`` per item, as :meth:`publish_verdicts` does."""
        if not self.connected:
            self.counters.incidents_dropped += len(incidents)
            return 0
        return self.outbox.put(api.INCIDENT, incidents)

    def flush(self, timeout: float) -> bool:
        """Wait until the verdicts handed over so far are published; False on timeout."""
        return self.outbox.wait_sent(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._wake()
