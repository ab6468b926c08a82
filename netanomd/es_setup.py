"""The one-time set-up of the alert data stream in Elasticsearch.

Owns :func:`setup`, which idempotently PUTs the index template for
``logs-netanomd.alert-*`` (ECS mappings of the emitted fields,
``data_stream: {}``, priority 501: above the built-in ``logs-*-*`` template's 100 and, as
Elastic's docs ask for overlapping patterns, above 500) and the retention: an ILM policy, or
data-stream lifecycle (``lifecycle.data_retention``) with ``retention_mode="dsl"``.

Formats target Elasticsearch 8.x and 9.x (data streams, composable templates, ILM and DSL all
exist from 8.11). The settings are the ``sinks.elasticsearch`` section of the configuration
(:class:`netanomd.config.ElasticsearchSinkConfig`); the client comes from
:func:`netanomd.es_client.elasticsearch_client`.
"""

from __future__ import annotations

from typing import Any

from elasticsearch import Elasticsearch

from netanomd.config import ElasticsearchSinkConfig
from netanomd.ecs import DATASET, template_mappings

TEMPLATE_NAME = "netanomd-alerts"
POLICY_NAME = "netanomd-alerts"
TEMPLATE_PRIORITY = 501


def index_template(cfg: ElasticsearchSinkConfig) -> dict[str, Any]:
    template: dict[str, Any] = {"mappings": template_mappings()}
    if cfg.retention_mode == "ilm":
        template["settings"] = {"index.lifecycle.name": POLICY_NAME}
    else:
        template["lifecycle"] = {"data_retention": f"{cfg.retention_days}d"}
    return {
        "index_patterns": [f"logs-{DATASET}-*"],
        "data_stream": {},
        "priority": TEMPLATE_PRIORITY,
        "template": template,
        "_meta": {"managed_by": "netanomd", "description": "netanomd anomaly alerts (ECS)"},
    }


def ilm_policy(cfg: ElasticsearchSinkConfig) -> dict[str, Any]:
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


def setup(client: Elasticsearch, cfg: ElasticsearchSinkConfig) -> list[str]:
    """Create or update the retention policy and the alert index template; returns what was
    done."""
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
