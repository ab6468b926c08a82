"""The one place a Zeek link is built from its source configuration.

A Zeek link is a live source (flows in, handed to ``emit``) that also carries verdicts back to
Zeek: :class:`ZeekLink` is :class:`~netanomd.sources.LiveSource` plus ``publish_verdicts``
(non-blocking, see :mod:`netanomd.zeek.transport`) and its counters. :func:`zeek_source` picks
the transport from the configuration: Broker's WebSocket JSON API (``zeek_ws``) or native
Broker peering (``zeek_broker``). Used by the daemon's wiring and by ``netanomd zeek listen``.

Shards: the Zeek package publishes each originator's flows to one shard topic,
``<flows_topic>/<k>/`` with ``k`` from the address (``NetAnom::shards`` of them). A link with
``shards`` or ``shard_of`` subscribes to its shards' topics only (:func:`flow_topics`), so one
host's flows always reach the same daemon. The trailing ``/`` matters: Broker matches topics
by byte prefix, and ``netanom/flows/1/`` does not match shard 10.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from netanomd.config import ZeekBrokerSourceConfig, ZeekWsSourceConfig
from netanomd.errors import ConfigError
from netanomd.sources import Emit, LiveSource
from netanomd.zeek import api
from netanomd.zeek.transport import Counters, VerdictPublisher


@runtime_checkable
class ZeekLink(LiveSource, VerdictPublisher, Protocol):
    counters: Counters

    def flush(self, timeout: float) -> bool:
        """Wait until the verdicts handed over so far are sent; False on timeout."""
        ...


def shard_topic(prefix: str, k: int) -> str:
    """The topic the Zeek package publishes shard ``k``'s flows to (``main.zeek``)."""
    return f"{prefix.rstrip('/')}/{k}/"


def shards_taken(cfg: ZeekWsSourceConfig | ZeekBrokerSourceConfig) -> tuple[int, ...]:
    """The shards a link takes (empty: every shard). ``shard_of: i/n`` takes the shards
    ``k < zeek_shards`` (default ``n``) with ``k mod n = i``."""
    if cfg.shards and cfg.shard_of:
        raise ConfigError(f"{cfg.type}: give shards or shard_of, not both")
    if any(k < 0 for k in cfg.shards):
        raise ConfigError(f"{cfg.type}: shards {list(cfg.shards)}: a shard number is >= 0")
    if not cfg.shard_of:
        return tuple(sorted(set(cfg.shards)))
    i, n = (int(x) for x in cfg.shard_of.split("/"))
    total = cfg.zeek_shards or n
    if i >= n or total < n:
        raise ConfigError(
            f"{cfg.type}: shard_of {cfg.shard_of}: needs i < n <= zeek_shards ({total})"
        )
    return tuple(k for k in range(total) if k % n == i)


def flow_topics(cfg: ZeekWsSourceConfig | ZeekBrokerSourceConfig) -> tuple[str, ...]:
    """The topics a link subscribes to: its shards' topics under each prefix, or the
    prefixes themselves (every shard)."""
    shards = shards_taken(cfg)
    if not shards:
        return tuple(cfg.topics)
    return tuple(shard_topic(p, k) for p in cfg.topics for k in shards)


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
            topics=flow_topics(cfg),
            verdict_topic=verdict_topic,
            ssl_context=ctx,
        )
    from netanomd.sources.zeek_broker import ZeekBrokerClient, parse_hostport

    return ZeekBrokerClient(
        emit,
        name=name,
        connect=parse_hostport(cfg.connect) if cfg.connect else None,
        listen=parse_hostport(cfg.listen) if cfg.listen else None,
        topics=flow_topics(cfg),
        verdict_topic=verdict_topic,
    )
