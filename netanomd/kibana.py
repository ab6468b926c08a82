"""Kibana saved objects for triage, generated from code so field names never drift.

One ndjson file in Kibana 8.x's saved-objects export format (one object a line: ``type``,
``id``, ``attributes``, ``references``, ``coreMigrationVersion`` and ``typeMigrationVersion``,
which Kibana's import migrates from, and ``managed``):

* data views over ``logs-netanomd.alert-*`` (flow alerts), ``logs-netanomd.incident-*``
  (incidents, one document each) and the sensor's own records as Elastic's Zeek and Suricata
  integrations index them (``logs-zeek.*``, ``logs-suricata.*``). On the first two,
  ``zeek.session_id``, ``suricata.eve.flow_id`` and ``network.community_id`` are shown as links
  (a Url field format) that open Discover on the sensor's records of that connection;
* saved searches: all alerts, high severity, alerts by model version, all incidents,
  high-severity incidents;
* Lens visualizations (``type: lens``): alerts over time by kind, incidents by behaviour and
  severity, the score distribution, top sources, top destination ports;
* the triage dashboard: options-list controls on behaviour (``rule.name``), host
  (``related.ip``) and incident severity, the incidents and the flow alerts as tables (saved
  search panels), and the visualizations.

Import it with Kibana's saved-objects API (``POST /api/saved_objects/_import?overwrite=true``,
multipart ``file``, header ``kbn-xsrf``): :func:`import_ndjson`. Kibana >= 8.9 (the Lens and
dashboard migration versions below) and 9.x. ``searchSourceJSON``, ``panelsJSON``,
``fieldFormatMap`` and the control group's ``panelsJSON`` are JSON *strings*, as Kibana stores
them; references carry the ids, named as Kibana names them on export.
"""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from netanomd.ecs import DATASET, INCIDENT_DATASET
from netanomd.errors import TransportError

CORE_MIGRATION_VERSION = "8.8.0"
#: Per type, the version of the type's migrations the objects are written in: Kibana runs
#: every later migration on import and refuses a version newer than its own.
TYPE_MIGRATION_VERSION = {
    "index-pattern": "8.0.0",
    "search": "7.9.3",
    "lens": "8.9.0",
    "dashboard": "8.9.0",
}
#: The embeddable version of dashboard panels.
PANEL_VERSION = "8.9.0"

DATA_VIEW_ID = "netanomd-alerts-dv"
INCIDENTS_VIEW_ID = "netanomd-incidents-dv"
SENSOR_VIEW_ID = "netanomd-sensor-records-dv"
#: Where Elastic's Zeek and Suricata integrations write the sensor's records.
SENSOR_PATTERN = "logs-zeek.*,logs-suricata.*"
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"
#: Connection identifiers an alert shares with the sensor's own records.
LINK_FIELDS = ("zeek.session_id", "suricata.eve.flow_id", "network.community_id")
COLUMNS = [
    "source.ip",
    "destination.ip",
    "destination.port",
    "network.transport",
    "netanomd.score",
    "event.reason",
    "zeek.session_id",
    "network.community_id",
]
INCIDENT_COLUMNS = [
    "event.severity",
    "rule.name",
    "host.ip",
    "netanomd.incident.flows",
    "event.reason",
    "zeek.session_id",
]


def _saved(
    kind: str, oid: str, attributes: dict[str, Any], refs: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "type": kind,
        "id": oid,
        "attributes": attributes,
        "references": refs,
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "typeMigrationVersion": TYPE_MIGRATION_VERSION[kind],
        "managed": False,
    }


def _ref(oid: str, name: str, kind: str = "index-pattern") -> dict[str, str]:
    return {"id": oid, "name": name, "type": kind}


def sensor_link(field: str) -> str:
    """The Url field format template that opens Discover on the sensor's records whose
    ``field`` equals the value shown (relative: Kibana prefixes its own base path)."""
    query = f'{field}:"{{{{value}}}}"'
    return (
        f"discover#/?_a=(index:'{SENSOR_VIEW_ID}',query:(language:kuery,query:'{query}'))"
        "&_g=(time:(from:now-90d,to:now))"
    )


def _data_view(oid: str, pattern: str, name: str, links: bool) -> dict[str, Any]:
    attributes: dict[str, Any] = {"title": pattern, "timeFieldName": "@timestamp", "name": name}
    if links:
        formats = {
            f: {
                "id": "url",
                "params": {
                    "type": "a",
                    "urlTemplate": sensor_link(f),
                    "labelTemplate": "{{value}}",
                },
            }
            for f in LINK_FIELDS
        }
        attributes["fieldFormatMap"] = json.dumps(formats)
    return _saved("index-pattern", oid, attributes, [])


