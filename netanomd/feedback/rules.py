"""Allowlist rules: what an analyst (or the defaults) declared fine, and what each matches.

Owns :class:`Rule`, its checks (a bad field is named with where it came from), the default rules
for multicast, broadcast and link-local discovery (:data:`DEFAULT_RULES`: SSDP, mDNS, LLMNR,
DHCP, DHCPv6, ICMPv6 neighbour discovery), reading rules from a YAML file, and matching:

* a flow (:meth:`Rule.matches_flow`) matches when the rule names at least one flow field
  (``host``, ``peer``, ``port``, ``proto``, ``service``) and every field it names matches:
  ``host`` is a list of networks the originator is in, ``peer`` the responder's, ``port`` the
  responder ports, ``proto`` and ``service`` Zeek's names. ``behaviour`` does not restrict flows:
  a rule naming only a behaviour never matches a flow.
* an incident (:meth:`Rule.matches_incident`) matches when every field the rule names matches
  the incident's host (its originator or responder, by role), peer, port, protocol and behaviour;
  ``service`` is not an incident field, so a rule naming a service matches no incident.

A batch of flows is matched column-wise (:meth:`RuleSet.flow_rules`, each rule's address and
service tests run once per distinct value), with the same answers as one flow at a time.

A rule is active until its expiry (wall clock, epoch seconds) and while enabled.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from netanomd.errors import InputError
from netanomd.flow import FlowBatch

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
RULE_FIELDS = ("host", "peer", "port", "proto", "service", "behaviour")
ORIGINS = ("default", "config", "analyst")


def parse_networks(value: Any, where: str) -> tuple[Network, ...]:
    """Networks from a CIDR, an address, or a list or comma-separated string of them."""
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise InputError(f"{where}: expected an address or CIDR (or a list), got {value!r}")
    out = []
    for item in items:
        text = str(item).strip()
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise InputError(f"{where}: {text!r} is not an IP address or CIDR") from None
    return tuple(out)


def parse_ports(value: Any, where: str) -> tuple[int, ...]:
    """Ports from a number, or a list or comma-separated string of numbers (0-65535)."""
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        items = [items]
    out = []
    for item in items:
        text = str(item).strip()
        if not text.isdigit() or int(text) > 65535:
            raise InputError(f"{where}: {text!r} is not a port number (0-65535)")
        out.append(int(text))
    return tuple(out)


def _services(service: str | None) -> list[str]:
    """Zeek's ``service`` field (``"dns,http"``) as the names a rule's ``service`` matches."""
    return (service or "").lower().split(",")


@functools.lru_cache(maxsize=1 << 16)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address (a zone such as ``%eth0`` dropped), or None when ``text`` is not one; parsed
    once per distinct text."""
    try:
        return ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None


def _in(address: str | None, networks: Sequence[Network]) -> bool:
    ip = _address(address) if address else None
    if ip is None:
        return False
    return any(ip.version == n.version and ip in n for n in networks)


class _FlowColumns:
    """The columns of a batch the flow rules read, each string column tested once per distinct
    value (:meth:`each`)."""

    def __init__(self, batch: FlowBatch) -> None:
        self.batch = batch
        self.n = len(batch)
        self.resp_p = batch.numeric("resp_p", fill=-1, dtype=np.int64)  # -1: no port
        self._codes: dict[str, tuple[np.ndarray, list[Any]]] = {}

    def each(self, name: str, test: Callable[[Any], bool]) -> np.ndarray:
        """``test`` of column ``name``'s value of every row (bool per row)."""
        if name not in self._codes:
            enc = pc.dictionary_encode(self.batch.column(name).combine_chunks())
            values = enc.dictionary.to_pylist()
            codes = pc.fill_null(enc.indices, len(values)).to_numpy(zero_copy_only=False)
            self._codes[name] = (np.asarray(codes, np.int64), [*values, None])  # null: last
        codes, values = self._codes[name]
        table = np.fromiter((test(v) for v in values), np.bool_, len(values))
        return np.asarray(table[codes], dtype=np.bool_)


