"""Configuration of the sensor daemon (``netanomd run``): schema, loading, precedence, validation.

Owns the JSON Schema of the configuration (:data:`SCHEMA`, draft 2020-12, closed objects,
defaults in the schema), reading the YAML file (``/etc/netanomd/netanomd.yaml`` by default,
:data:`DEFAULT_CONFIG_PATH`), and the layering ``defaults < file < environment < --set``:

* environment: ``NETANOMD_<SECTION>__<KEY>`` (double underscore nests, a number indexes a list,
  e.g. ``NETANOMD_SINKS__SQLITE__PATH=/x`` or ``NETANOMD_SOURCES__0__URL=wss://zeek:27759``);
  single-segment names count only when they name a top-level key (``NETANOMD_LOG_LEVEL``), so
  other variables such as ``NETANOMD_ES_PASSWORD`` are left to their owners;
* command line: ``--set key.path=value`` (``sources[1].path=...`` or ``sources.1.path=...``).

Environment and ``--set`` values are parsed as YAML scalars (``true`` and ``5`` get types,
``'5'`` stays a string; ``[a, b]`` gives a list). Validation runs the whole schema and reports
every problem at once in one :class:`ConfigValidationError` (a :class:`ConfigError`), one line
each: where the value came from (``file:line``, ``env NAME`` or ``--set key=value``), its dotted
key path, and what is wrong — unknown keys with the closest known key as a suggestion.

The result is a frozen, typed :class:`Config`; :meth:`Config.to_dict` and :func:`dump_yaml`
give the effective configuration with secrets (passwords, API keys, URL passwords) masked.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonschema import Draft202012Validator, ValidationError

from netanomd.errors import ConfigError
from netanomd.zeek.api import FLOWS_TOPIC

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_PREFIX",
    "SCHEMA",
    "SOURCE_TYPES",
    "Config",
    "ConfigValidationError",
    "ElasticsearchSinkConfig",
    "MetricsSinkConfig",
    "ModelConfig",
    "PipelineConfig",
    "RedisSourceConfig",
    "SinksConfig",
    "SourceConfig",
    "SqliteSinkConfig",
    "SuricataEveSourceConfig",
    "SuricataSocketSourceConfig",
    "ZeekBrokerSourceConfig",
    "ZeekLogSourceConfig",
    "ZeekNoticeSinkConfig",
    "ZeekWsSourceConfig",
    "dump_yaml",
    "format_path",
    "load_config",
]

DEFAULT_CONFIG_PATH = Path("/etc/netanomd/netanomd.yaml")
ENV_PREFIX = "NETANOMD_"
MASK = "***"

#: Keys whose values are secrets: masked in :meth:`Config.to_dict` and in error messages.
SECRET_KEYS = frozenset({"password", "api_key"})

SOURCE_TYPES = (
    "zeek_ws",
    "zeek_broker",
    "zeek_log",
    "suricata_eve",
    "suricata_socket",
    "redis",
)
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

PathKey = str | int
KeyPath = tuple[PathKey, ...]

# ---------------------------------------------------------------------------------------------
# The schema. ``x-error`` (an annotation, ignored by validators) holds friendlier messages per
# failing keyword; ``{value}`` is replaced by the offending value.

_HOSTPORT = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$"
_HOSTPORT_ERR = "{value} is not a valid host:port (e.g. 127.0.0.1:9999)"


def _obj(
    properties: dict[str, Any],
    description: str,
    required: Sequence[str] = (),
    error: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A closed object; ``error`` holds friendlier messages per failing keyword."""
    schema: dict[str, Any] = {
        "type": "object",
        "description": description,
        "additionalProperties": False,
        "properties": properties,
    }
    if required:
        schema["required"] = list(required)
    if error:
        schema["x-error"] = error
    schema.update(extra)
    return schema


def _str(
    default: str | None, description: str, pattern: str | None = None, error: str | None = None
) -> dict[str, Any]:
    """A string (nullable when the default is None); ``error`` explains a pattern mismatch."""
    schema: dict[str, Any] = {
        "type": "string" if default is not None else ["string", "null"],
        "minLength": 1,
        "default": default,
        "description": description,
    }
    if pattern:
        schema["pattern"] = pattern
    if error:
        schema["x-error"] = {"pattern": error}
    return schema


