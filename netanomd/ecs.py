"""ECS documents for Elasticsearch: one alert, or one incident, becomes one Elastic Common
Schema document.

Owns the mapping from :class:`~netanomd.decision.Alert` and from
:class:`~netanomd.behaviour.incidents.Incident` to ECS fields, the index names (alerts go to the
data stream ``logs-netanomd.alert-<namespace>``, Elastic's ``type-dataset-namespace``
convention; incidents, updated in place, to the alias ``logs-netanomd.incident-<namespace>`` of
regular indices, since data streams are append-only; both appear in Kibana's default ``logs-*``
views and Elastic Security's default indices) and the index-template mappings for exactly the
fields emitted. Every field outside the project's own ``netanomd.*`` namespace exists in ECS with
the type listed in :data:`ECS_TYPES`, or is a field of Elastic's own Zeek or Suricata
integration listed in :data:`INTEGRATION_TYPES` (``tests/test_ecs.py`` checks the ECS ones
against ECS's ``ecs_flat.yml``). Field choices follow those integrations: IP-layer byte counts go
to ``source.bytes``/``destination.bytes``, ``event.duration`` is nanoseconds, the Zeek uid is
``zeek.session_id`` and the Suricata flow id ``suricata.eve.flow_id``, so an analyst pivots from
an alert to the sensor's own records. Suricata signatures that fired on the flow go where that
integration puts an alert's (``suricata.eve.alert.signature``, ``.signature_id``, ``.category``;
one value or a list), with Suricata's severity in ``netanomd.signatures``; ``rule.*`` stays
netanomd's own rule. A severity-1 signature makes the alert at least high (73), severity 2
at least medium (:func:`~netanomd.flow.signature_floor`).

``message`` never carries per-alert numbers (Elastic Security's External Alerts rule names
promoted alerts after it, so equal messages group); the full sentence with its numbers is
``event.reason``. An incident's rule name is its behaviour; a flow alert's says what kind of
anomaly it is (:func:`flow_rule`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netanomd import __version__
from netanomd.decision import Alert
from netanomd.flow import FlowRecord, Signature, endpoint, signature_floor

if TYPE_CHECKING:
    from netanomd.behaviour.incidents import Incident

ECS_VERSION = "8.17.0"
DATASET = "netanomd.alert"
INCIDENT_DATASET = "netanomd.incident"
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
    "event.reason": "keyword",
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
    "rule.description": "keyword",
    "host.ip": "ip",
    "threat.framework": "keyword",
    "threat.tactic.id": "keyword",
    "threat.tactic.name": "keyword",
    "threat.technique.id": "keyword",
    "threat.technique.name": "keyword",
    "observer.name": "keyword",
    "observer.hostname": "keyword",
    "observer.type": "keyword",
    "observer.vendor": "keyword",
    "observer.product": "keyword",
    "observer.version": "keyword",
    "related.ip": "ip",
}

#: Fields of Elastic's Zeek and Suricata integrations that documents carry, with their types
#: there: the sensor's own identifiers of a connection.
INTEGRATION_TYPES: dict[str, str] = {
    "zeek.session_id": "keyword",
    "zeek.connection.state": "keyword",
    "zeek.connection.history": "keyword",
    "suricata.eve.flow_id": "keyword",
    "suricata.eve.alert.signature": "keyword",
    "suricata.eve.alert.signature_id": "long",
    "suricata.eve.alert.category": "keyword",
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
        "label": {"type": "keyword"},
        "signatures": {
            "properties": {
                "signature": {"type": "keyword", "ignore_above": 1024},
                "signature_id": {"type": "long"},
                "severity": {"type": "long"},
                "category": {"type": "keyword"},
            }
        },
        "incident": {
            "properties": {
                "id": {"type": "keyword"},
                "role": {"type": "keyword"},
                "host": {"type": "keyword"},
                "behaviour": {"type": "keyword"},
                "detail": {"type": "keyword"},
                "title": {"type": "keyword", "ignore_above": 1024},
                "severity_label": {"type": "keyword"},
                "score": {"type": "float"},
                "flows": {"type": "long"},
                "detections": {"type": "long"},
                "peer": {"type": "keyword"},
                "port": {"type": "long"},
                "proto": {"type": "keyword"},
                "top_peers": {"properties": {"ip": {"type": "keyword"}, "flows": {"type": "long"}}},
                "uids": {"type": "keyword"},
                "community_ids": {"type": "keyword"},
                "evidence": {"type": "flattened"},
                "closed": {"type": "boolean"},
            }
        },
    }
}

#: MITRE ATT&CK technique each behaviour family shows: (tactic id, tactic, technique id,
#: technique), as Elastic Security's rules tag their alerts.
ATTACK: dict[str, tuple[str, str, str, str]] = {
    "scan": ("TA0007", "Discovery", "T1046", "Network Service Discovery"),
    "brute force": ("TA0006", "Credential Access", "T1110", "Brute Force"),
    "flood": ("TA0040", "Impact", "T1498", "Network Denial of Service"),
    "beaconing": ("TA0011", "Command and Control", "T1071", "Application Layer Protocol"),
    "exfiltration": ("TA0010", "Exfiltration", "T1048", "Exfiltration Over Alternative Protocol"),
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


def flow_rule(alert: Alert) -> str:
    """What makes a flow alert anomalous, without its numbers: the leading reason's quantity
    and direction ("rare conn_state REJ", "bytes sent by the originator unusually high"), so
    alerts of one kind share a rule name and a message."""
    if not alert.contributions:
        return "unusual combination of features"
    top = alert.contributions[0]
    if top.direction == "rare":
        return f"rare {top.description}"
    return f"{top.description} unusually {'high' if top.direction == 'above' else 'low'}"


def data_alias(namespace: str = "default") -> str:
    """The write alias of the incident indices (``logs-netanomd.incident-<namespace>``)."""
    return f"logs-{INCIDENT_DATASET}-{namespace}"


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
    proto = (f.proto or "").lower() or "network"
    what = flow_rule(alert)
    put(doc, "message", f"Anomalous {proto} flow: {what}")
    put(
        doc,
        "event.reason",
        f"Anomalous {proto} flow {f.orig_h or '-'} -> {endpoint(f.resp_h, f.resp_p)}: "
        f"{alert.reason}",
    )
    put(doc, "event.kind", "alert")
    put(doc, "event.category", ["network", "intrusion_detection"])
    put(doc, "event.type", ["info"])
    put(doc, "event.id", alert.alert_id)
    sev = max(severity(alert.score, alert.threshold), signature_floor(f.signatures))
    put(doc, "event.severity", sev)
    # One scale for both, as Elastic's rules: the risk score is the severity's band.
    put(doc, "event.risk_score", float(sev))
    put(doc, "event.risk_score_norm", float(sev))
    put(doc, "rule.name", f"anomalous flow: {what}")
    put(doc, "rule.id", f"netanomd-{alert.model_id.split('-', 1)[0]}")
    put(doc, "rule.ruleset", "netanomd")
    put(doc, "rule.version", alert.model_id)
    put(doc, "rule.category", "Network anomaly")
    doc[NAMESPACE_FIELD] = {
        "source": f.source,
        "score": alert.score,
        "threshold": alert.threshold,
        "model": {"id": alert.model_id},
        "reason": alert.reason,
        "explanation": [c.to_dict() for c in alert.contributions],
    }
    _signature_fields(doc, f.signatures)
    _sensor_ids(
        doc,
        [f.uid] if f.source == "zeek" and f.uid else [],
        [str(f.flow_id)] if f.flow_id is not None else [],
    )
    put(doc, "zeek.connection.state", f.conn_state or None)
    put(doc, "zeek.connection.history", f.history or None)
    return doc


#: How the message names the incident's host by its role.
_ROLE_WORDS = {"orig": "from", "resp": "against", "service": "on"}


def incident_document(
    incident: Incident,
    incident_id: str,
    observer: ObserverInfo,
    namespace: str = "default",
    now: float | None = None,
) -> dict[str, Any]:
    """The ECS alert document of one incident, stored under ``incident_id`` and replaced as
    the incident grows."""
    created = now if now is not None else dt.datetime.now(dt.UTC).timestamp()
    d = incident.to_dict()
    doc: dict[str, Any] = {}
    put = _put
    behaviour = incident.behaviour
    put(doc, "@timestamp", _iso(incident.last_seen))
    put(doc, "ecs.version", ECS_VERSION)
    put(
        doc,
        "message",
        f"{behaviour[:1].upper()}{behaviour[1:]} "
        f"{_ROLE_WORDS.get(incident.role, 'by')} {incident.host}",
    )
    put(doc, "event.reason", d["title"])
    put(doc, "event.kind", "alert")
    put(doc, "event.category", ["network", "intrusion_detection"])
    put(doc, "event.type", ["info"])
    put(doc, "event.module", "netanomd")
    put(doc, "event.dataset", INCIDENT_DATASET)
    put(doc, "event.id", incident_id)
    put(doc, "event.severity", int(d["severity"]))
    put(doc, "event.risk_score", float(d["severity"]))
    put(doc, "event.risk_score_norm", float(d["severity"]))
    put(doc, "event.start", _iso(incident.first_seen))
    put(doc, "event.end", _iso(incident.last_seen))
    put(doc, "event.duration", round(max(incident.last_seen - incident.first_seen, 0.0) * 1e9))
    put(doc, "event.created", _iso(created))
    put(doc, "rule.name", behaviour)
    put(doc, "rule.id", "netanomd-" + behaviour.lower().replace(" ", "-"))
    put(doc, "rule.ruleset", "netanomd")
    put(doc, "rule.category", "Network behaviour")
    put(doc, "rule.description", f"netanomd host behaviour detection: {behaviour}")
    attack = ATTACK.get(incident.family)
    if attack is not None:
        put(doc, "threat.framework", "MITRE ATT&CK")
        put(doc, "threat.tactic.id", [attack[0]])
        put(doc, "threat.tactic.name", [attack[1]])
        put(doc, "threat.technique.id", [attack[2]])
        put(doc, "threat.technique.name", [attack[3]])
    peers = [p for p, _ in d["top_peers"]]
    if incident.peer and incident.peer not in peers:
        peers.insert(0, incident.peer)
    proto = incident.proto.lower() or None
    port = incident.port if incident.port >= 0 else None
    if incident.role == "service":  # host is "proto/port"
        svc_proto, _, svc_port = incident.host.partition("/")
        proto, port = svc_proto.lower() or None, int(svc_port) if svc_port.isdigit() else port
    elif incident.role == "resp":
        put(doc, "destination.ip", _ip(incident.host))
        put(doc, "source.ip", _ip(incident.peer))
        put(doc, "host.ip", [incident.host] if _is_ip(incident.host) else None)
    else:
        put(doc, "source.ip", _ip(incident.host))
        put(doc, "destination.ip", _ip(incident.peer))
        put(doc, "host.ip", [incident.host] if _is_ip(incident.host) else None)
    put(doc, "destination.port", port)
    put(doc, "network.transport", proto)
    put(doc, "network.iana_number", _IANA.get(proto or ""))
    if len(incident.community_ids) == 1:
        put(doc, "network.community_id", incident.community_ids[0])
    put(doc, "observer.name", observer.name)
    put(doc, "observer.hostname", observer.hostname)
    put(doc, "observer.type", observer.type)
    put(doc, "observer.vendor", observer.vendor)
    put(doc, "observer.product", observer.product)
    put(doc, "observer.version", observer.version)
    ips = [ip for ip in (incident.host, *peers) if ip and _is_ip(ip)]
    put(doc, "related.ip", sorted(set(ips)) or None)
    _sensor_ids(doc, [u for u in incident.uids if u], [])
    doc[NAMESPACE_FIELD] = {
        "incident": {
            "id": incident_id,
            **{
                k: d[k]
                for k in (
                    "role",
                    "host",
                    "behaviour",
                    "detail",
                    "title",
                    "severity_label",
                    "score",
                    "flows",
                    "detections",
                    "peer",
                    "port",
                    "proto",
                    "uids",
                    "community_ids",
                    "evidence",
                    "closed",
                )
            },
            "top_peers": [{"ip": p, "flows": int(n)} for p, n in d["top_peers"]],
        }
    }
    return doc


def _ip(text: str) -> str | None:
    return text if text and _is_ip(text) else None


def _signature_fields(doc: dict[str, Any], signatures: tuple[Signature, ...] | None) -> None:
    """The Suricata signatures that fired on the flow: where Elastic's Suricata integration
    puts an alert's (one value, or a list), and all of each in ``netanomd.signatures``."""
    if not signatures:
        return

    def one_or_list(values: list[Any]) -> Any:
        return values[0] if len(values) == 1 else values

    _put(doc, "suricata.eve.alert.signature", one_or_list([s.signature for s in signatures]))
    _put(doc, "suricata.eve.alert.signature_id", one_or_list([s.signature_id for s in signatures]))
    categories = sorted({s.category for s in signatures if s.category})
    if categories:
        _put(doc, "suricata.eve.alert.category", one_or_list(categories))
    doc[NAMESPACE_FIELD]["signatures"] = [s.to_dict() for s in signatures]