@dataclass(frozen=True)
class Rule:
    """One allowlist rule (see the module docstring for what it matches)."""

    name: str
    host: tuple[Network, ...] = ()
    peer: tuple[Network, ...] = ()
    port: tuple[int, ...] = ()
    proto: str = ""
    service: str = ""
    behaviour: str = ""
    comment: str = ""
    expires: float | None = None  # wall clock, epoch seconds
    enabled: bool = True
    origin: str = "analyst"  # default, config or analyst
    who: str = ""
    created: float = 0.0
    #: Flows of the incident it came from are kept for the next training ("mark benign").
    learn: bool = False
    incident_id: str = ""

    def active(self, now: float) -> bool:
        return self.enabled and (self.expires is None or now < self.expires)

    def _flow_tests(self) -> list[tuple[str, Callable[[Any], bool]]]:
        """The rule's flow fields as (flow column, test of one value): a flow matches when it
        passes every test, and a rule with none matches no flow."""
        tests: list[tuple[str, Callable[[Any], bool]]] = []
        if self.host:
            tests.append(("orig_h", lambda a: _in(a, self.host)))
        if self.peer:
            tests.append(("resp_h", lambda a: _in(a, self.peer)))
        if self.port:
            tests.append(("resp_p", lambda p: p in self.port))
        if self.proto:
            tests.append(("proto", lambda p: (p or "").lower() == self.proto))
        if self.service:
            tests.append(("service", lambda s: self.service in _services(s)))
        return tests

    @property
    def has_flow_fields(self) -> bool:
        return bool(self.host or self.peer or self.port or self.proto or self.service)

    def matches_flow(
        self,
        orig_h: str | None,
        resp_h: str | None,
        resp_p: int | None,
        proto: str | None,
        service: str | None,
    ) -> bool:
        flow = dict(orig_h=orig_h, resp_h=resp_h, resp_p=resp_p, proto=proto, service=service)
        tests = self._flow_tests()
        return bool(tests) and all(test(flow[name]) for name, test in tests)

    def flow_mask(self, flows: _FlowColumns) -> np.ndarray:
        """:meth:`matches_flow` of every flow of a batch at once (bool per row): the same tests,
        each run once per distinct value of its column (ports compared as numbers)."""
        mask = np.full(flows.n, self.has_flow_fields, dtype=np.bool_)
        for name, test in self._flow_tests():
            if name == "resp_p":
                mask &= np.isin(flows.resp_p, self.port)  # (-1: no port, in no rule)
            else:
                mask &= flows.each(name, test)
        return mask

    def matches_incident(
        self, host: str, role: str, peer: str, port: int, proto: str, behaviour: str
    ) -> bool:
        if self.service:
            return False
        if role == "service":  # the host is "proto/port": the service itself
            p, _, svc_port = host.partition("/")
            proto, port, host = p, int(svc_port) if svc_port.isdigit() else -1, ""
        if self.behaviour and self.behaviour.lower() != behaviour.lower():
            return False
        if self.host and not _in(host if role != "resp" else peer, self.host):
            return False
        if self.peer and not _in(peer if role != "resp" else host, self.peer):
            return False
        if self.port and port not in self.port:
            return False
        return not (self.proto and proto.lower() != self.proto)

    def describe(self) -> str:
        """What the rule matches, in a few words."""
        parts = []
        if self.behaviour:
            parts.append(self.behaviour)
        if self.proto:
            parts.append(self.proto)
        if self.service:
            parts.append(f"service {self.service}")
        if self.host:
            parts.append("from " + ", ".join(map(str, self.host)))
        if self.peer:
            parts.append("to " + ", ".join(map(str, self.peer)))
        if self.port:
            parts.append("port " + ", ".join(map(str, self.port)))
        return " ".join(parts) or "nothing"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": [str(n) for n in self.host],
            "peer": [str(n) for n in self.peer],
            "port": list(self.port),
            "proto": self.proto,
            "service": self.service,
            "behaviour": self.behaviour,
            "comment": self.comment,
            "expires": self.expires,
            "enabled": self.enabled,
            "origin": self.origin,
            "who": self.who,
            "created": self.created,
            "learn": self.learn,
            "incident_id": self.incident_id,
        }


def rule_from_dict(d: Mapping[str, Any], where: str, *, origin: str = "analyst") -> Rule:
    """A rule from plain values (a config file entry, a form, a stored row), each checked with
    an error naming ``where`` and the field."""
    unknown = set(d) - set(Rule.__dataclass_fields__)
    if unknown:
        raise InputError(
            f"{where}: unknown rule field(s) {', '.join(sorted(unknown))} "
            f"(expected some of {', '.join(RULE_FIELDS)}, comment, expires, enabled)"
        )
    name = str(d.get("name") or "").strip()
    if not _NAME.match(name):
        raise InputError(
            f"{where}.name: {name!r}: expected 1-64 letters, digits or _.:- (starting with a "
            "letter or digit)"
        )
    proto = str(d.get("proto") or "").strip().lower()
    if proto and proto not in ("tcp", "udp", "icmp"):
        raise InputError(f"{where}.proto: {proto!r}: expected tcp, udp or icmp")
    expires = d.get("expires")
    if expires in ("", None):
        expires = None
    else:
        try:
            expires = float(expires)
        except (TypeError, ValueError):
            raise InputError(f"{where}.expires: {expires!r}: expected epoch seconds") from None
    rule = Rule(
        name=name,
        host=parse_networks(d.get("host"), f"{where}.host"),
        peer=parse_networks(d.get("peer"), f"{where}.peer"),
        port=parse_ports(d.get("port"), f"{where}.port"),
        proto=proto,
        service=str(d.get("service") or "").strip().lower(),
        behaviour=str(d.get("behaviour") or "").strip(),
        comment=str(d.get("comment") or ""),
        expires=expires,
        enabled=bool(d.get("enabled", True)),
        origin=str(d.get("origin") or origin),
        who=str(d.get("who") or ""),
        created=float(d.get("created") or 0.0),
        learn=bool(d.get("learn", False)),
        incident_id=str(d.get("incident_id") or ""),
    )
    if rule.origin not in ORIGINS:
        raise InputError(f"{where}.origin: {rule.origin!r}: expected one of {', '.join(ORIGINS)}")
    if not rule.has_flow_fields and not rule.behaviour:
        raise InputError(
            f"{where}: the rule matches everything: name a host, peer, port, "
            "proto, service or behaviour"
        )
    return rule