def _search(
    oid: str,
    title: str,
    query: str,
    sort: list[list[str]],
    view: str = DATA_VIEW_ID,
    columns: list[str] = COLUMNS,
) -> dict[str, Any]:
    source = {
        "query": {"query": query, "language": "kuery"},
        "filter": [],
        "indexRefName": INDEX_REF,
    }
    return _saved(
        "search",
        oid,
        {
            "title": title,
            "description": "",
            "columns": columns,
            "sort": sort,
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(source)},
        },
        [_ref(view, INDEX_REF)],
    )


# -- Lens -----------------------------------------------------------------------------------

COUNT = "count"


def _count(label: str) -> dict[str, Any]:
    return {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": "count",
        "sourceField": "___records___",
        "isBucketed": False,
        "scale": "ratio",
        "params": {"emptyAsNull": True},
    }


def _over_time() -> dict[str, Any]:
    return {
        "label": "@timestamp",
        "dataType": "date",
        "operationType": "date_histogram",
        "sourceField": "@timestamp",
        "isBucketed": True,
        "scale": "interval",
        "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False},
    }


def _terms(field: str, data_type: str, size: int, label: str) -> dict[str, Any]:
    return {
        "label": label,
        "customLabel": True,
        "dataType": data_type,
        "operationType": "terms",
        "sourceField": field,
        "isBucketed": True,
        "scale": "ordinal",
        "params": {
            "size": size,
            "orderBy": {"type": "column", "columnId": COUNT},
            "orderDirection": "desc",
            "otherBucket": True,
            "missingBucket": False,
            "parentFormat": {"id": "terms"},
        },
    }


def _histogram(field: str, label: str) -> dict[str, Any]:
    return {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": "range",
        "sourceField": field,
        "isBucketed": True,
        "scale": "interval",
        "params": {
            "type": "histogram",
            "maxBars": "auto",
            "includeEmptyRows": True,
            "ranges": [{"from": 0, "to": 1000, "label": ""}],
        },
    }


def _lens(
    oid: str,
    title: str,
    view: str,
    columns: dict[str, dict[str, Any]],
    visualization_type: str,
    visualization: Callable[[str], dict[str, Any]],
) -> dict[str, Any]:
    """A Lens visualization with one form-based layer over ``view``; ``visualization`` builds
    the visualization state for the layer's id."""
    layer = f"{oid}-layer"
    state = {
        "datasourceStates": {
            "formBased": {
                "layers": {
                    layer: {
                        "columns": columns,
                        "columnOrder": list(columns),
                        "incompleteColumns": {},
                    }
                }
            }
        },
        "visualization": visualization(layer),
        "query": {"query": "", "language": "kuery"},
        "filters": [],
        "internalReferences": [],
        "adHocDataViews": {},
    }
    return _saved(
        "lens",
        oid,
        {
            "title": title,
            "description": "",
            "visualizationType": visualization_type,
            "state": state,
        },
        [_ref(view, f"indexpattern-datasource-layer-{layer}")],
    )


def _bars(x: str, y: str, split: str | None = None) -> Callable[[str], dict[str, Any]]:
    """An ``lnsXY`` state: stacked bars of ``y`` over ``x``, coloured by ``split``."""

    def state(layer: str) -> dict[str, Any]:
        bars: dict[str, Any] = {
            "layerId": layer,
            "layerType": "data",
            "seriesType": "bar_stacked",
            "xAccessor": x,
            "accessors": [y],
        }
        if split:
            bars["splitAccessor"] = split
        return {
            "legend": {"isVisible": split is not None, "position": "right"},
            "valueLabels": "hide",
            "preferredSeriesType": "bar_stacked",
            "layers": [bars],
        }

    return state


def _table(columns: list[str]) -> Callable[[str], dict[str, Any]]:
    """An ``lnsDatatable`` state showing ``columns`` in order."""
    return lambda layer: {
        "layerId": layer,
        "layerType": "data",
        "columns": [{"columnId": c} for c in columns],
    }


def visualizations() -> list[dict[str, Any]]:
    """The Lens visualizations of the triage dashboard."""
    return [
        _lens(
            "netanomd-vis-over-time",
            "netanomd: flow alerts over time, by kind",
            DATA_VIEW_ID,
            {
                "time": _over_time(),
                "kind": _terms("rule.name", "string", 5, "Kind"),
                COUNT: _count("Alerts"),
            },
            "lnsXY",
            _bars("time", COUNT, "kind"),
        ),
        _lens(
            "netanomd-vis-incidents",
            "netanomd: incidents by behaviour and severity",
            INCIDENTS_VIEW_ID,
            {
                "behaviour": _terms("rule.name", "string", 10, "Behaviour"),
                "severity": _terms("netanomd.incident.severity_label", "string", 5, "Severity"),
                COUNT: _count("Incidents"),
            },
            "lnsXY",
            _bars("behaviour", COUNT, "severity"),
        ),
        _lens(
            "netanomd-vis-score",
            "netanomd: score distribution of flow alerts",
            DATA_VIEW_ID,
            {"score": _histogram("netanomd.score", "Score"), COUNT: _count("Alerts")},
            "lnsXY",
            _bars("score", COUNT),
        ),
        _lens(
            "netanomd-vis-top-sources",
            "netanomd: top sources of flow alerts",
            DATA_VIEW_ID,
            {"source": _terms("source.ip", "ip", 10, "Source"), COUNT: _count("Alerts")},
            "lnsDatatable",
            _table(["source", COUNT]),
        ),
        _lens(
            "netanomd-vis-top-ports",
            "netanomd: top destination ports of flow alerts",
            DATA_VIEW_ID,
            {
                "port": _terms("destination.port", "number", 10, "Destination port"),
                COUNT: _count("Alerts"),
            },
            "lnsDatatable",
            _table(["port", COUNT]),
        ),
    ]