def _req_str(description: str) -> dict[str, Any]:
    """A required string (no default)."""
    return {"type": "string", "minLength": 1, "description": description}


def _bool(default: bool, description: str) -> dict[str, Any]:
    return {"type": "boolean", "default": default, "description": description}


def _source_type(name: str) -> dict[str, Any]:
    return {"const": name, "description": "source type"}


_TOPICS = {
    "type": "array",
    "items": {"type": "string", "minLength": 1},
    "minItems": 1,
    "default": [FLOWS_TOPIC],
    "description": "topic prefixes to subscribe to (NetAnom::flows_topic in config.zeek)",
}
_FOLLOW = _bool(True, "keep reading as the file grows and follow rotation (like tail -F)")
_FROM_START = _bool(False, "read existing content first; otherwise start at the end")

_SOURCE_DEFS: dict[str, dict[str, Any]] = {
    "zeek_ws": _obj(
        {
            "type": _source_type("zeek_ws"),
            "url": _str(
                "ws://127.0.0.1:27759",
                "WebSocket URL of Zeek's Broker WebSocket API (ws:// or wss://)",
                pattern=r"^wss?://[^\s/]+",
                error="{value} is not a valid WebSocket URL (ws:// or wss://)",
            ),
            "ca_file": _str(None, "CA certificate(s) to verify a wss:// Zeek with"),
            "insecure": _bool(False, "do not verify the wss:// server certificate"),
            "topics": _TOPICS,
        },
        "Zeek over its Broker WebSocket API",
        required=["type"],
    ),
    "zeek_broker": _obj(
        {
            "type": _source_type("zeek_broker"),
            "connect": _str(
                None,
                "peer with Zeek's Broker listener at host:port",
                pattern=_HOSTPORT,
                error=_HOSTPORT_ERR,
            ),
            "listen": _str(
                None,
                "listen at host:port for Zeek to peer with us",
                pattern=_HOSTPORT,
                error=_HOSTPORT_ERR,
            ),
            "topics": _TOPICS,
        },
        "Zeek over native Broker (needs the broker Python bindings)",
        required=["type"],
        oneOf=[
            {"properties": {"connect": {"type": "string"}}, "required": ["connect"]},
            {"properties": {"listen": {"type": "string"}}, "required": ["listen"]},
        ],
        error={
            "oneOf": "needs exactly one of 'connect' (host:port of Zeek's Broker listener) "
            "or 'listen' (host:port for Zeek to peer with)"
        },
    ),
    "zeek_log": _obj(
        {
            "type": _source_type("zeek_log"),
            "path": _req_str("conn.log (TSV or JSON) file or glob"),
            "follow": _FOLLOW,
            "from_start": _FROM_START,
        },
        "Zeek conn.log files",
        required=["type", "path"],
    ),
    "suricata_eve": _obj(
        {
            "type": _source_type("suricata_eve"),
            "path": _str("/var/log/suricata/eve.json", "EVE JSON file or glob"),
            "follow": _FOLLOW,
            "from_start": _FROM_START,
        },
        "Suricata EVE JSON files (flow events)",
        required=["type"],
    ),
    "suricata_socket": _obj(
        {
            "type": _source_type("suricata_socket"),
            "path": _req_str("Unix socket Suricata's eve-log writes to"),
            "kind": {
                "enum": ["dgram", "stream"],
                "default": "dgram",
                "description": "eve-log filetype unix_dgram or unix_stream",
            },
        },
        "Suricata EVE over a Unix socket",
        required=["type", "path"],
    ),
    "redis": _obj(
        {
            "type": _source_type("redis"),
            "url": _str(
                "redis://127.0.0.1:6379/0",
                "Redis URL (redis://, rediss:// or unix://)",
                pattern=r"^(redis|rediss|unix)://",
                error="{value} is not a valid Redis URL (redis://...)",
            ),
            "key": _str("suricata", "list or channel name Suricata's eve-log redis output uses"),
            "mode": {
                "enum": ["list", "pubsub"],
                "default": "list",
                "description": "list (BLPOP, nothing lost) or pubsub (channel)",
            },
        },
        "Suricata EVE through Redis",
        required=["type"],
    ),
}