def _default(name: str, comment: str, **fields: Any) -> Rule:
    return rule_from_dict({"name": name, "comment": comment, **fields}, name, origin="default")


#: Multicast, broadcast and link-local discovery: on unless switched off (by name).
DEFAULT_RULES: tuple[Rule, ...] = (
    _default(
        "ssdp",
        "SSDP/UPnP discovery to its multicast groups",
        proto="udp",
        port=1900,
        peer="239.255.255.250,ff02::c,ff05::c",
    ),
    _default("mdns", "multicast DNS", proto="udp", port=5353, peer="224.0.0.251,ff02::fb"),
    _default(
        "llmnr", "LLMNR name resolution", proto="udp", port=5355, peer="224.0.0.252,ff02::1:3"
    ),
    _default("dhcp", "DHCP broadcast", proto="udp", port="67,68", peer="255.255.255.255/32"),
    _default(
        "dhcpv6",
        "DHCPv6 to its multicast groups",
        proto="udp",
        port=547,
        peer="ff02::1:2,ff05::1:3",
    ),
    _default(
        "ipv6-nd",
        "ICMPv6 neighbour and router discovery, multicast listener reports (link-local)",
        proto="icmp",
        host="fe80::/10",
    ),
)


def with_defaults(rules: Iterable[Rule], disabled: Iterable[str] = ()) -> list[Rule]:
    """``rules`` after the default rules, the defaults named in ``disabled`` switched off (a
    stored rule of the same name replaces a default)."""
    off = set(disabled)
    own = list(rules)
    names = {r.name for r in own}
    defaults = [replace(r, enabled=r.name not in off) for r in DEFAULT_RULES if r.name not in names]
    return [*defaults, *own]


def load_rules_file(path: str | Path) -> list[Rule]:
    """Rules from a YAML file: a list of rule mappings, or ``{rules: [...]}``."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read allowlist rules ({exc})") from exc
    if isinstance(doc, dict):
        doc = doc.get("rules")
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise InputError(f"{path}: expected a list of rules (or rules: [...])")
    out = []
    for i, entry in enumerate(doc):
        if not isinstance(entry, dict):
            raise InputError(f"{path}: rules[{i}]: expected a mapping")
        out.append(rule_from_dict(entry, f"{path}: rules[{i}]", origin="config"))
    return out


@dataclass
class RuleSet:
    """The rules in force: stored and config rules with the defaults (see :func:`with_defaults`)."""

    rules: list[Rule] = field(default_factory=list)

    def active(self, now: float) -> list[Rule]:
        return [r for r in self.rules if r.active(now)]

    def flow_rule(
        self,
        now: float,
        orig_h: str | None,
        resp_h: str | None,
        resp_p: int | None,
        proto: str | None,
        service: str | None,
    ) -> Rule | None:
        """The first active rule matching a flow."""
        for r in self.rules:
            if r.active(now) and r.matches_flow(orig_h, resp_h, resp_p, proto, service):
                return r
        return None

    def flow_rules(self, now: float, batch: FlowBatch) -> tuple[list[Rule], np.ndarray]:
        """:meth:`flow_rule` of every flow of ``batch`` at once: the active rules, and per row
        the index of the first one matching it (-1: none)."""
        active = self.active(now)
        which = np.full(len(batch), -1, dtype=np.int64)
        if not active or not len(batch):
            return active, which
        flows = _FlowColumns(batch)
        for k, rule in enumerate(active):
            hit = (which < 0) & rule.flow_mask(flows)
            which[hit] = k
        return active, which

    def incident_rule(
        self, now: float, host: str, role: str, peer: str, port: int, proto: str, behaviour: str
    ) -> Rule | None:
        """The first active rule matching an incident."""
        for r in self.rules:
            if r.active(now) and r.matches_incident(host, role, peer, port, proto, behaviour):
                return r
        return None