# -- the dashboard --------------------------------------------------------------------------

#: Options-list controls: (id, field, title), over the incidents' data view.
CONTROLS = (
    ("behaviour", "rule.name", "Behaviour"),
    ("host", "related.ip", "Host"),
    ("severity", "netanomd.incident.severity_label", "Incident severity"),
)


def _control_group() -> tuple[dict[str, Any], list[dict[str, str]]]:
    panels = {
        cid: {
            "order": i,
            "width": "medium",
            "grow": True,
            "type": "optionsListControl",
            "explicitInput": {
                "id": cid,
                "fieldName": field,
                "title": title,
                "selectedOptions": [],
                "enhancements": {},
            },
        }
        for i, (cid, field, title) in enumerate(CONTROLS)
    }
    group = {
        "controlStyle": "oneLine",
        "chainingSystem": "HIERARCHICAL",
        "panelsJSON": json.dumps(panels),
        "ignoreParentSettingsJSON": json.dumps(
            {
                "ignoreFilters": False,
                "ignoreQuery": False,
                "ignoreTimerange": False,
                "ignoreValidations": False,
            }
        ),
    }
    refs = [
        _ref(INCIDENTS_VIEW_ID, f"controlGroup_{cid}:optionsListDataView") for cid, _, _ in CONTROLS
    ]
    return group, refs


#: Dashboard layout: (panel id, saved object type, saved object id, x, y, w, h) on a 48-wide grid.
LAYOUT = (
    ("incidents-chart", "lens", "netanomd-vis-incidents", 0, 0, 24, 12),
    ("alerts-chart", "lens", "netanomd-vis-over-time", 24, 0, 24, 12),
    ("incidents", "search", "netanomd-incidents", 0, 12, 48, 15),
    ("alerts", "search", "netanomd-all-alerts", 0, 27, 48, 15),
    ("score", "lens", "netanomd-vis-score", 0, 42, 16, 12),
    ("sources", "lens", "netanomd-vis-top-sources", 16, 42, 16, 12),
    ("ports", "lens", "netanomd-vis-top-ports", 32, 42, 16, 12),
)


def dashboard() -> dict[str, Any]:
    panels, refs = [], []
    for pid, kind, oid, x, y, w, h in LAYOUT:
        panels.append(
            {
                "version": PANEL_VERSION,
                "type": kind,
                "panelIndex": pid,
                "gridData": {"x": x, "y": y, "w": w, "h": h, "i": pid},
                "embeddableConfig": {"enhancements": {}},
                "panelRefName": f"panel_{pid}",
            }
        )
        refs.append(_ref(oid, f"{pid}:panel_{pid}", kind))
    controls, control_refs = _control_group()
    return _saved(
        "dashboard",
        "netanomd-dashboard",
        {
            "title": "netanomd: anomaly triage",
            "description": "Incidents and flow alerts from netanomd; a connection id opens the "
            "sensor's own records",
            "panelsJSON": json.dumps(panels),
            "optionsJSON": json.dumps({"useMargins": True, "hidePanelTitles": False}),
            "controlGroupInput": controls,
            "timeRestore": False,
            "version": 1,
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": json.dumps(
                    {"query": {"query": "", "language": "kuery"}, "filter": []}
                )
            },
        },
        refs + control_refs,
    )


def saved_objects() -> list[dict[str, Any]]:
    """Every saved object, each before the objects that refer to it."""
    newest = [["@timestamp", "desc"]]
    return [
        _data_view(DATA_VIEW_ID, f"logs-{DATASET}-*", "netanomd alerts", links=True),
        _data_view(INCIDENTS_VIEW_ID, f"logs-{INCIDENT_DATASET}-*", "netanomd incidents", True),
        _data_view(SENSOR_VIEW_ID, SENSOR_PATTERN, "sensor records (Zeek, Suricata)", False),
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
        *visualizations(),
        dashboard(),
    ]


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
        token = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
    except OSError as exc:
        raise TransportError(f"Kibana import to {url} failed: {exc}") from exc
    return answer
