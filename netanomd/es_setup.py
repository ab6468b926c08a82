"""The one-time set-up of the alert data stream and the incident indices in Elasticsearch.

Owns :func:`plan` (the requests, in order, that ``netanomd es setup --dry-run`` prints) and
:func:`setup`, which sends them: it idempotently PUTs the index template for
``logs-netanomd.alert-*`` (ECS mappings of the emitted fields,
``data_stream: {}``, priority 501: above the built-in ``logs-*-*`` template's 100 and, as
Elastic's docs ask for overlapping patterns, above 500) and the retention: an ILM policy, or
data-stream lifecycle (``lifecycle.data_retention``) with ``retention_mode="dsl"``.

Incidents are replaced in place as they grow, which a data stream (append-only) refuses: they
live in regular indices behind the write alias ``logs-netanomd.incident-<namespace>`` (a name in
Elastic Security's default ``logs-*`` indices). :func:`setup` PUTs their template (the same
mappings, no ``data_stream``; with ILM the same policy, rolling the alias over) and creates the
first index ``<alias>-000001`` with the alias when the alias does not exist yet. Data-stream
lifecycle does not apply to regular indices: with ``retention_mode="dsl"`` incidents are kept
until deleted (they are few: one document per incident, not per flow), rolled over by the
``logs`` policy where ``logs@settings`` brings it. An incident still
updated after a rollover is replaced in the index that holds it (the sink finds it there), so
it stays one document.

Both templates compose Elastic's built-in component templates for logs, as the built-in
``logs`` template does (``logs@mappings``, ``logs@settings``, ``logs@custom``,
``ecs@mappings``): ``logs@settings`` brings the default ingest pipeline that sets
``event.ingested``, on which Elastic Security's External Alerts rule looks back, so a late,
backlogged or spool-replayed alert is still promoted. Each is listed in
``ignore_missing_component_templates``, so set-up keeps working where they are absent (before
8.7, or with the stack templates turned off). The templates' own settings and mappings win over
the composed ones; with data-stream lifecycle, ``index.lifecycle.prefer_ilm: false`` keeps the
``logs`` ILM policy of ``logs@settings`` from taking over.

Formats target Elasticsearch 8.x and 9.x (data streams, composable templates, ILM and DSL all
exist from 8.11). The settings are the ``sinks.elasticsearch`` section of the configuration
(:class:`netanomd.config.ElasticsearchSinkConfig`); the client comes from
:func:`netanomd.es_client.elasticsearch_client`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch

from netanomd.config import ElasticsearchSinkConfig
from netanomd.ecs import DATASET, data_alias, template_mappings

TEMPLATE_NAME = "netanomd-alerts"
POLICY_NAME = "netanomd-alerts"
TEMPLATE_PRIORITY = 501
INCIDENT_TEMPLATE_PREFIX = "netanomd-incidents-"
#: Elastic's built-in component templates for logs, in the built-in ``logs`` template's order.
BUILTIN_COMPONENTS = ("logs@mappings", "logs@settings", "logs@custom", "ecs@mappings")


def _composed() -> dict[str, Any]:
    return {
        "composed_of": list(BUILTIN_COMPONENTS),
        "ignore_missing_component_templates": list(BUILTIN_COMPONENTS),
    }


def incident_template(cfg: ElasticsearchSinkConfig) -> dict[str, Any]:
    """The template of the incident indices of ``cfg.namespace`` (regular indices behind a
    write alias)."""
    alias = data_alias(cfg.namespace)
    # The alias to roll over: under our policy, or under logs@settings' "logs" policy.
    settings: dict[str, Any] = {"index.lifecycle.rollover_alias": alias}
    if cfg.retention_mode == "ilm":
        settings["index.lifecycle.name"] = POLICY_NAME
    return {
        "index_patterns": [f"{alias}-*"],
        **_composed(),
        "priority": TEMPLATE_PRIORITY,
        "template": {"settings": settings, "mappings": template_mappings()},
        "_meta": {"managed_by": "netanomd", "description": "netanomd incidents (ECS alerts)"},
    }


def index_template(cfg: ElasticsearchSinkConfig) -> dict[str, Any]:
    template: dict[str, Any] = {"mappings": template_mappings()}
    if cfg.retention_mode == "ilm":
        template["settings"] = {"index.lifecycle.name": POLICY_NAME}
    else:
        template["settings"] = {"index.lifecycle.prefer_ilm": False}
        template["lifecycle"] = {"data_retention": f"{cfg.retention_days}d"}
    return {
        "index_patterns": [f"logs-{DATASET}-*"],
        "data_stream": {},
        **_composed(),
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


@dataclass(frozen=True)
class Step:
    """One request of the set-up: ``method path`` with a JSON ``body``; ``unless_alias``: sent
    only when that alias does not exist yet."""

    method: str
    path: str
    body: dict[str, Any]
    what: str
    unless_alias: str | None = None

    def show(self) -> str:
        """The request as it would be sent (for ``--dry-run``)."""
        cond = (
            f"  # only if the alias {self.unless_alias} does not exist" if self.unless_alias else ""
        )
        return f"{self.method} {self.path}{cond}\n{json.dumps(self.body, indent=2)}"


def plan(cfg: ElasticsearchSinkConfig) -> list[Step]:
    """The requests :func:`setup` sends for ``cfg``, in order."""
    steps = []
    if cfg.retention_mode == "ilm":
        steps.append(
            Step(
                "PUT",
                f"/_ilm/policy/{POLICY_NAME}",
                {"policy": ilm_policy(cfg)},
                f"ILM policy {POLICY_NAME}: delete after {cfg.retention_days}d",
            )
        )
    body = index_template(cfg)
    steps.append(
        Step(
            "PUT",
            f"/_index_template/{TEMPLATE_NAME}",
            body,
            f"index template {TEMPLATE_NAME} for {body['index_patterns'][0]} "
            f"(priority {TEMPLATE_PRIORITY})",
        )
    )
    name = INCIDENT_TEMPLATE_PREFIX + cfg.namespace
    body = incident_template(cfg)
    steps.append(
        Step(
            "PUT",
            f"/_index_template/{name}",
            body,
            f"index template {name} for {body['index_patterns'][0]}",
        )
    )
    alias = data_alias(cfg.namespace)
    steps.append(
        Step(
            "PUT",
            f"/{alias}-000001",
            {"aliases": {alias: {"is_write_index": True}}},
            f"incident alias {alias}: created with index {alias}-000001",
            unless_alias=alias,
        )
    )
    return steps


def setup(client: Elasticsearch, cfg: ElasticsearchSinkConfig) -> list[str]:
    """Send :func:`plan`'s requests (the retention policy, both index templates, the first
    incident index unless its alias exists); returns what was done, a line each."""
    done = []
    for step in plan(cfg):
        if step.unless_alias and client.indices.exists_alias(name=step.unless_alias):
            done.append(f"incident alias {step.unless_alias}: exists")
            continue
        client.perform_request(
            step.method,
            step.path,
            body=step.body,
            # As the typed API methods send them; the client adds compatible-with.
            headers={"accept": "application/json", "content-type": "application/json"},
        )
        done.append(step.what)
    if cfg.retention_mode != "ilm":
        done.append(
            "incidents are kept until deleted (data-stream lifecycle needs a data stream): "
            "delete old incident indices yourself, or use --retention ilm"
        )
    return done
