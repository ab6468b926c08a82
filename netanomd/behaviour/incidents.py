"""Incidents: detections and flow alerts grouped into what an analyst acts on.

Owns :class:`Incident` and :class:`IncidentTracker`. An incident is keyed by (role, host,
behaviour family, detail): the detail is the peer and service for brute force and beaconing, the
service for floods, nothing for scans, exfiltration and unusual activity, so a scan seen in
1-minute, 10-minute and hourly windows is one incident. Detections with an open incident's key
update it (last seen, counts, peers, ports, uids); an incident closes once flow time has gone
``quiet`` seconds past its last detection, plus the widest window it was detected in (the clock
is the flow time passed in, never the wall clock); a detection that finds the incident closed by
a later clock than its own time, but not yet quiet at it, reopens it. Each incident carries a
title in an analyst's words, a calibrated severity and its evidence as numbers.

Severity (0-99, ECS ``event.severity``; labels: 0 low, 40 medium, 70 high, 90 critical) is the
behaviour's base plus 10 per order of magnitude of evidence, ``base + round(10 * log10(s))``,
where ``s`` is the strongest detection's value over its learned limit (and, for a scan, also
its targets / :data:`SCAN_FANOUT_UNIT`), at most 99, so it only grows with the evidence:

=====================================================  ====  ==================================
behaviour                                              base  e.g.
=====================================================  ====  ==================================
scan (horizontal, vertical, inbound), repeated failed    47  scan of 100 targets: 60 (medium);
connections                                                  1,000 targets: 70 (high); C&C
                                                             retried 240 times: 61 (medium)
brute force, flood, beaconing, exfiltration              73  12x the limit: 84; 142x: 95
unusual activity, anomalous flows (flow alerts)          21  47 (medium) from 3x the limit
=====================================================  ====  ==================================

:func:`members` says which flows of a batch belong to each of many incidents (the batch's columns
read once for all of them; :meth:`Incident.members` for one): the host in its role, inside the
incident's windows, and matching the behaviour (the probes of a scan, the flows to the
brute-forced service, ...). Flow alerts of a detector (Isolation Forest) are grouped per
originator by :meth:`IncidentTracker.add_flow_alerts`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import count, repeat
from typing import Any, NamedTuple, cast

import numpy as np
import pyarrow.compute as pc

from netanomd.behaviour import reasons
from netanomd.behaviour.table import Table
from netanomd.behaviour.windows import (
    MULTICAST,
    PROBE_KINDS,
    SHORT_BYTES,
    probe_mask,
    unanswered_mask,
)
from netanomd.flow import FlowBatch

#: Behaviour -> (family used in the key, base severity 0-100 as in ECS event.severity).
BEHAVIOURS: dict[str, tuple[str, int]] = {
    "horizontal scan": ("scan", 47),
    "vertical scan": ("scan", 47),
    "scan": ("scan", 47),
    "inbound scan": ("scan", 47),
    "brute force": ("brute force", 73),
    "inbound brute force": ("brute force", 73),
    "SYN flood": ("flood", 73),
    "UDP flood": ("flood", 73),
    "TCP flood": ("flood", 73),
    "ICMP flood": ("flood", 73),
    "beaconing": ("beaconing", 73),
    "repeated failed connections": ("failed connections", 47),
    "exfiltration": ("exfiltration", 73),
    "unusual activity": ("unusual activity", 21),
    "anomalous flows": ("anomalous flows", 21),
}
#: The behaviour of the incidents that group flow alerts per originator.
FLOW_ALERTS = "anomalous flows"
#: Families judged on one (host, peer, service) pair: they share an incident for that pair.
PAIR_FAMILIES = ("brute force", "failed connections", "flood", "beaconing")
SEVERITY_LABELS = ((90, "critical"), (70, "high"), (40, "medium"), (0, "low"))
#: A scan's fan-out counts as evidence in units of this many (host, port) targets: a confirmed
#: scan of 1,000 targets (2.3 orders of magnitude) is "high" whatever its learned limit.
SCAN_FANOUT_UNIT = 5.0
SAMPLE_UIDS = 10
#: How many of its busiest peers an incident reports (``top_peers``).
TOP_PEERS = 5
#: What an incident reports (:meth:`Incident.reported`, :meth:`Incident.to_dict`), in order.
REPORTED = (
    "id",
    "role",
    "host",
    "behaviour",
    "detail",
    "title",
    "severity",
    "severity_label",
    "score",
    "first_seen",
    "last_seen",
    "flows",
    "detections",
    "peer",
    "port",
    "proto",
    "top_peers",
    "uids",
    "community_ids",
    "evidence",
    "closed",
)


class _Detection(NamedTuple):
    """One detection row as the tracker reads it (:data:`DETECTION_COLUMNS` names; a flow
    alert is one too, :func:`_alert_rows`): a tuple built straight from the columns. The
    evidence (:data:`EVIDENCE`) comes last."""

    role: str
    host: str
    behaviour: str
    detail: str
    peer: str
    port: int
    proto: str
    start: float
    end: float
    first_ts: float
    last_ts: float
    uids: list[str]
    community_ids: list[str]
    flows: float
    unanswered: float
    peers: float
    ports: float
    targets: float
    bytes_out: float
    bytes_in: float
    value: float
    threshold: float
    score: float
    scale: float
    period: float
    probe_udp1: float
    probe_syn: float
    probe_echo: float


#: The numbers the strongest detection of an incident gives it as evidence, in this order (the
#: last fields of a detection row).
EVIDENCE = _Detection._fields[_Detection._fields.index("flows") :]
assert EVIDENCE[-len(PROBE_KINDS) :] == PROBE_KINDS
_EVIDENCE_AT = len(_Detection._fields) - len(EVIDENCE)


def severity_label(severity: int) -> str:
    for floor, label in SEVERITY_LABELS:
        if severity >= floor:
            return label
    return SEVERITY_LABELS[-1][1]


def severity_of(behaviour: str, score: float, targets: float = 0.0) -> int:
    """The severity mapping (module docstring): the behaviour's base, plus 10 per order of
    magnitude of evidence (how far past the learned limit; for a scan also its fan-out in units
    of :data:`SCAN_FANOUT_UNIT` targets), at most 99. Monotone in ``score`` and ``targets``."""
    family, base = BEHAVIOURS.get(behaviour, (behaviour, 21))
    if base < 47:  # what no named behaviour explains: medium only far past its limit
        return 47 if score >= 3.0 else base
    strength = max(score, 1.0)
    if family == "scan":
        strength = max(strength, targets / SCAN_FANOUT_UNIT)
    return min(99, base + round(10.0 * float(np.log10(strength))))


@dataclass
class Incident:
    """One incident (see the module docstring). Numbers stay numbers in :attr:`evidence`."""

    id: int
    role: str
    host: str
    behaviour: str
    detail: str
    first_seen: float
    last_seen: float
    span_start: float  # window bounds covering every detection
    span_end: float
    peer: str = ""
    port: int = -1
    proto: str = ""
    detections: int = 0
    score: float = 0.0
    flows_by_scale: dict[float, float] = field(default_factory=dict)
    evidence: dict[str, float] = field(default_factory=dict)
    top_peers: Counter[str] = field(default_factory=Counter)
    uids: list[str] = field(default_factory=list)
    community_ids: list[str] = field(default_factory=list)
    #: The uids of the flow alerts the latest batch put into it, every one (``uids`` is a
    #: sample): set by the stream, linked by the sinks, so an incident's flow alerts can all be
    #: found (``netanomd alerts --incident``).
    alert_uids: list[str] = field(default_factory=list)
    #: The uids of flow alerts that left it with the latest batch (a named incident that opened
    #: later covers them; set by the stream): the sinks unlink them from it.
    released_uids: list[str] = field(default_factory=list)
    #: Every flow alert it held went to named incidents: it is no incident any more (the sinks
    #: drop it).
    retracted: bool = False
    closed: bool = False
    #: Severity floor set by Suricata signatures on its flows (netanomd.behaviour.signed).
    signature_floor: int = 0

    @property
    def family(self) -> str:
        return BEHAVIOURS.get(self.behaviour, (self.behaviour, 21))[0]

    @property
    def flows(self) -> int:
        return int(max(self.flows_by_scale.values(), default=0.0))

    @property
    def severity(self) -> int:
        """Calibrated 0-99 (ECS ``event.severity``); see :func:`severity_of`. A Suricata
        signature that fired on one of its flows sets a floor (:attr:`signature_floor`)."""
        evidence = severity_of(self.behaviour, self.score, self.evidence.get("targets", 0.0))
        return min(max(evidence, self.signature_floor), 99)

    @property
    def title(self) -> str:
        e = self.evidence
        h = self.host
        span = reasons.duration(self.last_seen - self.first_seen)
        flows = self.flows
        if self.family == "scan":
            return self._scan_title(span)
        svc = reasons.service_name(self.proto, self.port) if self.port >= 0 else self.detail
        if self.family in ("brute force", "flood") and self.role != "service":
            target = f"{svc} on {self.peer}" if self.role == "orig" else f"its {svc}"
            verb = "opened" if self.role == "orig" else "received"
            unans = reasons.share(e.get("unanswered", 0.0), e.get("flows", 0.0))
            return (
                f"{h} {verb} {flows:,} connections to {target} in {span} "
                f"({unans} unanswered; learned limit {e.get('threshold', 0):,.0f} per "
                f"{reasons.duration(e.get('scale', 0))})"
            )
        if self.family == "flood":
            return (
                f"{self.behaviour} on {self.detail}: {flows:,} flows from "
                f"{int(e.get('peers', 0)):,} sources in {span}"
            )
        if self.family == "failed connections":
            unans = reasons.share(e.get("unanswered", 0.0), e.get("flows", 0.0))
            return (
                f"{h} tried {svc} on {self.peer} {flows:,} times in {span}; "
                f"{unans} unanswered in its busiest {reasons.duration(e.get('scale', 0))}"
            )
        if self.family == "beaconing":
            return (
                f"{h} contacts {self.peer} on {svc} every "
                f"{reasons.duration(e.get('period', 0))} ({flows:,} times in {span}, "
                f"regularity {e.get('value', 0):.2f})"
            )
        if self.family == "exfiltration":
            return (
                f"{h} sent {reasons.amount(e.get('bytes_out', 0))} out in {span}, "
                f"{e.get('score', 0):.1f}x the learned limit "
                f"(received {reasons.amount(e.get('bytes_in', 0))})"
            )
        if self.family == "anomalous flows":
            many = reasons.plural(flows, "anomalous flow")
            return f"{h}: {many} in {span} (top score {self.score:.3f})"
        feature = self.detail or "activity"
        return (
            f"{h} ({self.role}): unusual {feature.replace('_', ' ')}: "
            f"{e.get('value', 0):,.0f} in {reasons.duration(e.get('scale', 0))} vs a "
            f"learned limit of {e.get('threshold', 0):,.0f}"
        )

    def _scan_title(self, span: str) -> str:
        # Distinct hosts and ports are those of the busiest window: say which when the
        # incident lasted longer than it.
        e = self.evidence
        flows, unans = e.get("flows", 0.0), e.get("unanswered", 0.0)
        answered = {"all": "none answered", "none": "all answered"}.get(
            reasons.share(unans, flows), f"{reasons.share(unans, flows)} unanswered"
        )
        scale = e.get("scale", 0.0)
        when = f"in {span}"
        if self.last_seen - self.first_seen > scale > 0:
            when = f"in {reasons.duration(scale)} ({span} in all)"
        peers = reasons.plural(int(e.get("peers", 0)), "host")
        ports = reasons.plural(int(e.get("ports", 0)), "port")
        if self.role == "resp":
            sources = reasons.plural(int(e.get("peers", 0)), "source")
            return f"{self.host} was probed by {sources} on {ports} {when}; {answered}"
        kinds = {k: e.get(k, 0.0) for k in PROBE_KINDS}
        kind, count = max(kinds.items(), key=lambda kv: kv[1])
        dominant = count > 0 and count >= 0.5 * e.get("targets", 0.0)
        if dominant and kind == "probe_echo":
            return f"{self.host} pinged {peers} {when}; {answered}"
        what = "probed"
        if dominant:
            what = {"probe_udp1": "sent one-packet UDP to", "probe_syn": "sent lone SYNs to"}[kind]
        return f"{self.host} {what} {peers} on {ports} {when}; {answered}"

    def reported(self) -> tuple[Any, ...]:
        """What an incident reports, in :data:`REPORTED` order: its title and severity worked
        out once, its lists and evidence copied (what :meth:`to_dict` and the stores take)."""
        severity = self.severity
        return (
            self.id,
            self.role,
            self.host,
            self.behaviour,
            self.detail,
            self.title,
            severity,
            severity_label(severity),
            self.score,
            self.first_seen,
            self.last_seen,
            self.flows,
            self.detections,
            self.peer,
            self.port,
            self.proto,
            self.top_peers.most_common(TOP_PEERS),
            list(self.uids),
            list(self.community_ids),
            dict(self.evidence),
            self.closed,
        )

    def to_dict(self) -> dict[str, Any]:
        """A plain dict for sinks (JSON-ready): :meth:`reported` by name."""
        return dict(zip(REPORTED, self.reported(), strict=True))

    def members(self, batch: FlowBatch) -> np.ndarray:
        """Which flows of ``batch`` belong to this incident (bool per row); for many incidents
        at once, :func:`members`."""
        return members([self], batch)[0]


class _Rows:
    """The columns of a batch that membership reads, each read (and each mask computed) once
    for all the incidents asked about. Addresses and protocols are coded once; a host's rows
    (or an originator-responder pair's) are found by comparing codes for a few incidents, and
    through one sort of the batch by them for many, so an incident costs a lookup and what its
    own rows cost."""

    def __init__(self, batch: FlowBatch) -> None:
        self.batch = batch
        self.n = len(batch)
        self.ts = batch.numeric("ts")
        self.end = self.ts + np.maximum(batch.numeric("duration"), 0.0)
        self.resp_p = batch.numeric("resp_p", fill=-1)
        self._codes: dict[str, tuple[dict[str, int], np.ndarray]] = {}
        self._values: dict[str, Any] = {}  # column -> its distinct values (a pyarrow array)
        self._rows_of: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # (rows by code, cuts)
        self._masks: dict[str, np.ndarray] = {}
        self._protos: tuple[dict[str, int], np.ndarray] | None = None
        self._lookups: dict[str, int] = {}  # hosts looked up by comparison, per column
        self._pairs: tuple[np.ndarray, int] | None = None
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None

    def _index(self, col: str) -> tuple[dict[str, int], np.ndarray]:
        """(address -> its code, code per row; -1: null)."""
        if col not in self._codes:
            enc = pc.dictionary_encode(self.batch.column(col).combine_chunks())
            codes = np.asarray(
                pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64
            )
            self._codes[col] = ({v: k for k, v in enumerate(enc.dictionary.to_pylist())}, codes)
            self._values[col] = enc.dictionary
        return self._codes[col]

    def of_host(self, col: str, host: str) -> np.ndarray:
        """The rows of address ``host`` in column ``col`` (ascending): by a comparison for the
        first :data:`FEW_LOOKUPS` hosts, then from one sort of the codes."""
        names, codes = self._index(col)
        code = names.get(host)
        if code is None:
            return _NO_ROWS
        rows = self._rows_of.get(col)
        if rows is None:
            self._lookups[col] = self._lookups.get(col, 0) + 1
            if self._lookups[col] <= FEW_LOOKUPS:
                return np.flatnonzero(codes == code)
            order = np.argsort(codes, kind="stable")
            cuts = np.searchsorted(codes[order], np.arange(len(names) + 1))
            rows = self._rows_of[col] = (order, cuts)
        order, cuts = rows
        return order[cuts[code] : cuts[code + 1]]

    def proto_is(self, proto: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Per row (of ``rows``, default all): is its proto ``proto`` (a null proto is ``""``)."""
        names, codes = self._proto_codes()
        return np.asarray((codes if rows is None else codes[rows]) == names.get(proto, -1))

    def _proto_codes(self) -> tuple[dict[str, int], np.ndarray]:
        if self._protos is None:
            col = self.batch.column("proto").fill_null("").combine_chunks()
            enc = pc.dictionary_encode(col)
            codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
            self._protos = ({v: k for k, v in enumerate(enc.dictionary.to_pylist())}, codes)
        return self._protos

    def pair_rows(self, incidents: list[Incident]) -> list[np.ndarray]:
        """For incidents of an originator about one service of one peer (brute force,
        beaconing...): each one's rows from its host to its peer on its port and proto inside
        its span (ascending), all of them found at once: by a comparison of each row's
        (originator, responder) for up to :data:`FEW_LOOKUPS` incidents, else from one sort of
        the batch by the two."""
        if not incidents:
            return []
        hosts, peers = self._index("orig_h")[0], self._index("resp_h")[0]
        protos, proto_codes = self._proto_codes()
        pair, width = self._pair_codes()
        want = np.full(len(incidents), -2, dtype=np.int64)  # -2: no row's
        for k, inc in enumerate(incidents):
            orig, resp = hosts.get(inc.host), peers.get(inc.peer)
            if orig is not None and resp is not None and inc.proto in protos:
                want[k] = orig * width + resp
        if len(incidents) <= FEW_LOOKUPS:
            found = [np.flatnonzero(pair == w) if w >= 0 else _NO_ROWS for w in want.tolist()]
            counts = np.array([len(f) for f in found], dtype=np.int64)
            rows = np.concatenate(found)
        else:
            keys, order = self._sorted_pairs()
            lo = np.searchsorted(keys, want, side="left")
            counts = np.searchsorted(keys, want, side="right") - lo
            at = np.repeat(lo - (np.cumsum(counts) - counts), counts) + np.arange(counts.sum())
            rows = order[at]
        if not rows.size:
            return [_NO_ROWS] * len(incidents)
        owner = np.repeat(np.arange(len(incidents)), counts)
        port = np.array([float(i.port) for i in incidents])
        proto = np.array([protos.get(i.proto, -1) for i in incidents], dtype=np.int64)
        start = np.array([i.span_start for i in incidents], dtype=np.float64)
        end = np.array([i.span_end for i in incidents], dtype=np.float64)
        keep = (self.resp_p[rows] == port[owner]) & (proto_codes[rows] == proto[owner])
        keep &= (self.end[rows] >= start[owner]) & (self.ts[rows] < end[owner])
        rows, owner = rows[keep], owner[keep]
        cuts = np.searchsorted(owner, np.arange(len(incidents) + 1)).tolist()
        return [rows[cuts[k] : cuts[k + 1]] for k in range(len(incidents))]

    def _pair_codes(self) -> tuple[np.ndarray, int]:
        """Each row's (originator, responder) as one number (-1: either is null, no
        incident's), and the responder codes' width."""
        if self._pairs is None:
            orig, resp = self._index("orig_h")[1], self._index("resp_h")[1]
            width = len(self._index("resp_h")[0]) + 1
            pair = orig * width + resp
            pair[(orig < 0) | (resp < 0)] = -1
            self._pairs = (pair, width)
        return self._pairs

    def _sorted_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_pair_codes` sorted (stable: rows ascending within a pair), and the rows in
        that order."""
        if self._sorted is None:
            pair = self._pair_codes()[0]
            order = np.argsort(pair, kind="stable")
            self._sorted = (pair[order], order)
        return self._sorted

    def mask(self, name: str) -> np.ndarray:
        """A per-row mask: "multicast" (to a multicast group), "probe", "unanswered"."""
        if name not in self._masks:
            if name == "multicast":  # (tested on the distinct responders; a null is not)
                _, codes = self._index("resp_h")
                group = pc.match_substring_regex(self._values["resp_h"], MULTICAST)
                table = np.append(np.asarray(group.to_numpy(zero_copy_only=False), bool), False)
                self._masks[name] = table[codes]
            elif name == "unanswered":
                self._masks[name] = unanswered_mask(self.batch)
            else:
                self._masks[name] = probe_mask(self.batch, self.mask("unanswered"))
        return self._masks[name]


#: Hosts (or originator-peer pairs) a batch's rows are found for by comparing every row; for
#: more, the batch is sorted once (a comparison costs a few microseconds, a sort a few hundred).
FEW_LOOKUPS = 32

#: No rows (shared: row numbers are only read).
_NO_ROWS = np.zeros(0, dtype=np.int64)


def _coded_strings(batch: FlowBatch, col: str) -> tuple[Any, np.ndarray]:
    """A string column's distinct values (a pyarrow array) and each row's index into them
    (null: one past the last)."""
    enc = pc.dictionary_encode(batch.column(col).combine_chunks())
    values = enc.dictionary
    codes = pc.fill_null(enc.indices, len(values)).to_numpy(zero_copy_only=False)
    return values, np.asarray(codes, dtype=np.int64)


def members(incidents: list[Incident], batch: FlowBatch) -> list[np.ndarray]:
    """Which flows of ``batch`` belong to each of ``incidents`` (a bool mask per incident, in
    order): the host in its role, inside the incident's windows, and matching the behaviour
    (module docstring). The batch's columns are read once for all of them."""
    out = []
    for rows in _member_rows(incidents, batch):
        mask = np.zeros(len(batch), dtype=np.bool_)
        mask[rows] = True
        out.append(mask)
    return out


def covered(
    incidents: Iterable[Incident],
    batch: FlowBatch,
    parts: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Which flows of ``batch`` belong to at least one of ``incidents`` (one bool mask; the
    batch's columns read once for all of them, no mask per incident).

    With ``parts`` = ``(starts, applies)``, the batch is several batches end to end (part
    ``k``'s first row is ``starts[k]``, ascending from 0) and incident ``i`` is asked about
    the parts where ``applies[i, k]`` holds only: one pass for what one call per part, each
    with its own incidents, would give."""
    incidents = list(incidents)
    mask = np.zeros(len(batch), dtype=np.bool_)
    for i, rows in enumerate(_member_rows(incidents, batch)):
        if parts is not None and rows.size:
            starts, applies = parts
            if not applies[i].all():
                rows = rows[applies[i][np.searchsorted(starts, rows, side="right") - 1]]
        mask[rows] = True
    return mask


def _member_rows(incidents: list[Incident], batch: FlowBatch) -> Iterator[np.ndarray]:
    """The rows of ``batch`` (indices) that belong to each of ``incidents``, in order."""
    if not incidents:
        return
    f = _Rows(batch)
    kinds = [_kind(inc) for inc in incidents]
    paired = [
        i for i, (_, pair, col) in zip(incidents, kinds, strict=True) if pair and col == "orig_h"
    ]
    of_pairs = iter(f.pair_rows(paired))
    for inc, (family, pair, col) in zip(incidents, kinds, strict=True):
        if pair and col == "orig_h":
            yield next(of_pairs)  # (in its span already)
            continue
        if col is not None:
            rows = f.of_host(col, inc.host)
        else:  # service role: host is "proto/port"
            p, _, port = inc.host.partition("/")
            rows = np.flatnonzero(f.proto_is(p))
            icmp = f.proto_is("icmp", rows)
            svc_port = np.where(
                icmp,
                f.batch.take(rows).numeric("orig_p", fill=-1),
                f.resp_p[rows],
            )
            rows = rows[svc_port == int(port)]
        if not rows.size:  # (most open incidents, for a batch's alerts)
            yield rows
            continue
        keep = (f.end[rows] >= inc.span_start) & (f.ts[rows] < inc.span_end)
        if inc.role != "orig":  # as the windows: multicast flows count for their sender only
            keep &= ~f.mask("multicast")[rows]
        if family == "scan":
            keep &= f.mask("probe")[rows]
        elif pair:
            keep &= (f.resp_p[rows] == inc.port) & f.proto_is(inc.proto, rows)
        elif family == "exfiltration":  # the flows that carried the bytes out
            sub = f.batch.take(rows)
            ob, rb = sub.numeric("orig_bytes"), sub.numeric("resp_bytes")
            keep &= (ob >= SHORT_BYTES) & (ob >= 4.0 * rb)
        elif family == "unusual activity" and inc.detail == "unanswered":
            keep &= f.mask("unanswered")[rows]
        yield rows[keep]


def _kind(inc: Incident) -> tuple[str, bool, str | None]:
    """(family, whether its flows are those to one service, the column its host is in: None
    for a service)."""
    family = inc.family
    pair = family in ("brute force", "beaconing", "failed connections") or (
        family == "flood" and inc.role != "service"
    )  # the flows to one service (of one peer, for an originator)
    return family, pair, {"orig": "orig_h", "resp": "resp_h"}.get(inc.role)


class IncidentTracker:
    """Open and closed incidents; feed detections (and flow alerts) in flow-time order."""

    def __init__(self, quiet: float = 1800.0) -> None:
        if quiet <= 0:
            raise ValueError("quiet must be > 0 seconds")
        self.quiet = float(quiet)
        self.open: dict[tuple[str, str, str, str], Incident] = {}
        self.closed: list[Incident] = []
        #: Per key, the incident that closed last: a later detection of activity it already
        #: covers (the same flows seen by a wider window) reopens it.
        self._last_closed: dict[tuple[str, str, str, str], Incident] = {}
        self._ids = count(1)
        #: No open incident goes quiet before this flow time (a lower bound, lowered whenever
        #: an incident opens or shrinks): :meth:`tick` looks at them all only past it.
        self._due = float("inf")

    def all(self) -> list[Incident]:
        return [*self.closed, *self.open.values()]

    def update(self, detections: Table, now: float, *, tick: bool = True) -> list[Incident]:
        """Merge detections known at flow time ``now``; returns the incidents opened or changed
        by them. Without ``tick``, quiet incidents are left open (the caller ticks)."""
        # in the order the windows closed (one window end after another), as a stream cut into
        # small batches would merge them
        if not len(detections):  # most batches close no window
            return self._merge_all([], now, tick=tick)
        end = detections["end"]
        if len(end) > 1 and (np.diff(end) < 0).any():
            detections = detections.take(np.argsort(end, kind="stable"))
        columns = (detections[c].tolist() for c in _Detection._fields)
        return self._merge_all(map(_Detection._make, zip(*columns, strict=True)), now, tick=tick)

    def _merge_all(
        self,
        detections: Iterable[_Detection],
        now: float,
        placed: list[Incident] | None = None,
        *,
        tick: bool = True,
    ) -> list[Incident]:
        """:meth:`update` on detection rows; each row's incident is appended to ``placed`` if
        given."""
        changed: dict[int, Incident] = {}
        for d in detections:
            behaviour = str(d.behaviour)
            family = BEHAVIOURS.get(behaviour, (behaviour, 21))[0]
            detail = str(d.detail)
            if d.role == "resp" and family in ("brute force", "flood"):
                detail = f"{d.proto}/{int(d.port)}"
            # One incident per host and peer service, whatever the pair did (retries, then a
            # burst): the strongest detection names it.
            group = "pair" if family in PAIR_FAMILIES and d.role != "service" else family
            key = (str(d.role), str(d.host), group, detail)
            # an incident quiet for long enough by the row's own time is over, whenever the
            # stream last ticked (so the grouping does not depend on the batch size)
            at = min(float(d.end), now)  # a window closed early (flush) is known now
            inc = self._live(key, at, float(d.first_ts))
            scan = self._live((key[0], key[1], "scan", ""), at, float(d.first_ts))
            # A scanner hammering one port with probes is still the scan (its flows counted
            # there); persistent retries of one peer (a C&C) stay an incident of their own.
            retry = family == "brute force" and d.unanswered >= 0.5 * d.flows
            if inc is None and scan is not None and retry:
                self._extend(scan, d)
                changed[scan.id] = scan
                if placed is not None:
                    placed.append(scan)
                continue
            if inc is None:
                inc = Incident(
                    id=next(self._ids),
                    role=key[0],
                    host=key[1],
                    behaviour=behaviour,
                    detail=detail,
                    first_seen=float(d.first_ts),
                    last_seen=float(d.last_ts),
                    span_start=float(d.start),
                    span_end=float(d.end),
                    peer=str(d.peer),
                    port=int(d.port),
                    proto=str(d.proto),
                )
                self.open[key] = inc
                self._due = min(self._due, self._deadline(inc))
            self._merge(inc, d, behaviour)
            changed[inc.id] = inc
            if placed is not None:
                placed.append(inc)
        if tick:
            self.tick(now)
        return list(changed.values())

    def _live(self, key: tuple[str, str, str, str], now: float, since: float) -> Incident | None:
        """The incident of ``key`` for activity from ``since`` known at ``now``: the open one,
        closed first if it has been quiet at ``now``; the last closed one reopened if it
        already covers that activity, or if it was not yet quiet at ``now`` (a tick closed it
        by a clock past ``now``: the latest flow end runs ahead of flows still arriving, e.g.
        in a log sorted by start time), so where the stream's batches end (and so its ticks)
        does not change the grouping."""
        inc = self.open.get(key)
        if inc is not None and self._quiet(inc, now):
            self._close(key)
            inc = None
        last = self._last_closed.get(key)
        if (
            inc is None
            and last is not None
            and (since <= last.last_seen or not self._quiet(last, now))
        ):
            del self._last_closed[key]
            self.closed = [c for c in self.closed if c is not last]
            last.closed = False
            self.open[key] = inc = last
            self._due = min(self._due, self._deadline(inc))
        return inc

    def over(self, inc: Incident, now: float) -> bool:
        """Whether ``inc`` is over for activity known from flow time ``now`` on: it closed, and
        is quiet at ``now`` (no later detection reopens it as still going)."""
        return inc.closed and self._quiet(inc, now)

    def seal(self, inc: Incident) -> None:
        """No later detection reopens ``inc`` (its caller no longer keeps what rebuilds it)."""
        self._last_closed = {k: v for k, v in self._last_closed.items() if v is not inc}

    def _close(self, key: tuple[str, str, str, str]) -> Incident:
        inc = self.open.pop(key)
        inc.closed = True
        self.closed.append(inc)
        self._last_closed[key] = inc
        return inc

    def _quiet(self, inc: Incident, now: float) -> bool:
        return now - inc.last_seen > self.quiet + max(inc.flows_by_scale, default=0.0)

    def _deadline(self, inc: Incident) -> float:
        """The flow time past which ``inc`` is quiet (:meth:`_quiet`), give or take rounding."""
        return inc.last_seen + self.quiet + max(inc.flows_by_scale, default=0.0)

    @staticmethod
    def _extend(inc: Incident, d: _Detection) -> None:
        """The detection is part of ``inc``: its time and representative flows, not its counts."""
        inc.first_seen = min(inc.first_seen, float(d.first_ts))
        inc.last_seen = max(inc.last_seen, float(d.last_ts))
        inc.span_start = min(inc.span_start, float(d.start))
        inc.span_end = max(inc.span_end, float(d.end))
        inc.detections += 1
        _sample(inc.uids, d.uids)
        _sample(inc.community_ids, d.community_ids)

    def _merge(self, inc: Incident, d: _Detection, behaviour: str) -> None:
        self._extend(inc, d)
        scale = float(d.scale)
        inc.flows_by_scale[scale] = inc.flows_by_scale.get(scale, 0.0) + float(d.flows)
        score = float(d.score)
        if score > inc.score:  # the strongest detection (first, smallest window on a tie) speaks
            inc.score = score
            inc.behaviour = behaviour
            numbers = cast("tuple[float, ...]", d[_EVIDENCE_AT:])
            inc.evidence = dict(zip(EVIDENCE, map(float, numbers), strict=True))
        if d.peer:  # the same flows show in every window scale: keep the largest count
            peer = str(d.peer)
            inc.top_peers[peer] = max(inc.top_peers[peer], int(d.flows))

    def add_flow_alerts(
        self,
        alerts: FlowBatch,
        scores: np.ndarray,
        now: float,
        placed: list[Incident] | None = None,
    ) -> list[Incident]:
        """Group flow alerts (e.g. Isolation Forest) per originator into incidents (appended to
        ``placed``, alert by alert, if given)."""
        if len(alerts) == 0:
            return []
        return self._merge_all(_alert_rows(alerts, scores), now, placed)

    def regroup(self, inc: Incident, alerts: FlowBatch, scores: np.ndarray) -> bool:
        """Rebuild the flow-alert incident ``inc`` in place from ``alerts`` (the ones it keeps, in
        arrival order), as if the others had never been in it; with none left it is forgotten.
        Returns whether it still exists."""
        records = list(_alert_rows(alerts, scores)) if len(alerts) else []
        if not records:
            self.open = {k: v for k, v in self.open.items() if v is not inc}
            self.closed = [c for c in self.closed if c is not inc]
            self._last_closed = {k: v for k, v in self._last_closed.items() if v is not inc}
            return False
        d = records[0]
        inc.first_seen = inc.last_seen = float(d.first_ts)
        inc.span_start, inc.span_end = float(d.start), float(d.end)
        inc.detections, inc.score = 0, 0.0
        inc.flows_by_scale, inc.evidence, inc.top_peers = {}, {}, Counter()
        inc.uids, inc.community_ids = [], []
        for d in records:
            self._merge(inc, d, "anomalous flows")
        self._due = min(self._due, self._deadline(inc))
        return True

    def tick(self, now: float) -> list[Incident]:
        """Close incidents quiet for longer than :attr:`quiet` past the windows that could still
        report them (an incident seen only in hourly windows is confirmed once an hour); returns
        those closed now."""
        if now < self._due - 1.0:  # (a second's margin for rounding)
            return []
        done = [k for k, inc in self.open.items() if self._quiet(inc, now)]
        closed = [self._close(k) for k in done]
        self._due = min(map(self._deadline, self.open.values()), default=float("inf"))
        return closed


def _sample(kept: list[str], new: list[str]) -> None:
    """Add to ``kept`` those of ``new`` it lacks, in order, until it holds
    :data:`SAMPLE_UIDS`."""
    room = SAMPLE_UIDS - len(kept)
    for item in new:
        if room <= 0:
            return
        if item not in kept:
            kept.append(item)
            room -= 1


def _alert_rows(alerts: FlowBatch, scores: np.ndarray) -> Iterator[_Detection]:
    """Flow alerts as detection rows of "anomalous flows" (built from the batch's columns)."""
    t = alerts.table
    n = len(alerts)
    ts = alerts.numeric("ts")
    start = ts.tolist()
    score = np.asarray(scores, dtype=np.float64).tolist()
    cids = t.column("community_id").to_pylist()
    columns = {
        "role": repeat("orig", n),
        "host": t.column("orig_h").to_pylist(),
        "behaviour": repeat(FLOW_ALERTS, n),
        "detail": repeat("", n),
        "peer": t.column("resp_h").to_pylist(),
        "port": repeat(-1, n),
        "proto": repeat("", n),
        "start": start,
        "end": (ts + np.maximum(alerts.numeric("duration"), 0.0) + 1e-6).tolist(),
        "first_ts": start,
        "last_ts": start,
        "uids": [[uid] for uid in t.column("uid").to_pylist()],
        "community_ids": [[cid] if cid else [] for cid in cids],
        "flows": repeat(1.0, n),
        "unanswered": repeat(0.0, n),
        "peers": repeat(1.0, n),
        "ports": repeat(1.0, n),
        "targets": repeat(1.0, n),
        "bytes_out": repeat(0.0, n),
        "bytes_in": repeat(0.0, n),
        "value": score,
        "threshold": repeat(1.0, n),
        "score": score,
        "scale": repeat(0.0, n),
        "period": repeat(0.0, n),
        **{k: repeat(0.0, n) for k in PROBE_KINDS},
    }
    return map(_Detection._make, zip(*(columns[c] for c in _Detection._fields), strict=True))
