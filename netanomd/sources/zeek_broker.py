"""Zeek over native Broker peering (the ``broker`` Python bindings that ship with Zeek).

Owns the daemon's Broker endpoint: it either peers with Zeek (``connect``; Broker keeps
retrying in the background until Zeek is up, and again after Zeek restarts) or listens for
Zeek to peer with it (``Broker::peer`` in local.zeek). A status subscriber logs and counts
peers added and lost. Flow events (``NetAnom::flows``) on the subscribed topic prefixes are
decoded into FlowBatches and handed to ``on_batch``; :meth:`ZeekBrokerClient.send_verdicts`
publishes ``NetAnom::verdict`` events. Malformed messages are counted and skipped.

Works with both binding generations (see :mod:`netanomd.zeek.binding`). Broker 1.4's
``StatusSubscriber.get(timeout)`` cannot convert its result, so statuses are polled.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from netanomd.decision import Alert
from netanomd.zeek import api, binding
from netanomd.zeek.brokerjson import DecodeError
from netanomd.zeek.brokerpy import flows_to_batch, parse_event, verdict_event
from netanomd.zeek.transport import Counters, OnBatch, log_malformed

log = logging.getLogger(__name__)


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
        on_batch: OnBatch,
        *,
        connect: tuple[str, int] | None = None,
        listen: tuple[str, int] | None = None,
        topics: Sequence[str] = (api.FLOWS_TOPIC,),
        verdict_topic: str = api.VERDICTS_TOPIC,
        retry: float = 5.0,
        broker: ModuleType | None = None,
    ) -> None:
        if (connect is None) == (listen is None):
            raise ValueError("give exactly one of connect or listen")
        self.broker = broker or binding.load_broker()
        self.on_batch = on_batch
        self.connect = connect
        self.listen = listen
        self.topics = list(topics)
        self.verdict_topic = verdict_topic
        self.retry = retry
        self.counters = Counters()
        #: The port actually listened on (``listen`` with port 0 picks a free one).
        self.port: int | None = None
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._ep: Any = None
        self._peers = 0

    @property
    def connected(self) -> bool:
        return self._peers > 0

    def run(self) -> None:
        with binding.endpoint(self.broker) as ep:
            sub = ep.make_subscriber(self.topics[0])
            for topic in self.topics[1:]:
                sub.add_topic(topic, True)
            status = ep.make_status_subscriber(True)
            if self.listen is not None:
                self.port = int(ep.listen(self.listen[0], self.listen[1]))
                if not self.port:
                    raise OSError(f"Broker cannot listen on {self.listen[0]}:{self.listen[1]}")
                log.info(
                    "Broker %s listening on %s:%d",
                    binding.version(self.broker),
                    self.listen[0],
                    self.port,
                )
            else:
                assert self.connect is not None
                ep.peer_nosync(self.connect[0], self.connect[1], self.retry)
                log.info(
                    "Broker %s peering with %s:%d", binding.version(self.broker), *self.connect
                )
            self._ep = ep
            self.ready.set()
            try:
                while not self._stop.is_set():
                    self._statuses(status)
                    msg = sub.get(0.2)
                    if msg is None:
                        continue
                    self._on_message(msg)
                    for extra in sub.poll():
                        self._on_message(extra)
            finally:
                self._ep = None

    def _statuses(self, status: Any) -> None:
        sc = self.broker.SC
        for st in status.poll():
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
            if name != api.FLOWS.name:
                raise DecodeError(f"unexpected event {name!r}")
            batch = flows_to_batch(args)
        except (DecodeError, ValueError, TypeError) as exc:
            log_malformed(log, self.counters, exc)
            return
        self.counters.flows += len(batch)
        self.on_batch(batch)

    def send_verdicts(self, alerts: Sequence[Alert]) -> int:
        ep = self._ep
        if ep is None or not alerts:
            self.counters.verdicts_dropped += len(alerts)
            return 0
        for a in alerts:
            ep.publish(self.verdict_topic, verdict_event(self.broker, a))
        self.counters.verdicts_sent += len(alerts)
        return len(alerts)

    def stop(self) -> None:
        self._stop.set()