_SOURCE = {
    "type": "object",
    "description": "one flow source; 'type' selects which keys apply",
    "required": ["type"],
    "properties": {"type": {"enum": list(SOURCE_TYPES), "description": "source type"}},
    # The type-specific definitions are closed (additionalProperties: false).
    "allOf": [
        {
            "if": {"type": "object", "properties": {"type": {"const": t}}, "required": ["type"]},
            "then": {"$ref": f"#/$defs/{t}"},
        }
        for t in SOURCE_TYPES
    ],
}

_ES_URL_ERR = "{value} is not a valid Elasticsearch URL (http:// or https://)"
_ES = _obj(
    {
        "enabled": _bool(False, "send alerts to Elasticsearch (data stream logs-netanomd.alert-*)"),
        "hosts": {
            "type": ["string", "array"],
            "items": {
                "type": "string",
                "pattern": r"^https?://[^\s/]+",
                "x-error": {"pattern": _ES_URL_ERR},
            },
            "pattern": r"^https?://[^\s/]+",
            "minItems": 1,
            "default": ["http://127.0.0.1:9200"],
            "description": "Elasticsearch URL or list of URLs",
            "x-error": {"pattern": _ES_URL_ERR},
        },
        "api_key": _str(None, "API key (or NETANOMD_ES_API_KEY); secret"),
        "username": _str(None, "user for basic authentication"),
        "password": _str(None, "password for username (or NETANOMD_ES_PASSWORD); secret"),
        "ca_file": _str(None, "CA certificate(s) to verify https:// hosts with"),
        "verify_certs": _bool(True, "verify TLS certificates"),
        "namespace": _str(
            "default",
            "data stream namespace (lowercase, no '-')",
            pattern=r"^[a-z0-9_.]*[a-z][a-z0-9_.]*$",
            error="{value} is not a valid namespace (lowercase, no '-')",
        ),
        "retention_mode": {
            "enum": ["ilm", "dsl"],
            "default": "ilm",
            "description": "ilm (lifecycle policy) or dsl (data stream lifecycle)",
        },
        "retention_days": {
            "type": "integer",
            "minimum": 1,
            "default": 30,
            "description": "delete alerts after this many days",
        },
        "rollover_max_age": _str(
            "1d",
            "ILM rollover max_age",
            pattern=r"^[0-9]+(d|h|m|s|ms|micros|nanos)$",
            error="{value} is not a valid time unit (e.g. 1d, 12h)",
        ),
        "rollover_max_primary_shard_size": _str(
            "50gb",
            "ILM rollover max_primary_shard_size",
            pattern=r"^[0-9]+(b|kb|mb|gb|tb|pb)$",
            error="{value} is not a valid byte size (e.g. 50gb)",
        ),
        "request_timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 10.0,
            "description": "seconds per request",
        },
    },
    "Elasticsearch alert output (keys of netanomd.es_setup.ElasticsearchConfig)",
    default={},
)

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://netanomd.invalid/schema/netanomd.yaml.json",
    "title": "netanomd run configuration",
    "type": "object",
    "additionalProperties": False,
    "$defs": {**_SOURCE_DEFS, "source": _SOURCE},
    "properties": {
        "model": _obj(
            {
                "path": _str("/var/lib/netanomd/model.npz", "trained model file"),
                "threshold": {
                    "type": ["number", "null"],
                    "default": None,
                    "description": "score threshold; null uses the one stored in the model",
                },
                "reload_check_seconds": {
                    "type": "number",
                    "minimum": 0,
                    "default": 60,
                    "description": "how often to check the model file and reload it when it "
                    "changed (0: never)",
                },
            },
            "the anomaly model",
            default={},
        ),
        "sources": {
            "type": "array",
            "items": {"$ref": "#/$defs/source"},
            "minItems": 1,
            "default": [{"type": "zeek_ws"}],
            "description": "where flows come from",
        },
        "pipeline": _obj(
            {
                "batch_size": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 1_000_000,
                    "default": 1024,
                    "description": "flows scored together",
                },
                "batch_timeout_ms": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 60_000,
                    "default": 200,
                    "description": "score a partial batch after this long",
                },
                "queue_size": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 100_000_000,
                    "default": 65536,
                    "description": "bounded queue between sources and scoring, in flows",
                },
                "on_full": {
                    "enum": ["block", "drop_oldest", "drop_newest"],
                    "default": "drop_oldest",
                    "description": "what to do when the queue is full",
                },
                "dedup_community_id": _bool(
                    True, "drop a flow whose Community ID was seen within the window"
                ),
                "dedup_window_seconds": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 86_400,
                    "default": 120,
                    "description": "how long a Community ID is remembered",
                },
            },
            "between sources and the model",
            default={},
        ),
        "sinks": _obj(
            {
                "sqlite": _obj(
                    {
                        "enabled": _bool(True, "store alerts in SQLite"),
                        "path": _str("/var/lib/netanomd/alerts.db", "database file"),
                    },
                    "local alert database (netanomd alerts)",
                    default={},
                ),
                "elasticsearch": _ES,
                "zeek_notice": _obj(
                    {"enabled": _bool(True, "send verdicts back to Zeek (notice.log)")},
                    "verdicts to Zeek over the source connection",
                    default={},
                ),
                "metrics": _obj(
                    {
                        "enabled": _bool(True, "serve Prometheus metrics"),
                        "listen": _str(
                            "127.0.0.1:9750",
                            "host:port of the /metrics endpoint",
                            pattern=_HOSTPORT,
                            error=_HOSTPORT_ERR,
                        ),
                    },
                    "Prometheus metrics endpoint",
                    default={},
                ),
            },
            "where alerts go",
            default={},
        ),
        "state_dir": _str("/var/lib/netanomd", "directory for state (spool, dedup, cursors)"),
        "log_level": {"enum": list(LOG_LEVELS), "default": "info", "description": "log level"},
    },
}

