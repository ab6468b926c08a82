"""The one place a Zeek link is built from its source configuration.

A Zeek link is a live source (flows in, handed to ``emit``) that also carries verdicts back to
Zeek: :class:`ZeekLink` is :class:`~netanomd.sources.LiveSource` plus ``publish_verdicts``
(non-blocking, see :mod:`netanomd.zeek.transport`) and its counters. :func:`zeek_source` picks
the transport from the configuration: Broker's WebSocket JSON API (``zeek_ws``) or native
Broker peering (``zeek_broker``). Used by the daemon's wiring and by ``netanomd zeek listen``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from netanomd.config import ZeekBrokerSourceConfig, ZeekWsSourceConfig
from netanomd.sources import Emit, LiveSource
from netanomd.zeek import api
from netanomd.zeek.transport import Counters, VerdictPublisher


@runtime_checkable
class ZeekLink(LiveSource, VerdictPublisher, Protocol):
    counters: Counters

    def flush(self, timeout: float) -> bool:
        """Wait until the verdicts handed over so far are sent; False on timeout."""
        ...


def zeek_source(
    cfg: ZeekWsSourceConfig | ZeekBrokerSourceConfig,
    emit: Emit,
    *,
    name: str,
    verdict_topic: str = api.VERDICTS_TOPIC,
) -> ZeekLink:
    """The Zeek link ``cfg`` describes, handing its batches to ``emit``."""
    if isinstance(cfg, ZeekWsSourceConfig):
        from netanomd.sources.zeek_ws import ZeekWebSocketClient, tls_context

        ctx = tls_context(cfg.ca_file, not cfg.insecure) if cfg.url.startswith("wss://") else None
        return ZeekWebSocketClient(
            cfg.url,
            emit,
            name=name,
            topics=cfg.topics,
            verdict_topic=verdict_topic,
            ssl_context=ctx,
        )
    from netanomd.sources.zeek_broker import ZeekBrokerClient, parse_hostport

    return ZeekBrokerClient(
        emit,
        name=name,
        connect=parse_hostport(cfg.connect) if cfg.connect else None,
        listen=parse_hostport(cfg.listen) if cfg.listen else None,
        topics=cfg.topics,
        verdict_topic=verdict_topic,
    )