def _sensor_ids(doc: dict[str, Any], uids: list[str], flow_ids: list[str]) -> None:
    """The sensor's own connection ids, where Elastic's Zeek and Suricata integrations put
    them (one value, or a list for an incident)."""
    if uids:
        _put(doc, "zeek.session_id", uids[0] if len(uids) == 1 else uids)
    if flow_ids:
        _put(doc, "suricata.eve.flow_id", flow_ids[0] if len(flow_ids) == 1 else flow_ids)


def _flow_fields(
    f: FlowRecord, observer: ObserverInfo, namespace: str, dataset: str, now: float | None
) -> dict[str, Any]:
    """The ECS fields every document about a flow carries."""
    created = now if now is not None else dt.datetime.now(dt.UTC).timestamp()
    ob = f.orig_ip_bytes
    rb = f.resp_ip_bytes
    doc: dict[str, Any] = {}
    put = _put
    # A flow without a time (a CICFlowMeter derivative) is filed when it was scored.
    put(doc, "@timestamp", _iso(f.ts if f.ts is not None else created))
    put(doc, "ecs.version", ECS_VERSION)
    put(doc, "data_stream.type", "logs")
    put(doc, "data_stream.dataset", dataset)
    put(doc, "data_stream.namespace", namespace)
    put(doc, "event.module", "netanomd")
    put(doc, "event.dataset", dataset)
    if f.duration is not None:
        put(doc, "event.duration", round(f.duration * 1e9))
    if f.ts is not None:
        put(doc, "event.start", _iso(f.ts))
        if f.duration is not None:
            put(doc, "event.end", _iso(f.ts + f.duration))
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
    """Index-template ``mappings`` for every field :func:`alert_document` and
    :func:`incident_document` can emit."""
    props: dict[str, Any] = {}
    for dotted, typ in (ECS_TYPES | INTEGRATION_TYPES).items():
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
