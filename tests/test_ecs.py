"""ECS alert documents: every emitted field exists in ECS (vendored ecs_flat.yml) with its type."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from netanomd.behaviour.incidents import Incident
from netanomd.behaviour.measure import halves, load, run
from netanomd.behaviour.pipeline import BehaviourPipeline, learn
from netanomd.data import attack_files, baseline_files, demo_model
from netanomd.decision import Alert
from netanomd.ecs import (
    ECS_TYPES,
    INTEGRATION_TYPES,
    NAMESPACE_FIELD,
    ObserverInfo,
    alert_document,
    data_stream,
    incident_document,
    severity,
    template_mappings,
)
from netanomd.flow import FlowBatch
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches

ECS_FILE = Path(__file__).parent / "data" / "ecs" / "ecs_flat.yml"
OBSERVER = ObserverInfo(name="sensor-1", hostname="sensor-1.example")


@pytest.fixture(scope="module")
def ecs() -> dict[str, Any]:
    with open(ECS_FILE) as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def alerts() -> list[Alert]:
    """Real alerts: Zeek flows from the bundled attacks and Suricata EVE flows."""
    model = demo_model()
    data = Path(__file__).parent / "data"
    batch = FlowBatch.concat(
        list(
            read_batches(
                [
                    *attack_files(),
                    data / "eve/test6-malicious-head400.json",
                    data / "zeek/ssh_sshguess.json.conn.log",  # carries community_id
                ],
                ReadStats(),
            )
        )
    )
    _, out = model.run(batch, threshold=0.0)  # every flow alerts: exercise every shape
    return out


@pytest.fixture(scope="module")
def incidents() -> list[Incident]:
    """Real incidents of every role: scans, brute force, a flood, from the bundled captures."""
    thresholds = learn([halves(load(baseline_files()[0]))[0]])
    data = Path(__file__).parent / "data"
    out: list[Incident] = []
    for name in (
        "behaviour/portscan-002.conn.log.gz",
        "behaviour/zeek-traces-dhcp_dhcp_flood.conn.log",
        "behaviour/slips-test12-icmp-portscan.conn.log",
        "zeek/ssh_sshguess.json.conn.log",
        "behaviour/ctu50-008.conn.log.labeled.gz",
    ):
        out += run(BehaviourPipeline(thresholds), load(data / name))
    return out


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def value_fits(typ: str, value: Any) -> bool:
    if typ in ("keyword", "constant_keyword", "match_only_text", "wildcard", "text"):
        return isinstance(value, str)
    if typ == "long":
        return isinstance(value, int) and not isinstance(value, bool)
    if typ in ("float", "scaled_float", "double"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ == "date":
        return isinstance(value, str) and value[4] == "-" and "T" in value
    if typ == "ip":
        ipaddress.ip_address(value)
        return True
    return False


def test_declared_types_match_ecs(ecs: dict[str, Any]) -> None:
    for field, typ in ECS_TYPES.items():
        assert field in ecs, f"{field} is not an ECS field"
        assert ecs[field]["type"] == typ, f"{field}: ECS says {ecs[field]['type']}, we say {typ}"


def check_fields(ecs: dict[str, Any], docs: list[dict[str, Any]]) -> set[str]:
    """Every field of ``docs`` is declared, of its declared type, an array only where ECS
    allows one; returns the fields seen."""
    seen: set[str] = set()
    for d in docs:
        doc = flatten(d)
        for field, value in doc.items():
            if field.startswith(NAMESPACE_FIELD + "."):
                continue
            seen.add(field)
            if field in INTEGRATION_TYPES:
                values = value if isinstance(value, list) else [value]
                want = {"keyword": str, "long": int}[INTEGRATION_TYPES[field]]
                assert all(isinstance(v, want) for v in values), f"{field}={value!r}"
                continue
            assert field in ECS_TYPES, f"{field} is emitted but not declared"
            spec = ecs[field]
            values = value if isinstance(value, list) else [value]
            if isinstance(value, list):
                assert "array" in spec["normalize"], f"{field} is not an ECS array field"
            for v in values:
                assert value_fits(spec["type"], v), f"{field}={v!r} does not fit {spec['type']}"
                allowed = spec.get("allowed_values")
                if allowed:
                    assert v in {x["name"] for x in allowed}, f"{field}={v!r} not allowed"
            if field in ("network.transport", "network.protocol"):
                assert value == value.lower()
    return seen


def test_every_emitted_field_is_ecs(ecs: dict[str, Any], alerts: list[Alert]) -> None:
    assert {a.flow.source for a in alerts} == {"zeek", "suricata"}
    seen = check_fields(ecs, [alert_document(a, OBSERVER, now=1.7e9) for a in alerts])
    # The common fields really are emitted.
    assert {
        "source.ip",
        "destination.port",
        "event.duration",
        "network.community_id",
        "network.direction",
        "related.ip",
        "rule.version",
        "zeek.session_id",
        "zeek.connection.state",
        "suricata.eve.flow_id",
    } <= seen


def test_every_incident_field_is_ecs(ecs: dict[str, Any], incidents: list[Incident]) -> None:
    assert {i.role for i in incidents} == {"orig", "resp", "service"}
    docs = [incident_document(i, f"id{i.id}", OBSERVER, now=1.7e9) for i in incidents]
    seen = check_fields(ecs, docs)
    assert {
        "event.reason",
        "event.severity",
        "rule.name",
        "source.ip",
        "destination.ip",
        "host.ip",
        "related.ip",
        "zeek.session_id",
        "threat.technique.id",
    } <= seen
    mappings = template_mappings()["properties"]
    for d in docs:
        for field in flatten(d):
            node: dict[str, Any] = mappings
            parts = field.split(".")
            for i, part in enumerate(parts):
                assert part in node, f"{field} has no mapping"
                if node[part].get("type") == "flattened":
                    break
                node = node[part].get("properties", {}) if i < len(parts) - 1 else node


def test_incident_document_content(incidents: list[Incident]) -> None:
    for inc in incidents:
        doc = incident_document(inc, "abc", OBSERVER, namespace="prod", now=1.7e9)
        assert doc["rule"]["name"] == inc.behaviour
        assert doc["event"]["reason"] == inc.title and doc["event"]["id"] == "abc"
        # The message names the behaviour and the host, and carries no count: equal
        # behaviours of one host group in Elastic Security.
        assert inc.behaviour.lower() in doc["message"].lower() and inc.host in doc["message"]
        assert not any(c.isdigit() for c in doc["message"].replace(inc.host, ""))
        assert doc["event"]["severity"] == inc.severity == doc["event"]["risk_score"]
        assert doc["zeek"]["session_id"] == (inc.uids[0] if len(inc.uids) == 1 else inc.uids)
        own = doc[NAMESPACE_FIELD]["incident"]
        assert own["flows"] == inc.flows and own["evidence"] == inc.evidence
        if inc.role == "service":  # a flood of one service from many sources: "udp/67"
            proto, port = inc.host.split("/")
            assert (doc["network"]["transport"], doc["destination"]["port"]) == (proto, int(port))
            continue
        ip_field = {"orig": "source", "resp": "destination"}[inc.role]
        assert doc[ip_field]["ip"] == inc.host and doc["host"]["ip"] == [inc.host]
    # Scans and brute force are never "low", and say which ATT&CK technique they are.
    scan = next(i for i in incidents if i.family == "scan")
    brute = next(i for i in incidents if i.family == "brute force")
    for inc, technique in ((scan, "T1046"), (brute, "T1110")):
        doc = incident_document(inc, "x", OBSERVER)
        assert doc["event"]["severity"] >= 47
        assert doc["threat"]["technique"]["id"] == [technique]


def test_document_content(alerts: list[Alert]) -> None:
    a = next(x for x in alerts if x.flow.source == "zeek" and x.flow.duration and x.contributions)
    doc = alert_document(a, OBSERVER, namespace="prod", now=1.7e9)
    assert doc["event"]["duration"] == round(a.flow.duration * 1e9)
    assert doc["event"]["id"] == a.alert_id
    assert doc["data_stream"] == {"type": "logs", "dataset": "netanomd.alert", "namespace": "prod"}
    assert doc["zeek"]["session_id"] == a.flow.uid  # where Elastic's Zeek integration has it
    # Message and rule name say what kind of anomaly, without per-alert numbers: they group.
    top = a.contributions[0]
    what = {"rare": f"rare {top.description}"}.get(
        top.direction,
        f"{top.description} unusually {'high' if top.direction == 'above' else 'low'}",
    )
    assert doc["rule"]["name"] == f"anomalous flow: {what}"
    assert doc["message"] == f"Anomalous {a.flow.proto} flow: {what}"
    names = {alert_document(x, OBSERVER)["rule"]["name"] for x in alerts if x.contributions}
    assert (
        1
        < len(names)
        <= len({(c.description, c.direction) for x in alerts for c in x.contributions[:1]})
    )
    assert a.reason in doc["event"]["reason"]
    assert doc["event"]["risk_score"] == doc["event"]["severity"]
    assert doc[NAMESPACE_FIELD]["score"] == a.score
    assert doc["source"]["bytes"] == a.flow.orig_ip_bytes
    s = next(x for x in alerts if x.flow.source == "suricata")
    sdoc = alert_document(s, OBSERVER)
    assert sdoc["suricata"]["eve"]["flow_id"] == str(s.flow.flow_id)
    assert data_stream("prod") == "logs-netanomd.alert-prod"


def test_severity_levels() -> None:
    assert [severity(t + m, t) for t, m in [(0.6, 0.0), (0.6, 0.05), (0.6, 0.1), (0.6, 0.2)]] == [
        21,
        47,
        73,
        99,
    ]


def test_template_covers_every_field(alerts: list[Alert]) -> None:
    mappings = template_mappings()

    def has(path: list[str], props: dict[str, Any]) -> bool:
        node = props.get(path[0])
        if node is None:
            return False
        return len(path) == 1 or has(path[1:], node.get("properties", {}))

    for a in alerts[:200]:
        for field in flatten(alert_document(a, OBSERVER)):
            assert has(field.split("."), mappings["properties"]), f"{field} has no mapping"
