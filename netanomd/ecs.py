"""ECS documents for Elasticsearch: one alert becomes one Elastic Common Schema document.

Owns the mapping from :class:`~netanomd.decision.Alert` to ECS fields, the data stream names
(``logs-netanomd.alert-<namespace>``, Elastic's ``type-dataset-namespace`` convention, so alerts
appear in Kibana's default ``logs-*`` views) and the index-template mappings for exactly the
fields emitted. Every field outside the project's own ``netanomd.*`` namespace exists in ECS with
the type listed in :data:`ECS_TYPES` (``tests/test_ecs.py`` checks both against ECS's
``ecs_flat.yml``). Field choices follow Elastic's own Zeek and Suricata integrations: IP-layer
byte counts go to ``source.bytes``/``destination.bytes``, ``event.duration`` is nanoseconds.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Any

from netanomd import __version__
from netanomd.decision import Alert
from netanomd.flow import FlowRecord

ECS_VERSION = "8.17.0"
DATASET = "netanomd.alert"
NAMESPACE_FIELD = "netanomd"

#: ECS type of every ECS field an alert document may carry (checked against ecs_flat.yml).
ECS_TYPES: dict[str, str] = {
    "@timestamp": "date",
    "message": "match_only_text",
    "ecs.version": "keyword",
    "data_stream.type": "constant_keyword",
    "data_stream.dataset": "constant_keyword",
    "data_stream.namespace": "constant_keyword",
    "event.kind": "keyword",
    "event.category": "keyword",
    "event.type": "keyword",
    "event.module": "keyword",
    "event.dataset": "keyword",
    "event.id": "keyword",
    "event.severity": "long",
    "event.risk_score": "float",
    "event.risk_score_norm": "float",
    "event.duration": "long",
    "event.start": "date",
    "event.end": "date",
    "event.created": "date",
    "source.ip": "ip",
    "source.port": "long",
    "source.bytes": "long",
    "source.packets": "long",
    "destination.ip": "ip",
    "destination.port": "long",
    "destination.bytes": "long",
    "destination.packets": "long",
    "network.transport": "keyword",
    "network.protocol": "keyword",
    "network.community_id": "keyword",
    "network.bytes": "long",
    "network.packets": "long",
    "network.direction": "keyword",
    "network.iana_number": "keyword",
    "rule.name": "keyword",
    "rule.id": "keyword",
    "rule.ruleset": "keyword",
    "rule.version": "keyword",
    "rule.category": "keyword",
    "observer.name": "keyword",
    "observer.hostname": "keyword",
    "observer.type": "keyword",
    "observer.vendor": "keyword",
    "observer.product": "keyword",
    "observer.version": "keyword",
    "related.ip": "ip",
}

#: Mappings of the project's own fields.
NETANOMD_MAPPINGS: dict[str, Any] = {
    "properties": {
        "score": {"type": "float"},
        "threshold": {"type": "float"},
        "model": {"properties": {"id": {"type": "keyword"}}},
        "reason": {"type": "keyword", "ignore_above": 1024},
        "explanation": {
            "properties": {
                "feature": {"type": "keyword"},
                "description": {"type": "keyword"},
                "observed": {"type": "double"},
                "baseline": {"type": "double"},
                "baseline_name": {"type": "keyword"},
                "direction": {"type": "keyword"},
                "weight": {"type": "float"},
            }
        },
        "source": {"type": "keyword"},
        "zeek": {"properties": {"uid": {"type": "keyword"}}},
        "suricata": {"properties": {"flow_id": {"type": "keyword"}}},
        "label": {"type": "keyword"},
    }
}

_IANA = {"icmp": "1", "tcp": "6", "udp": "17", "ipv6-icmp": "58", "icmp6": "58", "sctp": "132"}
# Elastic's severity convention for detection rules: low 21, medium 47, high 73, critical 99.
_SEVERITIES = ((0.15, 99), (0.08, 73), (0.03, 47), (-1.0, 21))


@dataclass(frozen=True)
class ObserverInfo:
    """Who observed the flow: the sensor netanomd runs on."""

    name: str
    hostname: str
    type: str = "sensor"
    vendor: str = "netanomd"
    product: str = "netanomd"
    version: str = __version__


def data_stream(namespace: str = "default", dataset: str = DATASET) -> str:
    return f"logs-{dataset}-{namespace}"


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="microseconds")


def _direction(local_orig: bool | None, local_resp: bool | None) -> str | None:
    if local_orig is None or local_resp is None:
        return None
    return {
        (True, True): "internal",
        (True, False): "outbound",
        (False, True): "inbound",
        (False, False): "external",
    }[(local_orig, local_resp)]


def severity(score: float, threshold: float) -> int:
    """ECS ``event.severity`` from how far the score lies above the threshold."""
    margin = score - threshold
    return next(sev for floor, sev in _SEVERITIES if margin >= floor)


def _put(doc: dict[str, Any], dotted: str, value: Any) -> None:
    if value is None:
        return
    *parents, leaf = dotted.split(".")
    node = doc
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def alert_document(
    alert: Alert,
    observer: ObserverInfo,
    namespace: str = "default",
    now: float | None = None,
) -> dict[str, Any]:
    """The ECS document for one alert (nested objects, ready to index)."""
    f = alert.flow
    doc = _flow_fields(f, observer, namespace, DATASET, now)
    put = _put
    put(
        doc,
        "message",
        f"Anomalous {f.proto} flow {f.orig_h} -> {f.resp_h}:{f.resp_p}: {alert.reason}",
    )
    put(doc, "event.kind", "alert")
    put(doc, "event.category", ["network", "intrusion_detection"])
    put(doc, "event.type", ["info"])
    put(doc, "event.id", alert.alert_id)
    put(doc, "event.severity", severity(alert.score, alert.threshold))
    put(doc, "event.risk_score", round(alert.score * 100.0, 3))
    put(doc, "event.risk_score_norm", round(min(max(alert.score, 0.0), 1.0) * 100.0, 3))
    put(doc, "rule.name", "netanomd anomalous flow")
    put(doc, "rule.id", f"netanomd-{alert.model_id.split('-', 1)[0]}")
    put(doc, "rule.ruleset", "netanomd")
    put(doc, "rule.version", alert.model_id)
    put(doc, "rule.category", "Network anomaly")
    doc[NAMESPACE_FIELD] = _own(f) | {
        "score": alert.score,
        "threshold": alert.threshold,
        "model": {"id": alert.model_id},
        "reason": alert.reason,
        "explanation": [c.to_dict() for c in alert.contributions],
    }
    return doc


def _own(f: FlowRecord) -> dict[str, Any]:
    own: dict[str, Any] = {"source": f.source}
    if f.source == "zeek":
        own["zeek"] = {"uid": f.uid}
    if f.flow_id is not None:
        own["suricata"] = {"flow_id": str(f.flow_id)}
    return own


def _flow_fields(
    f: FlowRecord, observer: ObserverInfo, namespace: str, dataset: str, now: float | None
) -> dict[str, Any]:
    """The ECS fields every document about a flow carries."""
    created = now if now is not None else dt.datetime.now(dt.UTC).timestamp()
    ob = f.orig_ip_bytes
    rb = f.resp_ip_bytes
    doc: dict[str, Any] = {}
    put = _put
    put(doc, "@timestamp", _iso(f.ts))
    put(doc, "ecs.version", ECS_VERSION)
    put(doc, "data_stream.type", "logs")
    put(doc, "data_stream.dataset", dataset)
    put(doc, "data_stream.namespace", namespace)
    put(doc, "event.module", "netanomd")
    put(doc, "event.dataset", dataset)
    if f.duration is not None:
        put(doc, "event.duration", round(f.duration * 1e9))
        put(doc, "event.end", _iso(f.ts + f.duration))
    put(doc, "event.start", _iso(f.ts))
    put(doc, "event.created", _iso(created))
    put(doc, "source.ip", f.orig_h)
    put(doc, "source.port", f.orig_p)
    put(doc, "source.bytes", ob)
    put(doc, "source.packets", f.orig_pkts)
    put(doc, "destination.ip", f.resp_h)
    put(doc, "destination.port", f.resp_p)
    put(doc, "destination.bytes", rb)
    put(doc, "destination.packets", f.resp_pkts)
    proto = (f.proto or "").lower() or None
    put(doc, "network.transport", proto)
    put(doc, "network.iana_number", _IANA.get(proto or ""))
    put(doc, "network.protocol", f.service.lower() if f.service else None)
    put(doc, "network.community_id", f.community_id)
    if ob is not None and rb is not None:
        put(doc, "network.bytes", ob + rb)
    if f.orig_pkts is not None and f.resp_pkts is not None:
        put(doc, "network.packets", f.orig_pkts + f.resp_pkts)
    put(doc, "network.direction", _direction(f.local_orig, f.local_resp))
    put(doc, "observer.name", observer.name)
    put(doc, "observer.hostname", observer.hostname)
    put(doc, "observer.type", observer.type)
    put(doc, "observer.vendor", observer.vendor)
    put(doc, "observer.product", observer.product)
    put(doc, "observer.version", observer.version)
    ips = [ip for ip in (f.orig_h, f.resp_h) if ip and _is_ip(ip)]
    put(doc, "related.ip", sorted(set(ips)) or None)
    return doc


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def template_mappings() -> dict[str, Any]:
    """Index-template ``mappings`` for every field :func:`alert_document` can emit."""
    props: dict[str, Any] = {}
    for dotted, typ in ECS_TYPES.items():
        node = props
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {"properties": {}})["properties"]
        mapping: dict[str, Any] = {"type": typ}
        if typ == "keyword":
            mapping["ignore_above"] = 1024
        node[leaf] = mapping
    props[NAMESPACE_FIELD] = NETANOMD_MAPPINGS
    return {"dynamic": "false", "properties": props}
