"""Builds a run's parts from configuration: the sinks, and the live sources by their ``type``.

One table from source type to factory (:data:`SOURCE_FACTORIES`) and one builder per sink, used by
the daemon and by the commands that need the same parts (``score --es-url``, ``zeek listen``), so
no part is constructed in two places. Every live source gets the pipeline's
:class:`~netanomd.sources.Emit` with the intake policy its producer can live with: followed files,
Redis lists and Zeek links wait for room (they can hold their producer back), Suricata's sockets
cannot and go by the pipeline's ``on_full`` policy.
"""

from __future__ import annotations

import glob
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netanomd.config import (
    RedisSourceConfig,
    SinksConfig,
    SuricataEveSourceConfig,
    SuricataSocketSourceConfig,
    ZeekBrokerSourceConfig,
    ZeekLogSourceConfig,
    ZeekWsSourceConfig,
)
from netanomd.daemon.pipeline import Pipeline
from netanomd.sinks import Sink, SinkSet
from netanomd.sinks.elasticsearch import ElasticsearchSink
from netanomd.sinks.incident_ids import IncidentIds
from netanomd.sinks.sqlite import SQLiteSink
from netanomd.sources import LiveSource
from netanomd.sources.follow import LogFollower, OffsetStore
from netanomd.sources.redis_list import redis_source
from netanomd.sources.suricata_socket import EveSocket


@dataclass
class SourceContext:
    """What source factories share: the pipeline they feed and the state directory."""

    pipeline: Pipeline
    state_dir: Path
    _offsets: OffsetStore | None = None

    @property
    def offsets(self) -> OffsetStore:
        if self._offsets is None:
            self._offsets = OffsetStore(self.state_dir / "offsets.json")
        return self._offsets


SourceFactory = Callable[[Any, str, SourceContext], list[LiveSource]]


def _zeek(
    cfg: ZeekWsSourceConfig | ZeekBrokerSourceConfig, name: str, ctx: SourceContext
) -> list[LiveSource]:
    from netanomd.sources.zeek_link import zeek_source

    # A Zeek connection is TCP: holding the reader back pushes back on Zeek.
    return [zeek_source(cfg, ctx.pipeline.emitter(name, block=True, timeout=5.0), name=name)]


def _followed(
    cfg: ZeekLogSourceConfig | SuricataEveSourceConfig, name: str, ctx: SourceContext
) -> list[LiveSource]:
    # A pattern that matches nothing yet names a file that is waited for.
    paths = sorted(Path(p) for p in (glob.glob(cfg.path) or [cfg.path]))
    out: list[LiveSource] = []
    for path in paths:
        label = f"{name}:{path.name}"
        emit = ctx.pipeline.emitter(label, block=True)
        out.append(LogFollower(path, emit, ctx.offsets, from_start=cfg.from_start, name=label))
    return out


def _suricata_socket(
    cfg: SuricataSocketSourceConfig, name: str, ctx: SourceContext
) -> list[LiveSource]:
    return [EveSocket(cfg.path, cfg.kind, ctx.pipeline.emitter(name, block=False), name=name)]


def _redis(cfg: RedisSourceConfig, name: str, ctx: SourceContext) -> list[LiveSource]:
    emit = ctx.pipeline.emitter(name, block=True)
    return [redis_source(cfg, emit, name=name)]


#: Source ``type`` (as in the configuration) -> the factory that builds its live sources.
SOURCE_FACTORIES: dict[str, SourceFactory] = {
    "zeek_ws": _zeek,
    "zeek_broker": _zeek,
    "zeek_log": _followed,
    "suricata_eve": _followed,
    "suricata_socket": _suricata_socket,
    "redis": _redis,
}


def live_sources(configs: Sequence[Any], ctx: SourceContext) -> list[LiveSource]:
    """Every configured source, named ``<type>[<index>]`` (a followed pattern adds the file)."""
    out: list[LiveSource] = []
    for i, cfg in enumerate(configs):
        out.extend(SOURCE_FACTORIES[cfg.type](cfg, f"{cfg.type}[{i}]", ctx))
    return out


def elasticsearch_sink(
    client: Any,
    namespace: str,
    spool_dir: Path,
    *,
    dead_letter: Path | None = None,
    ids: IncidentIds | None = None,
) -> ElasticsearchSink:
    """The Elasticsearch sink with its on-disk spool, observed as this host."""
    from netanomd.ecs import ObserverInfo
    from netanomd.spool import Spool

    host = socket.gethostname()
    return ElasticsearchSink(
        client,
        Spool(spool_dir),
        ObserverInfo(name=host, hostname=host),
        namespace=namespace,
        dead_letter=dead_letter,
        ids=ids,
    )


def configured_sinks(cfg: SinksConfig, state_dir: Path, ids: IncidentIds) -> SinkSet:
    """The sinks the configuration turns on, not yet opened (Zeek notices are added by
    :func:`zeek_notice_sinks` once the Zeek links exist). Every sink names incidents with the
    same ``ids``."""
    sinks = SinkSet()
    if cfg.sqlite.enabled:
        sinks.add(SQLiteSink(cfg.sqlite.path, ids=ids))
    if cfg.elasticsearch.enabled:
        from netanomd.es_client import elasticsearch_client

        sinks.add(
            elasticsearch_sink(
                elasticsearch_client(cfg.elasticsearch),
                cfg.elasticsearch.namespace,
                state_dir / "es-spool",
                dead_letter=state_dir / "es-dead-letter.jsonl",
                ids=ids,
            )
        )
    return sinks


def zeek_notice_sinks(sources: Sequence[LiveSource], ids: IncidentIds) -> list[Sink]:
    """One notice sink per Zeek link among ``sources`` (verdicts go back over the link the
    flows came in on)."""
    from netanomd.sinks.zeek_notice import ZeekNoticeSink
    from netanomd.sources.zeek_link import ZeekLink

    return [ZeekNoticeSink(s, ids) for s in sources if isinstance(s, ZeekLink)]