_VALIDATOR = Draft202012Validator(SCHEMA)

# ---------------------------------------------------------------------------------------------
# The typed result.


@dataclass(frozen=True)
class ModelConfig:
    path: str
    threshold: float | None
    reload_check_seconds: float


@dataclass(frozen=True)
class ZeekWsSourceConfig:
    type: Literal["zeek_ws"]
    url: str
    ca_file: str | None
    insecure: bool
    topics: tuple[str, ...]


@dataclass(frozen=True)
class ZeekBrokerSourceConfig:
    type: Literal["zeek_broker"]
    connect: str | None
    listen: str | None
    topics: tuple[str, ...]


@dataclass(frozen=True)
class ZeekLogSourceConfig:
    type: Literal["zeek_log"]
    path: str
    follow: bool
    from_start: bool


@dataclass(frozen=True)
class SuricataEveSourceConfig:
    type: Literal["suricata_eve"]
    path: str
    follow: bool
    from_start: bool


@dataclass(frozen=True)
class SuricataSocketSourceConfig:
    type: Literal["suricata_socket"]
    path: str
    kind: Literal["dgram", "stream"]


@dataclass(frozen=True)
class RedisSourceConfig:
    type: Literal["redis"]
    url: str
    key: str
    mode: Literal["list", "pubsub"]


SourceConfig = (
    ZeekWsSourceConfig
    | ZeekBrokerSourceConfig
    | ZeekLogSourceConfig
    | SuricataEveSourceConfig
    | SuricataSocketSourceConfig
    | RedisSourceConfig
)

_SOURCE_CLASSES: dict[str, type[SourceConfig]] = {
    "zeek_ws": ZeekWsSourceConfig,
    "zeek_broker": ZeekBrokerSourceConfig,
    "zeek_log": ZeekLogSourceConfig,
    "suricata_eve": SuricataEveSourceConfig,
    "suricata_socket": SuricataSocketSourceConfig,
    "redis": RedisSourceConfig,
}


@dataclass(frozen=True)
class PipelineConfig:
    batch_size: int
    batch_timeout_ms: int
    queue_size: int
    on_full: Literal["block", "drop_oldest", "drop_newest"]
    dedup_community_id: bool
    dedup_window_seconds: float


@dataclass(frozen=True)
class SqliteSinkConfig:
    enabled: bool
    path: str


