"""The sections of ``netanomd run``'s configuration and :class:`Config`, the whole of it.

Each key is declared once, here (and the sources in :mod:`netanomd.config.sources`): its type,
default, description and rules. The rest of the code reads these frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from netanomd.config.declare import plain, setting
from netanomd.config.sources import HOSTPORT, HOSTPORT_ERR, SourceConfig, ZeekWsSourceConfig

__all__ = [
    "ES_API_KEY_ENV",
    "ES_PASSWORD_ENV",
    "Config",
    "ElasticsearchSinkConfig",
    "MetricsSinkConfig",
    "ModelConfig",
    "PipelineConfig",
    "SinksConfig",
    "SqliteSinkConfig",
    "UiConfig",
    "ZeekNoticeSinkConfig",
]


@dataclass(frozen=True)
class ModelConfig:
    """The anomaly model."""

    path: str = setting(
        "/var/lib/netanomd/model.npz",
        "trained model file; <store>/current follows the versioned store's promotions",
    )
    store: str = setting(
        "/var/lib/netanomd",
        "versioned model store (models/<id>.npz, the current pointer, history.jsonl) that "
        "`netanomd model` and `netanomd retrain` manage",
    )
    reservoir_per_day: int = setting(
        200_000,
        "flows a day kept in <state_dir>/reservoir for `netanomd retrain` (a sample stratified "
        "by hour, without alerted flows or those of open incidents); 0: keep none",
        minimum=0,
        maximum=100_000_000,
    )
    reservoir_days: int = setting(30, "days the reservoir keeps", minimum=1, maximum=3660)
    reservoir_max_mb: int = setting(
        1024, "the reservoir's size cap in MiB (oldest days go first)", minimum=1
    )
    drift_check_seconds: float = setting(
        300.0,
        "how often the daemon measures drift against the model's training window (a warning "
        "in the log when it crosses the threshold; /metrics and /healthz show the last pass)",
        minimum=1,
    )
    threshold: float | None = setting(
        None, "score threshold; null uses the one stored in the model"
    )
    reload_check_seconds: float = setting(
        60.0,
        "how often to check the model file and reload it when it changed (0: never)",
        minimum=0,
    )


@dataclass(frozen=True)
class PipelineConfig:
    """Between sources and the model."""

    batch_size: int = setting(1024, "flows scored together", minimum=1, maximum=1_000_000)
    # The stream costs ~0.8 ms a batch whatever its size, and on flows in start order the
    # grouping does not depend on the batch size (tests/test_stream.py; out of order it can
    # still differ, the alerts not): a backlog is worked off in fewer, larger batches.
    backlog_batch_size: int = setting(
        8192,
        "flows scored together while a backlog waits (more than batch_size flows queued when "
        "a batch is taken; at least batch_size): fewer, larger batches cost less CPU a flow; "
        "without a backlog a batch holds batch_size flows",
        minimum=1,
        maximum=1_000_000,
    )
    # 20 ms: a flow waits at most this long for its batch, so an alert can be written within
    # 50 ms of the flow's arrival at 10k flows/s (issue 16); a batch then holds ~200 flows.
    batch_timeout_ms: int = setting(
        20,
        "score a partial batch after this long (bounds alert latency)",
        minimum=1,
        maximum=60_000,
    )
    queue_size: int = setting(
        65536,
        "bounded queue between sources and scoring, in flows",
        minimum=1,
        maximum=100_000_000,
    )
    on_full: Literal["block", "drop_oldest", "drop_newest"] = setting(
        "drop_oldest", "what to do when the queue is full"
    )
    dedup_community_id: bool = setting(
        True,
        "score a connection once when two sensors report it: drop a flow whose Community ID "
        "another source kind reported with a start within 2 s (the same sensor repeating an "
        "ID is a new connection)",
    )
    dedup_window_seconds: float = setting(
        120.0, "how long a Community ID is remembered", exclusive_minimum=0, maximum=86_400
    )


@dataclass(frozen=True)
class SqliteSinkConfig:
    """Local alert database (netanomd alerts)."""

    enabled: bool = setting(True, "store alerts in SQLite")
    path: str = setting("/var/lib/netanomd/alerts.db", "database file")


_ES_URL = r"^https?://[^\s/]+"
#: Where the Elasticsearch secrets may come from instead of the file (read by the client).
ES_API_KEY_ENV = "NETANOMD_ES_API_KEY"
ES_PASSWORD_ENV = "NETANOMD_ES_PASSWORD"


@dataclass(frozen=True)
class ElasticsearchSinkConfig:
    """Elasticsearch alert output.

    The same section serves ``netanomd es setup|check`` and ``netanomd score --es-url`` (their
    options are layered onto it), so the command line and the daemon apply the same rules.
    """

    enabled: bool = setting(
        False, "send alerts to Elasticsearch (data stream logs-netanomd.alert-*)"
    )
    hosts: tuple[str, ...] = setting(
        ("http://127.0.0.1:9200",),
        "Elasticsearch URL or list of URLs",
        pattern=_ES_URL,
        error="{value} is not a valid Elasticsearch URL (http:// or https://)",
        min_items=1,
        one_or_many=True,
    )
    api_key: str | None = setting(None, f"API key (or {ES_API_KEY_ENV}); secret", secret=True)
    username: str | None = setting(None, "user for basic authentication")
    password: str | None = setting(
        None, f"password for username (or {ES_PASSWORD_ENV}); secret", secret=True
    )
    ca_file: str | None = setting(None, "CA certificate(s) to verify https:// hosts with")
    verify_certs: bool = setting(True, "verify TLS certificates")
    # Elasticsearch's data stream naming: lowercase; none of - \ / * ? " < > | , # : or space.
    namespace: str = setting(
        "default",
        "data stream namespace (lowercase, no '-')",
        pattern=r"^[a-z0-9_.]*[a-z][a-z0-9_.]*$",
        error="{value} is not a valid namespace (lowercase, no '-')",
    )
    retention_mode: Literal["ilm", "dsl"] = setting(
        "ilm", "ilm (lifecycle policy) or dsl (data stream lifecycle)"
    )
    retention_days: int = setting(30, "delete alerts after this many days", minimum=1)
    rollover_max_age: str = setting(
        "1d",
        "ILM rollover max_age",
        pattern=r"^[0-9]+(d|h|m|s|ms|micros|nanos)$",
        error="{value} is not a valid time unit (e.g. 1d, 12h)",
    )
    rollover_max_primary_shard_size: str = setting(
        "50gb",
        "ILM rollover max_primary_shard_size",
        pattern=r"^[0-9]+(b|kb|mb|gb|tb|pb)$",
        error="{value} is not a valid byte size (e.g. 50gb)",
    )
    request_timeout: float = setting(10.0, "seconds per request", exclusive_minimum=0)


@dataclass(frozen=True)
class ZeekNoticeSinkConfig:
    """Verdicts to Zeek over the source connection."""

    enabled: bool = setting(True, "send verdicts back to Zeek (notice.log)")


@dataclass(frozen=True)
class MetricsSinkConfig:
    """HTTP endpoint: Prometheus metrics, health and the scoring API.

    Off loopback it needs ``token_file`` and ``tls_cert``/``tls_key``
    (:mod:`netanomd.config.validation` refuses it otherwise).
    """

    enabled: bool = setting(True, "serve /metrics, /healthz and POST /v1/score")
    listen: str = setting(
        "127.0.0.1:9750", "host:port of the HTTP endpoint", pattern=HOSTPORT, error=HOSTPORT_ERR
    )
    token_file: str | None = setting(
        None,
        "file holding the bearer token every request must carry (Authorization: Bearer); "
        "/healthz without it says only whether the daemon is ready",
    )
    tls_cert: str | None = setting(None, "PEM certificate (chain) to serve HTTPS with")
    tls_key: str | None = setting(None, "PEM private key of tls_cert")
    max_connections: int = setting(
        64, "connections open at once (none costs a thread)", minimum=1, maximum=4096
    )
    request_timeout: float = setting(
        5.0, "seconds a client has to send its whole request", exclusive_minimum=0, maximum=300
    )
    max_body_bytes: int = setting(
        1 << 20, "largest POST /v1/score body", minimum=1, maximum=64 << 20
    )
    max_rows: int = setting(
        10_000, "most flows in one POST /v1/score request", minimum=1, maximum=1_000_000
    )


@dataclass(frozen=True)
class SinksConfig:
    """Where alerts go."""

    sqlite: SqliteSinkConfig = field(default_factory=SqliteSinkConfig)
    elasticsearch: ElasticsearchSinkConfig = field(default_factory=ElasticsearchSinkConfig)
    zeek_notice: ZeekNoticeSinkConfig = field(default_factory=ZeekNoticeSinkConfig)
    metrics: MetricsSinkConfig = field(default_factory=MetricsSinkConfig)


@dataclass(frozen=True)
class UiConfig:
    """The analyst's page (netanomd.ui), served by the daemon on its own port."""

    enabled: bool = setting(False, "serve the analyst's page over sinks.sqlite's database")
    listen: str = setting(
        "127.0.0.1:8765", "host:port of the page", pattern=HOSTPORT, error=HOSTPORT_ERR
    )
    token_file: str | None = setting(None, "file holding the read-only token (off loopback)")
    analysts_file: str | None = setting(
        None, "file of 'name token' lines: who may mark benign, confirm and edit rules"
    )
    tls_cert: str | None = setting(None, "PEM certificate (chain) to serve HTTPS with")
    tls_key: str | None = setting(None, "PEM private key of tls_cert")
    rules_file: str | None = setting(None, "YAML allowlist rules, applied and shown on the page")
    kibana_url: str | None = setting(None, "Kibana base URL, for links to Discover")


@dataclass(frozen=True)
class Config:
    """The effective, validated configuration of ``netanomd run``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    sources: tuple[SourceConfig, ...] = setting(
        (ZeekWsSourceConfig("zeek_ws"),), "where flows come from", min_items=1
    )
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    sinks: SinksConfig = field(default_factory=SinksConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    state_dir: str = setting("/var/lib/netanomd", "directory for state (spool, dedup, cursors)")
    log_level: Literal["debug", "info", "warning", "error", "critical"] = setting(
        "info", "log level"
    )

    def to_dict(self, mask_secrets: bool = True) -> dict[str, Any]:
        """The effective configuration as plain data (what ``dump_yaml`` prints); secrets are
        replaced by ``"***"`` unless ``mask_secrets`` is false."""
        out = plain(self, mask_secrets)
        assert isinstance(out, dict)
        return out
