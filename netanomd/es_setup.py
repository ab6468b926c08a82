"""Elasticsearch connection settings and the one-time set-up of the alert data stream.

Owns :class:`ElasticsearchConfig` (hosts, API key or user/password, TLS CA file — secrets also
from ``NETANOMD_ES_API_KEY`` / ``NETANOMD_ES_PASSWORD``, and never shown by ``repr`` or logs),
the client factory, and :func:`setup`, which idempotently PUTs the index template for
``logs-netanomd.alert-*`` and ``logs-netanomd.flow-*`` (ECS mappings of the emitted fields,
``data_stream: {}``, priority 501: above the built-in ``logs-*-*`` template's 100 and, as
Elastic's docs ask for overlapping patterns, above 500) and the retention: an ILM policy, or
data-stream lifecycle (``lifecycle.data_retention``) with ``retention_mode="dsl"``.

Formats target Elasticsearch 8.x and 9.x (data streams, composable templates, ILM and DSL all
exist from 8.11); the client is the official ``elasticsearch`` package.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from elasticsearch import Elasticsearch

from netanomd.ecs import DATASET, FLOW_DATASET, template_mappings
from netanomd.errors import ConfigError

TEMPLATE_NAME = "netanomd-alerts"
POLICY_NAME = "netanomd-alerts"
TEMPLATE_PRIORITY = 501


@dataclass
class ElasticsearchConfig:
    hosts: list[str] = field(default_factory=lambda: ["http://127.0.0.1:9200"])
    api_key: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    verify_certs: bool = True
    namespace: str = "default"
    retention_mode: str = "ilm"  # ilm | dsl
    retention_days: int = 30
    rollover_max_age: str = "1d"
    rollover_max_primary_shard_size: str = "50gb"
    request_timeout: float = 10.0

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], where: str = "elasticsearch"
    ) -> ElasticsearchConfig:
        """Build from a config section; every problem is reported with its key path."""
        known = {f.name for f in fields(cls)}
        errors = [f"{where}.{k}: unknown key" for k in data if k not in known]
        cfg = cls(**{k: v for k, v in data.items() if k in known})
        if isinstance(cfg.hosts, str):
            cfg.hosts = [cfg.hosts]
        if not cfg.hosts or not all(isinstance(h, str) and "://" in h for h in cfg.hosts):
            errors.append(f"{where}.hosts: expected URLs like https://es.example:9200")
        if cfg.retention_mode not in ("ilm", "dsl"):
            errors.append(
                f"{where}.retention_mode: must be 'ilm' or 'dsl', not {cfg.retention_mode!r}"
            )
        if not isinstance(cfg.retention_days, int) or cfg.retention_days < 1:
            errors.append(f"{where}.retention_days: must be a whole number of days >= 1")
        if not cfg.namespace or not cfg.namespace.islower() or "-" in cfg.namespace:
            errors.append(f"{where}.namespace: lowercase, no '-' (data stream naming rules)")
        has_password = cfg.password is not None or bool(os.environ.get("NETANOMD_ES_PASSWORD"))
        if cfg.username is not None and not has_password:
            errors.append(f"{where}.password: username given without a password")
        if cfg.password is not None and cfg.username is None:
            errors.append(f"{where}.username: password given without a username")
        if errors:
            raise ConfigError("; ".join(errors))
        return cfg

    def client(self) -> Elasticsearch:
        """An official client for these settings (secrets from config or environment)."""
        api_key = self.api_key or os.environ.get("NETANOMD_ES_API_KEY")
        password = self.password or os.environ.get("NETANOMD_ES_PASSWORD")
        kwargs: dict[str, Any] = {"request_timeout": self.request_timeout, "max_retries": 0}
        if api_key:
            kwargs["api_key"] = api_key
        elif self.username:
            kwargs["basic_auth"] = (self.username, password or "")
        if self.ca_file:
            kwargs["ca_certs"] = self.ca_file
        if not self.verify_certs:
            kwargs["verify_certs"] = False
        return Elasticsearch(self.hosts, **kwargs)


def index_template(cfg: ElasticsearchConfig) -> dict[str, Any]:
    template: dict[str, Any] = {"mappings": template_mappings()}
    if cfg.retention_mode == "ilm":
        template["settings"] = {"index.lifecycle.name": POLICY_NAME}
    else:
        template["lifecycle"] = {"data_retention": f"{cfg.retention_days}d"}
    return {
        "index_patterns": [f"logs-{DATASET}-*", f"logs-{FLOW_DATASET}-*"],
        "data_stream": {},
        "priority": TEMPLATE_PRIORITY,
        "template": template,
        "_meta": {"managed_by": "netanomd", "description": "netanomd anomaly alerts (ECS)"},
    }


def ilm_policy(cfg: ElasticsearchConfig) -> dict[str, Any]:
    return {
        "phases": {
            "hot": {
                "actions": {
                    "rollover": {
                        "max_age": cfg.rollover_max_age,
                        "max_primary_shard_size": cfg.rollover_max_primary_shard_size,
                    }
                }
            },
            "delete": {"min_age": f"{cfg.retention_days}d", "actions": {"delete": {}}},
        }
    }


def setup(client: Elasticsearch, cfg: ElasticsearchConfig) -> list[str]:
    """Create or update the retention policy and index template (alerts and the optional
    flow stream); returns what was done."""
    done = []
    if cfg.retention_mode == "ilm":
        client.ilm.put_lifecycle(name=POLICY_NAME, policy=ilm_policy(cfg))
        done.append(f"ILM policy {POLICY_NAME}: delete after {cfg.retention_days}d")
    body = index_template(cfg)
    client.indices.put_index_template(name=TEMPLATE_NAME, **body)
    done.append(
        f"index template {TEMPLATE_NAME} for {body['index_patterns'][0]} "
        f"(priority {TEMPLATE_PRIORITY})"
    )
    return done