@dataclass(frozen=True)
class ElasticsearchSinkConfig:
    enabled: bool
    hosts: tuple[str, ...]
    api_key: str | None = field(repr=False)
    username: str | None
    password: str | None = field(repr=False)
    ca_file: str | None
    verify_certs: bool
    namespace: str
    retention_mode: Literal["ilm", "dsl"]
    retention_days: int
    rollover_max_age: str
    rollover_max_primary_shard_size: str
    request_timeout: float

    def es_mapping(self) -> dict[str, Any]:
        """The keys for :meth:`netanomd.es_setup.ElasticsearchConfig.from_mapping`."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "enabled"}
        out["hosts"] = list(self.hosts)
        return out


@dataclass(frozen=True)
class ZeekNoticeSinkConfig:
    enabled: bool


@dataclass(frozen=True)
class MetricsSinkConfig:
    enabled: bool
    listen: str


@dataclass(frozen=True)
class SinksConfig:
    sqlite: SqliteSinkConfig
    elasticsearch: ElasticsearchSinkConfig
    zeek_notice: ZeekNoticeSinkConfig
    metrics: MetricsSinkConfig


@dataclass(frozen=True)
class Config:
    """The effective, validated configuration of ``netanomd run``."""

    model: ModelConfig
    sources: tuple[SourceConfig, ...]
    pipeline: PipelineConfig
    sinks: SinksConfig
    state_dir: str
    log_level: Literal["debug", "info", "warning", "error", "critical"]

    def to_dict(self, mask_secrets: bool = True) -> dict[str, Any]:
        """The effective configuration as plain data (what :func:`dump_yaml` prints);
        secrets are replaced by ``"***"`` unless ``mask_secrets`` is false."""
        out = _plain(self)
        assert isinstance(out, dict)
        return _mask(out) if mask_secrets else out


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


_URL_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*):([^/@\s]*)@")


def _mask_str(text: str) -> str:
    return _URL_PASSWORD.sub(rf"\1:{MASK}@", text)


def _mask(value: Any, key: PathKey | None = None) -> Any:
    if key in SECRET_KEYS and value is not None:
        return MASK
    if isinstance(value, dict):
        return {k: _mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, str):
        return _mask_str(value)
    return value


def dump_yaml(config: Config) -> str:
    """The effective configuration as YAML (secrets masked), loadable by :func:`load_config`."""
    text: str = yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=False)
    return text


# ---------------------------------------------------------------------------------------------
# Errors with their origin.


class ConfigValidationError(ConfigError):
    """Invalid configuration; :attr:`problems` holds one line per problem (also the message)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        n = len(self.problems)
        head = f"invalid configuration ({n} problem{'s' if n != 1 else ''}):"
        super().__init__("\n".join([head, *self.problems]))


@dataclass(frozen=True)
class _Origin:
    kind: Literal["file", "env", "set"]
    where: str
    line: int | None = None
    order: int = 0  # of env variables and --set items, for sorting

    def describe(self) -> str:
        if self.kind == "file":
            return f"{self.where}:{self.line}" if self.line else self.where
        if self.kind == "env":
            return f"env {self.where}"
        return f"--set {self.where}"


@dataclass(frozen=True)
class _Problem:
    origin: _Origin | None
    path: KeyPath
    message: str

    def sort_key(self) -> tuple[int, int, str]:
        rank = {"file": 0, "env": 1, "set": 2}[self.origin.kind] if self.origin else 3
        if self.origin is None:
            return rank, 0, format_path(self.path)
        return rank, self.origin.line or self.origin.order, format_path(self.path)

    def render(self) -> str:
        where = self.origin.describe() if self.origin else "defaults"
        if not self.path:
            return f"{where}: {self.message}"
        return f"{where}: {format_path(self.path)}: {self.message}"


def format_path(path: KeyPath) -> str:
    """``("sources", 1, "path")`` -> ``sources[1].path``."""
    out = ""
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out += f".{key}" if out else str(key)
    return out or "(top level)"


class _Origins:
    """Which layer set each key path."""

    def __init__(self) -> None:
        self._by_path: dict[KeyPath, _Origin] = {}

    def set(self, path: KeyPath, origin: _Origin) -> None:
        n = len(path)
        for p in [p for p in self._by_path if len(p) > n and p[:n] == path]:
            del self._by_path[p]
        self._by_path[path] = origin

    def find(self, path: KeyPath) -> _Origin | None:
        """The origin of ``path``; else of its closest descendant (an override of ``a.b.c``
        creates ``a.b`` when it did not exist); else of its closest ancestor."""
        if path in self._by_path:
            return self._by_path[path]
        n = len(path)
        below = sorted((p for p in self._by_path if len(p) > n and p[:n] == path), key=len)
        if below:
            return self._by_path[below[0]]
        for m in range(n - 1, -1, -1):
            origin = self._by_path.get(path[:m])
            if origin is not None:
                return origin
        return None


