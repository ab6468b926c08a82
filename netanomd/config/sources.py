"""The source types of ``netanomd run``: one declaration each, the one table of sources.

A new source type is one more class here, decorated with :func:`~netanomd.config.declare.source`:
its keys, defaults, descriptions and rules; the schema, the defaults, the error messages and the
typed result follow from it. Its first field is ``type`` (the name it is registered under).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from netanomd.config.declare import required, setting, source
from netanomd.zeek.api import FLOWS_TOPIC

__all__ = [
    "FOLLOW_REMOVED",
    "RedisSourceConfig",
    "SourceConfig",
    "SuricataEveSourceConfig",
    "SuricataSocketSourceConfig",
    "ZeekBrokerSourceConfig",
    "ZeekLogSourceConfig",
    "ZeekWsSourceConfig",
]

HOSTPORT = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$"
HOSTPORT_ERR = "{value} is not a valid host:port (e.g. 127.0.0.1:9999)"

#: Why ``follow:`` of file sources is refused: ``netanomd run`` has no file source that ends.
FOLLOW_REMOVED = (
    "'follow' was removed: netanomd run always follows files as they grow and rotate "
    "(like tail -F); delete this key (to read files once, use netanomd score)"
)


@dataclass(frozen=True)
class SourceConfig:
    """One flow source; 'type' selects which keys apply."""

    type: str = required("source type")


def _topics() -> Any:
    return setting(
        (FLOWS_TOPIC,),
        "topic prefixes to subscribe to (NetAnom::flows_topic in config.zeek)",
        min_items=1,
    )


def _shards() -> Any:
    return setting(
        (),
        "take only these shards of NetAnom::shards (each host's flows stay on one shard); "
        "empty: every shard",
    )


def _shard_of() -> Any:
    return setting(
        None,
        "'i/n': this daemon is number i (0 to n-1) of n daemons and takes the shards k with "
        "k mod n = i of zeek_shards (so with NetAnom::shards = n, shard i)",
        pattern=r"^[0-9]+/[1-9][0-9]*$",
        error="{value} is not i/n (e.g. 2/4: the third of four daemons)",
    )


def _zeek_shards() -> Any:
    return setting(None, "NetAnom::shards as redef'd in Zeek, for shard_of (default: n)", minimum=1)


def _from_start() -> Any:
    return setting(False, "read existing content first; otherwise start at the end")


@source("zeek_ws")
@dataclass(frozen=True)
class ZeekWsSourceConfig(SourceConfig):
    """Zeek over its Broker WebSocket API."""

    url: str = setting(
        "ws://127.0.0.1:27759",
        "WebSocket URL of Zeek's Broker WebSocket API (ws:// or wss://)",
        pattern=r"^wss?://[^\s/]+",
        error="{value} is not a valid WebSocket URL (ws:// or wss://)",
    )
    ca_file: str | None = setting(None, "CA certificate(s) to verify a wss:// Zeek with")
    insecure: bool = setting(False, "do not verify the wss:// server certificate")
    topics: tuple[str, ...] = _topics()
    shards: tuple[int, ...] = _shards()
    shard_of: str | None = _shard_of()
    zeek_shards: int | None = _zeek_shards()


@source(
    "zeek_broker",
    exactly_one_of=(
        ("connect", "listen"),
        "needs exactly one of 'connect' (host:port of Zeek's Broker listener) "
        "or 'listen' (host:port for Zeek to peer with)",
    ),
)
@dataclass(frozen=True)
class ZeekBrokerSourceConfig(SourceConfig):
    """Zeek over native Broker (needs the broker Python bindings)."""

    connect: str | None = setting(
        None,
        "peer with Zeek's Broker listener at host:port",
        pattern=HOSTPORT,
        error=HOSTPORT_ERR,
    )
    listen: str | None = setting(
        None, "listen at host:port for Zeek to peer with us", pattern=HOSTPORT, error=HOSTPORT_ERR
    )
    topics: tuple[str, ...] = _topics()
    shards: tuple[int, ...] = _shards()
    shard_of: str | None = _shard_of()
    zeek_shards: int | None = _zeek_shards()


@source("zeek_log", removed={"follow": FOLLOW_REMOVED})
@dataclass(frozen=True)
class ZeekLogSourceConfig(SourceConfig):
    """Zeek conn.log files."""

    path: str = required("conn.log (TSV or JSON) file or glob")
    from_start: bool = _from_start()


@source("suricata_eve", removed={"follow": FOLLOW_REMOVED})
@dataclass(frozen=True)
class SuricataEveSourceConfig(SourceConfig):
    """Suricata EVE JSON files (flow events; alert events are attached to their flows)."""

    path: str = setting("/var/log/suricata/eve.json", "EVE JSON file or glob")
    from_start: bool = _from_start()


@source("suricata_socket")
@dataclass(frozen=True)
class SuricataSocketSourceConfig(SourceConfig):
    """Suricata EVE over a Unix socket."""

    path: str = required("Unix socket Suricata's eve-log writes to")
    kind: Literal["dgram", "stream"] = setting(
        "dgram", "eve-log filetype unix_dgram or unix_stream"
    )


@source("redis")
@dataclass(frozen=True)
class RedisSourceConfig(SourceConfig):
    """Suricata EVE through Redis."""

    url: str = setting(
        "redis://127.0.0.1:6379/0",
        "Redis URL (redis://, rediss:// or unix://)",
        pattern=r"^(redis|rediss|unix)://",
        error="{value} is not a valid Redis URL (redis://...)",
    )
    key: str = setting("suricata", "list or channel name Suricata's eve-log redis output uses")
    mode: Literal["list", "pubsub"] = setting(
        "list",
        "list (moved into this daemon's processing list, removed once written: nothing lost; "
        "several daemons can share one list) or pubsub (channel)",
    )
    consumer: str | None = setting(
        None,
        "this daemon's name among those sharing the list (default: the host name); "
        "give each daemon on one host its own",
        pattern=r"^[A-Za-z0-9_.:@-]+$",
        error="{value} is not a valid consumer name (letters, digits, _ . : @ -)",
    )
    processing_list: str | None = setting(
        None, "where records wait until written (default: <key>:processing:<consumer>)"
    )
    heartbeat_seconds: float = setting(
        10.0,
        "a consumer whose heartbeat is older than this is dead (its records go back to the list)",
        exclusive_minimum=0,
    )
    recover_dead: bool = setting(
        True, "put the records of dead consumers of this list back into it for the living"
    )
    batch_lines: int = setting(1000, "records moved per Redis round trip", minimum=1)
