"""Kibana saved objects for triage, generated from code so field names never drift.

One ndjson file: data views over ``logs-netanomd.alert-*`` (flow alerts) and
``logs-netanomd.incident-*`` (incidents, one document each); saved searches (all alerts, high
severity, alerts by model version, all incidents, high-severity incidents); aggregation-based
visualizations (alerts over time, score distribution, top sources, top destination ports, top
reasons) and a dashboard holding them. Import it with Kibana's saved-objects API
(``POST /api/saved_objects/_import?overwrite=true``, multipart ``file``, header ``kbn-xsrf``).
Shapes follow Kibana 8.x exports (``searchSourceJSON``/``visState``/``panelsJSON`` are JSON
*strings*; references carry the ids).
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any

from netanomd.ecs import DATASET, INCIDENT_DATASET
from netanomd.errors import TransportError

DATA_VIEW_ID = "netanomd-alerts-dv"
INCIDENTS_VIEW_ID = "netanomd-incidents-dv"
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"
COLUMNS = [
    "source.ip",
    "destination.ip",
    "destination.port",
    "network.transport",
    "netanomd.score",
    "zeek.session_id",
    "event.reason",
]
INCIDENT_COLUMNS = [
    "event.severity",
    "rule.name",
    "host.ip",
    "netanomd.incident.flows",
    "event.reason",
]


def _search_source(query: str) -> str:
    return json.dumps(
        {"query": {"query": query, "language": "kuery"}, "filter": [], "indexRefName": INDEX_REF}
    )


def _ref(view: str = DATA_VIEW_ID) -> list[dict[str, str]]:
    return [{"id": view, "name": INDEX_REF, "type": "index-pattern"}]


def _search(
    oid: str,
    title: str,
    query: str,
    sort: list[list[str]],
    view: str = DATA_VIEW_ID,
    columns: list[str] = COLUMNS,
) -> dict[str, Any]:
    return {
        "type": "search",
        "id": oid,
        "attributes": {
            "title": title,
            "columns": columns,
            "sort": sort,
            "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source(query)},
        },
        "references": _ref(view),
        "coreMigrationVersion": "8.8.0",
    }


def _vis(
    oid: str,
    title: str,
    vis_type: str,
    aggs: list[dict[str, Any]],
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    state = {"title": title, "type": vis_type, "aggs": aggs, "params": params or {}}
    return {
        "type": "visualization",
        "id": oid,
        "attributes": {
            "title": title,
            "visState": json.dumps(state),
            "uiStateJSON": "{}",
            "description": "",
            "version": 1,
            "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source("")},
        },
        "references": _ref(),
        "coreMigrationVersion": "8.8.0",
    }


def _terms(field: str, size: int = 10) -> list[dict[str, Any]]:
    return [
        {"id": "1", "enabled": True, "type": "count", "schema": "metric", "params": {}},
        {
            "id": "2",
            "enabled": True,
            "type": "terms",
            "schema": "segment",
            "params": {"field": field, "size": size, "order": "desc", "orderBy": "1"},
        },
    ]


def saved_objects() -> list[dict[str, Any]]:
    """Every saved object, data view first."""
    objs: list[dict[str, Any]] = [
        {
            "type": "index-pattern",
            "id": DATA_VIEW_ID,
            "attributes": {
                "title": f"logs-{DATASET}-*",
                "timeFieldName": "@timestamp",
                "name": "netanomd alerts",
            },
            "references": [],
        },
        {
            "type": "index-pattern",
            "id": INCIDENTS_VIEW_ID,
            "attributes": {
                "title": f"logs-{INCIDENT_DATASET}-*",
                "timeFieldName": "@timestamp",
                "name": "netanomd incidents",
            },
            "references": [],
        },
    ]
    newest = [["@timestamp", "desc"]]
    objs += [
        _search("netanomd-all-alerts", "netanomd: all alerts", 'event.kind : "alert"', newest),
        _search(
            "netanomd-high-severity",
            "netanomd: high severity (>= 73)",
            'event.kind : "alert" and event.severity >= 73',
            newest,
        ),
        _search(
            "netanomd-incidents",
            "netanomd: incidents",
            'event.kind : "alert"',
            newest,
            INCIDENTS_VIEW_ID,
            INCIDENT_COLUMNS,
        ),
        _search(
            "netanomd-incidents-high",
            "netanomd: incidents, high and critical (>= 70)",
            'event.kind : "alert" and event.severity >= 70',
            [["event.severity", "desc"], ["@timestamp", "desc"]],
            INCIDENTS_VIEW_ID,
            INCIDENT_COLUMNS,
        ),
        _search(
            "netanomd-by-model",
            "netanomd: alerts by model version",
            'event.kind : "alert" and rule.version : *',
            [["rule.version", "desc"], ["@timestamp", "desc"]],
        ),
    ]
    vis = [
        _vis(
            "netanomd-vis-over-time",
            "netanomd: alerts over time",
            "histogram",
            [
                {"id": "1", "enabled": True, "type": "count", "schema": "metric", "params": {}},
                {
                    "id": "2",
                    "enabled": True,
                    "type": "date_histogram",
                    "schema": "segment",
                    "params": {"field": "@timestamp", "interval": "auto"},
                },
            ],
        ),
        _vis(
            "netanomd-vis-score",
            "netanomd: score distribution",
            "histogram",
            [
                {"id": "1", "enabled": True, "type": "count", "schema": "metric", "params": {}},
                {
                    "id": "2",
                    "enabled": True,
                    "type": "histogram",
                    "schema": "segment",
                    "params": {"field": "netanomd.score", "interval": 0.01},
                },
            ],
        ),
        _vis("netanomd-vis-top-sources", "netanomd: top sources", "table", _terms("source.ip")),
        _vis(
            "netanomd-vis-top-ports",
            "netanomd: top destination ports",
            "table",
            _terms("destination.port"),
        ),
        _vis(
            "netanomd-vis-top-reasons", "netanomd: top reasons", "table", _terms("netanomd.reason")
        ),
    ]
    objs += vis
    panels, refs = [], []
    for i, v in enumerate(vis):
        name = f"panel_{i}"
        panels.append(
            {
                "panelIndex": str(i),
                "gridData": {"x": 24 * (i % 2), "y": 15 * (i // 2), "w": 24, "h": 15, "i": str(i)},
                "version": "8.8.0",
                "panelRefName": name,
                "embeddableConfig": {},
            }
        )
        refs.append({"id": v["id"], "name": name, "type": "visualization"})
    objs.append(
        {
            "type": "dashboard",
            "id": "netanomd-dashboard",
            "attributes": {
                "title": "netanomd: anomaly triage",
                "panelsJSON": json.dumps(panels),
                "optionsJSON": json.dumps({"useMargins": True}),
                "timeRestore": False,
                "version": 1,
                "kibanaSavedObjectMeta": {
                    "searchSourceJSON": json.dumps(
                        {"query": {"query": "", "language": "kuery"}, "filter": []}
                    )
                },
            },
            "references": refs,
            "coreMigrationVersion": "8.8.0",
        }
    )
    return objs


def export_ndjson() -> str:
    return "".join(json.dumps(o, sort_keys=True) + "\n" for o in saved_objects())


def import_ndjson(
    url: str,
    ndjson: str,
    *,
    space: str | None = None,
    api_key: str | None = None,
    basic: tuple[str, str] | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """POST the objects to Kibana's import API; returns Kibana's JSON answer."""
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="netanomd.ndjson"\r\nContent-Type: application/ndjson\r\n\r\n'
        f"{ndjson}\r\n--{boundary}--\r\n"
    ).encode()
    prefix = f"/s/{space}" if space else ""
    req = urllib.request.Request(
        f"{url.rstrip('/')}{prefix}/api/saved_objects/_import?overwrite=true",
        data=body,
        method="POST",
        headers={"kbn-xsrf": "true", "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    if api_key:
        req.add_header("Authorization", f"ApiKey {api_key}")
    elif basic:
        import base64

        token = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
    except OSError as exc:
        raise TransportError(f"Kibana import to {url} failed: {exc}") from exc
    return answer