# ---------------------------------------------------------------------------------------------
# YAML with line numbers.


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that records the line of every mapping key and sequence item by key path,
    and the keys given twice in one mapping."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.lines: dict[KeyPath, int] = {}
        self.duplicates: list[tuple[KeyPath, int, int]] = []  # path, line, first line

    def construct_document(self, node: yaml.Node) -> Any:
        self._record(node, (), set())
        return super().construct_document(node)

    def _record(self, node: yaml.Node, path: KeyPath, active: set[int]) -> None:
        if id(node) in active:  # a recursive alias
            return
        active.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen:
                    self.duplicates.append(((*path, key), line, seen[key]))
                seen[key] = line
                self.lines[(*path, key)] = line
                self._record(value_node, (*path, key), active)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.lines[(*path, i)] = item.start_mark.line + 1
                self._record(item, (*path, i), active)
        active.discard(id(node))


def _read_file(path: Path, origins: _Origins, problems: list[_Problem]) -> dict[str, Any]:
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ConfigError(f"{name}: cannot read the configuration: {why}") from e
    loader = _LineLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise ConfigError(f"{at}: not valid YAML: {e.problem or e.context}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{name}: not valid YAML: {e}") from e
    finally:
        loader.dispose()
    for key_path, line in loader.lines.items():
        origins.set(key_path, _Origin("file", name, line))
    for key_path, line, first in loader.duplicates:
        problems.append(
            _Problem(_Origin("file", name, line), key_path, f"duplicate key, first on line {first}")
        )
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{name}:1: the top level must be a mapping of sections, not {type(data).__name__}"
        )
    return data


# ---------------------------------------------------------------------------------------------
# Layers: defaults, merge, overrides.


def _resolve(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: Mapping[str, Any] = SCHEMA["$defs"][ref.removeprefix("#/$defs/")]
        return resolved
    return schema


def _fill_defaults(schema: Mapping[str, Any], value: Any) -> None:
    """Add the schema's defaults for missing keys, in place (source items by their type)."""
    schema = _resolve(schema)
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                _fill_defaults(sub, value[key])
        for branch in schema.get("allOf", ()):
            const = branch.get("if", {}).get("properties", {}).get("type", {}).get("const")
            if const is not None and value.get("type") == const:
                _fill_defaults(branch["then"], value)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            _fill_defaults(schema["items"], item)


def _defaults() -> dict[str, Any]:
    """The defaults, except that source items stay bare (``{"type": "zeek_ws"}``): their
    defaults depend on a type that later layers may change, so they are filled last."""
    data: dict[str, Any] = {}
    _fill_defaults(SCHEMA, data)
    data["sources"] = copy.deepcopy(SCHEMA["properties"]["sources"]["default"])
    return data


def _merge(base: dict[str, Any], over: Mapping[Any, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: mappings merge key by key, anything else replaces."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _parse_value(text: str) -> Any:
    """A YAML scalar (``true``, ``5``, ``1.5``, ``null``, ``'quoted'``) or flow collection
    (``[a, b]``); anything else stays the literal text."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, list | dict):
        return value if text.lstrip().startswith(("[", "{")) else text
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return text  # dates, binary, sets: keep what was typed


_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[[0-9]+\])*)")


def _parse_set_path(text: str) -> KeyPath | None:
    path: list[PathKey] = []
    for part in text.split("."):
        m = _SEGMENT.fullmatch(part)
        if m is None:
            return None
        name = m.group(1)
        path.append(int(name) if name.isdigit() else name)
        path.extend(int(i) for i in re.findall(r"\[([0-9]+)\]", m.group(2)))
    return tuple(path)


def _set_path(data: dict[str, Any], path: KeyPath, value: Any) -> str | None:
    """Set ``path`` in ``data``, creating mappings on the way (a list index equal to the
    length appends). Returns why it cannot, or None."""
    node: Any = data
    for i, key in enumerate(path):
        last = i == len(path) - 1
        here = format_path(path[:i])
        if isinstance(key, int):
            if not isinstance(node, list):
                return f"{here} is not a list, cannot index it with [{key}]"
            if key > len(node):
                return (
                    f"{here} has {len(node)} item(s); [{key}] is out of range "
                    f"(use [{len(node)}] to add one)"
                )
            if key == len(node):
                node.append(None)
        elif not isinstance(node, dict):
            return f"{here} is not a mapping, cannot set {key!r} in it"
        if last:
            node[key] = value
        else:
            child = node[key] if isinstance(key, int) or key in node else None
            if child is None:
                child = [] if isinstance(path[i + 1], int) else {}
                node[key] = child
            node = child
    return None


def _env_overrides(env: Mapping[str, str]) -> Iterator[tuple[str, KeyPath | None, str]]:
    """(variable, key path or None if malformed, raw value) for the config variables."""
    top = set(SCHEMA["properties"])
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name.removeprefix(ENV_PREFIX).lower()
        if "__" not in rest and rest not in top:
            continue  # another NETANOMD_ variable (NETANOMD_ES_PASSWORD, ...)
        parts = rest.split("__")
        if not all(parts):
            yield name, None, env[name]
            continue
        yield name, tuple(int(p) if p.isdigit() else p for p in parts), env[name]


# ---------------------------------------------------------------------------------------------
# Validation.


def _suggest(word: str, choices: Sequence[Any]) -> str | None:
    by_lower = {str(c).lower(): str(c) for c in choices}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None


def _show(path: KeyPath, value: Any) -> str:
    """A value for a message: YAML spelling of null/true/false, secrets masked."""
    if path and path[-1] in SECRET_KEYS and value is not None:
        return repr(MASK)
    if isinstance(value, str):
        return repr(_mask_str(value))
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value)


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _messages(err: ValidationError) -> Iterator[tuple[KeyPath, str]]:
    path: KeyPath = tuple(err.absolute_path)
    kind = str(err.validator)
    schema = err.schema if isinstance(err.schema, dict) else {}
    instance = err.instance
    shown = _show(path, instance)
    custom = schema.get("x-error", {}).get(kind)
    if kind == "additionalProperties" and isinstance(instance, dict):
        known = list(schema.get("properties", {}))
        for key in instance:
            if key in known:
                continue
            hint = _suggest(str(key), known)
            more = f"; did you mean {hint!r}?" if hint else f" (known keys: {', '.join(known)})"
            yield (*path, key), f"unknown key {key!r}{more}"
    elif kind == "required" and isinstance(instance, dict):
        for key in _listed(err.validator_value):
            if key not in instance:
                enum = schema.get("properties", {}).get(key, {}).get("enum")
                choices = f" (one of: {', '.join(map(str, enum))})" if enum else ""
                yield (*path, key), f"missing required key{choices}"
    elif custom:
        yield path, str(custom).replace("{value}", shown)
    elif kind == "enum":
        allowed = _listed(err.validator_value)
        choices = ", ".join(repr(c) for c in allowed)
        hint = _suggest(instance, allowed) if isinstance(instance, str) else None
        more = f"; did you mean {hint!r}?" if hint else ""
        yield path, f"{shown} is not one of {choices}{more}"
    elif kind == "type":
        want = err.validator_value
        want_text = " or ".join(want) if isinstance(want, list) else str(want)
        yield path, f"{shown} is not of type {want_text}"
    else:
        message = err.message
        if shown != repr(instance):
            message = message.replace(repr(instance), shown)
        yield path, message


def _walk(value: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _walk(sub, (*path, key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _walk(sub, (*path, i))


def _semantic_checks(data: dict[str, Any], env: Mapping[str, str]) -> Iterator[tuple[KeyPath, str]]:
    """What the schema cannot say."""
    for path, value in _walk(data):
        if isinstance(value, float) and not math.isfinite(value):
            yield path, f"{value!r} is not a finite number"
    es = data.get("sinks", {}).get("elasticsearch") if isinstance(data.get("sinks"), dict) else None
    if isinstance(es, dict):
        where: KeyPath = ("sinks", "elasticsearch")
        username, password = es.get("username"), es.get("password")
        has_password = isinstance(password, str) or bool(env.get("NETANOMD_ES_PASSWORD"))
        if isinstance(username, str) and not has_password:
            yield (
                (*where, "username"),
                "given without a password (set sinks.elasticsearch.password or the "
                "NETANOMD_ES_PASSWORD environment variable)",
            )
        if isinstance(password, str) and username is None:
            yield (*where, "password"), "given without a username"


def _validate(data: dict[str, Any], env: Mapping[str, str], origins: _Origins) -> list[_Problem]:
    problems: list[_Problem] = []
    seen: set[tuple[KeyPath, str]] = set()
    for err in _VALIDATOR.iter_errors(data):
        for path, message in _messages(err):
            if (path, message) not in seen:
                seen.add((path, message))
                problems.append(_Problem(origins.find(path), path, message))
    bad_paths = {p for p, _ in seen}
    for path, message in _semantic_checks(data, env):
        if path not in bad_paths:
            problems.append(_Problem(origins.find(path), path, message))
    return problems


# ---------------------------------------------------------------------------------------------
# Building the typed config.


def _normalize(schema: Mapping[str, Any], value: Any) -> Any:
    """Validated data to the dataclasses' types: lists to tuples, whole floats of integer
    fields to int, a single Elasticsearch host to a tuple."""
    schema = _resolve(schema)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for branch in schema.get("allOf", ()):
            if branch["if"]["properties"]["type"]["const"] == value.get("type"):
                props = _resolve(branch["then"]).get("properties", {})
        return {k: _normalize(props.get(k, {}), v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_normalize(schema.get("items", {}), v) for v in value)
    kind = schema.get("type")
    if kind == "integer" and isinstance(value, float):
        return int(value)
    if kind == "number" or (isinstance(kind, list) and "number" in kind):
        return float(value) if isinstance(value, int) else value
    if kind == ["string", "array"] and isinstance(value, str):
        return (value,)
    return value


def _build(data: dict[str, Any]) -> Config:
    d = _normalize(SCHEMA, data)
    sinks = d["sinks"]
    return Config(
        model=ModelConfig(**d["model"]),
        sources=tuple(_SOURCE_CLASSES[s["type"]](**s) for s in d["sources"]),
        pipeline=PipelineConfig(**d["pipeline"]),
        sinks=SinksConfig(
            sqlite=SqliteSinkConfig(**sinks["sqlite"]),
            elasticsearch=ElasticsearchSinkConfig(**sinks["elasticsearch"]),
            zeek_notice=ZeekNoticeSinkConfig(**sinks["zeek_notice"]),
            metrics=MetricsSinkConfig(**sinks["metrics"]),
        ),
        state_dir=d["state_dir"],
        log_level=d["log_level"],
    )


def load_config(
    path: str | Path | None,
    env: Mapping[str, str] | None = None,
    overrides: Sequence[str] = (),
) -> Config:
    """Load, layer and validate the configuration.

    ``path``: the YAML file (None: defaults only; the CLI passes :data:`DEFAULT_CONFIG_PATH`).
    ``env``: the environment to take ``NETANOMD_*`` overrides from (default ``os.environ``).
    ``overrides``: ``key.path=value`` strings from ``--set``, applied last, in order.

    Raises :class:`ConfigError` (a :class:`ConfigValidationError` listing every problem when
    the content is invalid; a plain one when the file cannot be read or parsed).
    """
    env = os.environ if env is None else env
    origins = _Origins()
    problems: list[_Problem] = []
    data = _defaults()
    if path is not None:
        _merge(data, _read_file(Path(path), origins, problems))

    layered: list[tuple[_Origin, KeyPath | None, str, str]] = []
    for i, (name, key_path, raw) in enumerate(_env_overrides(env), 1):
        bad = "empty key segment in the variable name"
        layered.append((_Origin("env", name, order=i), key_path, raw, bad))
    for i, item in enumerate(overrides, 1):
        key, sep, raw = item.partition("=")
        key_path = _parse_set_path(key.strip()) if sep else None
        if key_path and key_path[-1] in SECRET_KEYS:
            item = f"{key}={MASK}"
        elif sep:
            item = f"{key}={_mask_str(raw)}"
        bad = "expected key.path=value (e.g. log_level=debug)"
        layered.append((_Origin("set", item, order=i), key_path, raw, bad))
    for origin, key_path, raw, malformed in layered:
        if key_path is None:
            problems.append(_Problem(origin, (), malformed))
            continue
        cannot = _set_path(data, key_path, _parse_value(raw))
        if cannot:
            problems.append(_Problem(origin, key_path, cannot))
        else:
            origins.set(key_path, origin)

    _fill_defaults(SCHEMA, data)
    problems.extend(_validate(data, env, origins))
    if problems:
        problems.sort(key=_Problem.sort_key)
        raise ConfigValidationError([p.render() for p in problems])
    return _build(data)
