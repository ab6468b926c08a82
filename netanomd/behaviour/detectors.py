"""Behaviour detectors that name what they see, with thresholds learned from a training window.

Owns :class:`Thresholds` (learned by :func:`fit`, saved as plain arrays by
:meth:`Thresholds.to_arrays` for an ``.npz`` without pickle) and :func:`detect`, which turns the
closed windows of :class:`~netanomd.behaviour.windows.HostWindows` into named detections:

===========================  ===================================================================
behaviour                    evidence (in a window of 1 min, 10 min or 1 h)
===========================  ===================================================================
horizontal / vertical scan,  one originator's probes (unanswered, reset without payload, ICMP
scan                         echo) reach many (host, port) targets it never contacted before:
                             mostly many hosts, mostly many ports, or both
inbound scan                 one responder probed by many distinct sources
brute force                  many short TCP connections (< 10 kB each way) from one host to one
                             service of one peer, more than that service ever saw in training;
                             ``inbound brute force``: to one local service from many sources
repeated failed connections  one peer and TCP port retried for most of a 10-min+ window, mostly
                             unanswered (a dead or flaky C&C, a blocked service); or 20+
                             attempts a minute, 90% of them unanswered or refused, under
                             the service's brute-force limit
SYN / UDP / ICMP flood       100+ flows to one peer and port at 10+ per second, 90% unanswered
                             (TCP); or one service reached by 100+ distinct sources (spoofed)
beaconing                    short flows to one peer and port at regular intervals over half a
                             10-min or 1-h window (multicast and training's own beacons excepted)
exfiltration                 bytes sent above the learned limit and 4x the bytes received
unusual activity             flows, unanswered, new peers, peers or ports at ``anomaly_factor``
                             times a learned limit, explained by no named behaviour
===========================  ===================================================================

How limits are learned (no labels): for every (scale, role, feature) the per-host maximum over
the training windows is taken, then the ``quantile`` of those maxima across hosts, times
``margin``, never below the feature's floor (:func:`floors_at`: the least value at which the
behaviour can mean anything). Named behaviours use this *population* limit only, so a host that
attacked during an unlabeled training window cannot teach that its attack is normal; "unusual
activity" also respects each busy training host's own maximum (a resolver, a proxy). Brute-force
limits are learned per service (``tcp/22``) from its busiest pair; a service never used in
training falls back to the floor. Beaconing needs a regularity above the ``quantile`` of the
training pairs'; a host's periodic use of a service already regular in training is known, and
so is anyone's periodic use of a service that training saw used regularly with a pool of
:data:`POOL_PEERS` or more servers (clocks and resolvers, learned, not a port list). Floods
and repeated failed connections are defined, not learned: the training window may hold them.

Operator knobs (stored with the thresholds): ``quantile`` and ``margin`` (higher: fewer, surer
incidents), ``anomaly_factor`` (how far past a limit "unusual activity" needs to be).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from netanomd.behaviour.table import Table, distinct, last_match, objects, row_codes
from netanomd.behaviour.windows import (
    MIN_BEACON_EVENTS,
    NO_REPLY_DESTS,
    PROBE_KINDS,
    ROLES,
    Closed,
    hash_strings,
    sample_lists,
)

#: How limits are learned (see the module docstring); an operator tunes these three.
DEFAULT_QUANTILE = 0.95  # of the training hosts' per-host maxima
DEFAULT_MARGIN = 1.5  # times that quantile
DEFAULT_ANOMALY_FACTOR = 2.0  # "unusual activity" needs this many times a learned limit
#: Host-window features with a learned upper limit.
FEATURES: tuple[str, ...] = (
    "flows",
    "unanswered",
    "bytes_out",
    "bytes_in",
    "new_peers",
    "peers",
    "ports",
    "probe_peers",
    "probe_ports",
    "probe_targets",
)
#: The least value at which each feature can mean a behaviour at all (not tuned to any file).
FLOORS: dict[str, float] = {
    "flows": 100.0,
    "unanswered": 20.0,
    "bytes_out": 20e6,
    "bytes_in": 50e6,
    "new_peers": 20.0,
    "peers": 20.0,
    "ports": 20.0,
    "probe_peers": 5.0,
    "probe_ports": 5.0,
    "probe_targets": 8.0,
}


def floors_at(scale: float) -> np.ndarray:
    """:data:`FLOORS` (set for 1 minute) for a window of ``scale`` seconds. They grow with the
    square root of the window: a longer window sees more of everything, but an attack packs
    its activity, so a 1-hour floor is ~8x, not 60x, the 1-minute one."""
    return np.array([FLOORS[f] for f in FEATURES]) * float(np.sqrt(max(scale, 60.0) / 60.0))


PAIR_FLOOR = 10.0  # connections to one service before "brute force" can mean anything
REGULARITY_FLOOR = 0.8  # 1 / (1 + coefficient of variation of the gaps): 0.8 is CV 0.25
#: Distinct servers a service must be used regularly with, in training, for its periodic use to
#: be known for every host (a pool: NTP, DNS, update mirrors; a C&C is one or two addresses).
POOL_PEERS = 3
#: A flood by definition, whatever training saw (an unlabeled training window may hold the flood
#: itself): at least FLOOD_FLOWS flows to one peer and port, at FLOOD_RATE per second or more
#: over their span, unanswered (TCP) or one-way (UDP, ICMP).
FLOOD_FLOWS = 100.0
FLOOD_RATE = 10.0
#: Share of a pair's flows unanswered for a TCP "flood", and for "repeated failed connections"
#: (a C&C that answers now and then still fails mostly).
UNANSWERED_SHARE = 0.9
FAILING_SHARE = 0.5
#: Attempts at one peer and TCP port, nearly all (UNANSWERED_SHARE) refused or unanswered, at a
#: rate of this many a minute (over a minute or more) that are "repeated failed connections"
#: however short the window: a retry every three seconds, kept up, is no client's back-off.
FAILING_BURST = 20.0
#: Features whose excess alone makes "unusual activity" (the rest feed named behaviours).
#: Bytes received are not among them: a big download is a user's business, not an attack sign.
ANOMALY_FEATURES: tuple[str, ...] = ("flows", "unanswered", "new_peers", "peers", "ports")

DETECTION_COLUMNS: tuple[str, ...] = (
    "scale",
    "role",
    "host",
    "behaviour",
    "detail",
    "peer",
    "port",
    "proto",
    "start",
    "end",
    "first_ts",
    "last_ts",
    "flows",
    "unanswered",
    "peers",
    "ports",
    "targets",
    "bytes_out",
    "bytes_in",
    "value",
    "threshold",
    "score",
    "feature",
    "period",
    *PROBE_KINDS,
    "uids",
    "community_ids",
)


@dataclass
class Thresholds:
    """Learned limits (see the module docstring). Plain arrays: saved without pickle."""

    scales: np.ndarray  # (S,) window widths in seconds
    host: np.ndarray  # (S, len(ROLES), len(FEATURES)) upper limits
    pair_keys: np.ndarray  # (P,) "scale|role|proto/port" strings
    pair_limits: np.ndarray  # (P,) connections to one service per window
    regularity: np.ndarray  # (S,) beaconing regularity limit per scale
    known_beacons: np.ndarray  # (K,) uint64 hashes of "role|host|proto/port" (host "*": a
    # pool service) regular in training
    known_hosts: np.ndarray  # (H,) "role|host" of the busiest training hosts
    known_limits: np.ndarray  # (H, S, len(FEATURES)) each one's own limits (0: none)
    quantile: float = DEFAULT_QUANTILE
    margin: float = DEFAULT_MARGIN
    anomaly_factor: float = DEFAULT_ANOMALY_FACTOR
    _pair: dict[str, float] = field(default_factory=dict, repr=False)
    _known_index: dict[str, int] = field(default_factory=dict, repr=False)
    _host_limits: dict[tuple[float, str, str], float] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self._pair = dict(zip(self.pair_keys.tolist(), self.pair_limits.tolist(), strict=True))
        self._known_index = {k: i for i, k in reversed(list(enumerate(self.known_hosts.tolist())))}

    def limits(
        self, scale: np.ndarray, role: np.ndarray, host: np.ndarray, feature: str, *, own: bool
    ) -> np.ndarray:
        """Per window: the population limit; with ``own``, raised to the host's own training
        maximum (times margin) if it was busier than the population."""
        return self.limit_table(scale, role, host, (feature,), own=own)[:, 0]

    def limit_table(
        self,
        scale: np.ndarray,
        role: np.ndarray,
        host: np.ndarray,
        features: tuple[str, ...],
        *,
        own: bool,
    ) -> np.ndarray:
        """:meth:`limits` of several features at once: one column per feature (the windows'
        scales, roles and hosts are looked up once)."""
        f = [FEATURES.index(x) for x in features]
        si = np.searchsorted(self.scales, np.asarray(scale, dtype=float))
        roles = np.asarray(role, dtype=object)
        ri = np.select([roles == r for r in ROLES], list(range(len(ROLES))), -1)
        if (ri < 0).any():
            raise ValueError(f"unknown role {roles[ri < 0][0]!r}; roles are {ROLES}")
        lim = np.asarray(self.host[si, ri][:, f], dtype=float)
        if not own:
            return lim
        known = self._known_index
        who = zip(roles.tolist(), np.asarray(host, dtype=object).tolist(), strict=True)
        ki = np.array([known.get(f"{r}|{h}", -1) for r, h in who], dtype=np.int64)
        mine = np.where((ki >= 0)[:, None], self.known_limits[np.maximum(ki, 0), si][:, f], 0.0)
        return np.asarray(np.maximum(lim, mine), dtype=float)

    def host_limit(self, scale: float, role: str, feature: str) -> float:
        """The population limit of ``feature`` for ``role`` at ``scale`` (looked up once: an
        alerting batch asks for the same one)."""
        key = (scale, role, feature)
        limit = self._host_limits.get(key)
        if limit is None:
            s = int(np.flatnonzero(np.isclose(self.scales, scale))[0])
            limit = float(self.host[s, ROLES.index(role), FEATURES.index(feature)])
            self._host_limits[key] = limit
        return limit

    def pair_limit(self, scale: float, role: str, proto: str, port: int) -> float:
        return self._pair.get(f"{scale:g}|{role}|{proto}/{port}", PAIR_FLOOR)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything as numpy arrays (strings as unicode arrays: ``np.load`` needs no pickle)."""
        return {
            "scales": self.scales,
            "host": self.host,
            "pair_keys": np.asarray(self.pair_keys, dtype=str),
            "pair_limits": self.pair_limits,
            "regularity": self.regularity,
            "known_beacons": self.known_beacons,
            "known_hosts": np.asarray(self.known_hosts, dtype=str),
            "known_limits": self.known_limits,
            "params": np.array([self.quantile, self.margin, self.anomaly_factor]),
            "features": np.asarray(FEATURES, dtype=str),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray] | Any) -> Thresholds:
        feats = tuple(np.asarray(arrays["features"]).tolist())
        if feats != FEATURES:
            raise ValueError(
                f"behaviour thresholds were learned for features {feats}, "
                f"this netanomd has {FEATURES}: retrain"
            )
        q, m, a = np.asarray(arrays["params"], dtype=float).tolist()
        return cls(
            scales=np.asarray(arrays["scales"], dtype=float),
            host=np.asarray(arrays["host"], dtype=float),
            pair_keys=np.asarray(arrays["pair_keys"], dtype=str),
            pair_limits=np.asarray(arrays["pair_limits"], dtype=float),
            regularity=np.asarray(arrays["regularity"], dtype=float),
            known_beacons=np.asarray(arrays["known_beacons"], dtype=np.uint64),
            known_hosts=np.asarray(arrays["known_hosts"], dtype=str),
            known_limits=np.asarray(arrays["known_limits"], dtype=float),
            quantile=float(q),
            margin=float(m),
            anomaly_factor=float(a),
        )


def _strs(values: np.ndarray) -> list[str]:
    return [str(v) for v in values.tolist()]


def _service(proto: np.ndarray, port: np.ndarray) -> list[str]:
    """``proto/port`` per row."""
    return [f"{p}/{int(q)}" for p, q in zip(proto.tolist(), port.tolist(), strict=True)]


def beacon_hash(pairs: Table, *, any_host: bool = False) -> np.ndarray:
    """A host's periodic use of a service (any peer: NTP and update pools rotate addresses);
    with ``any_host``, the service's periodic use by anyone (``role|*|proto/port``)."""
    svc = _service(pairs["proto"], pairs["port"])
    hosts = ["*"] * len(svc) if any_host else _strs(pairs["host"])
    roles = _strs(pairs["role"])
    keys = [f"{r}|{h}|{v}" for r, h, v in zip(roles, hosts, svc, strict=True)]
    return hash_strings(pa.array(keys, pa.string()))


def _group_max(keys: list[Any], values: np.ndarray) -> tuple[list[Any], np.ndarray]:
    """The distinct ``keys`` in sorted order and the column-wise maximum of ``values`` (rows)
    per key."""
    uniq, inverse = np.unique(np.asarray(keys, dtype=object), return_inverse=True)
    out = np.full((len(uniq), *values.shape[1:]), -np.inf)
    np.maximum.at(out, inverse, values)
    return uniq.tolist(), out


def _descending(counts: np.ndarray) -> np.ndarray:
    """Indices that put ``counts`` in descending order, ties as a descending quicksort leaves
    them (the order the busiest training hosts have always been kept in)."""
    idx = np.arange(len(counts))[::-1]
    return np.asarray(idx[counts[::-1].argsort(kind="quicksort")][::-1])


def fit(
    training: Closed,
    scales: tuple[float, ...],
    *,
    quantile: float = DEFAULT_QUANTILE,
    margin: float = DEFAULT_MARGIN,
    anomaly_factor: float = DEFAULT_ANOMALY_FACTOR,
    max_known: int = 4096,
) -> Thresholds:
    """Learn every limit from the windows of a training stream (see the module docstring)."""
    if not 0.0 < quantile <= 1.0 or margin < 1.0:
        raise ValueError("quantile must be in (0, 1] and margin >= 1")
    host = np.stack([np.tile(floors_at(sc), (len(ROLES), 1)) for sc in scales]).astype(float)
    hw = training.hosts
    hw = hw.take(np.isin(hw["scale"], list(scales)))
    feats = np.column_stack([np.asarray(hw[f], dtype=float) for f in FEATURES]) if len(hw) else None
    hosts = _strs(hw["host"])
    roles = _strs(hw["role"])
    for si, sc in enumerate(scales):
        for ri, role in enumerate(ROLES):
            rows = np.flatnonzero((hw["scale"] == sc) & (hw["role"] == role))
            if len(rows) and feats is not None:
                _, per_host = _group_max([hosts[i] for i in rows.tolist()], feats[rows])
                q = np.quantile(per_host, quantile, axis=0)
                host[si, ri] = np.maximum(floors_at(sc), q * margin)
    # The busiest training hosts keep their own limits (a resolver, a proxy, a scanner you run).
    who = [f"{r}|{h}" for r, h in zip(roles, hosts, strict=True)]
    names, inverse = np.unique(np.asarray(who, dtype=object), return_inverse=True)
    order = _descending(np.bincount(inverse, minlength=len(names)))[:max_known]
    busiest = [str(names[i]) for i in order.tolist()]
    own = np.zeros((len(busiest), len(scales), len(FEATURES)))
    if busiest and feats is not None:
        pos = np.full(len(names), -1, np.int64)
        pos[order] = np.arange(len(order))
        k = pos[inverse]
        mine = k >= 0
        sidx = np.searchsorted(np.asarray(scales, dtype=float), hw["scale"][mine])
        top = np.full(own.shape, -np.inf)
        np.maximum.at(top, (k[mine], sidx), feats[mine])
        own = np.where(np.isfinite(top), top * margin, 0.0)
    pw = training.pairs
    keys: list[str] = []
    limits: list[float] = []
    if len(pw):
        svc = [
            f"{s:g}|{r}|{v}"
            for s, r, v in zip(
                pw["scale"].tolist(),
                _strs(pw["role"]),
                _service(pw["proto"], pw["port"]),
                strict=True,
            )
        ]
        keys, mx = _group_max(svc, np.asarray(pw["short"], dtype=float))
        limits = np.maximum(PAIR_FLOOR, mx * margin).tolist()
    regularity = np.full(len(scales), REGULARITY_FLOOR)
    known = np.zeros(0, dtype=np.uint64)
    if len(pw):
        beacons = pw.take((pw["flows"] >= MIN_BEACON_EVENTS) & (pw["role"] == "orig"))
        for si, sc in enumerate(scales):
            r = np.asarray(beacons["regularity"][beacons["scale"] == sc], dtype=float)
            if len(r):
                regularity[si] = max(REGULARITY_FLOOR, float(np.quantile(r, quantile)))
        regular = beacons.take(beacons["regularity"] >= REGULARITY_FLOOR)
        if len(regular):
            # A service used regularly with a pool of servers (NTP, DNS, update mirrors) is
            # what clocks and resolvers do: periodic use of it is known for every host.
            svc = _service(regular["proto"], regular["port"])
            peers: dict[str, set[Any]] = {}
            for v, peer in zip(svc, regular["peer"].tolist(), strict=True):
                peers.setdefault(v, set()).add(peer)
            pooled = {v for v, p in peers.items() if len(p) >= POOL_PEERS}
            pool = regular.take(np.array([v in pooled for v in svc], dtype=np.bool_))
            known = np.unique(
                np.concatenate([beacon_hash(regular), beacon_hash(pool, any_host=True)])
            )
    return Thresholds(
        scales=np.asarray(scales, dtype=float),
        host=host,
        pair_keys=np.asarray(keys, dtype=str),
        pair_limits=np.asarray(limits, dtype=float),
        regularity=regularity,
        known_beacons=known,
        known_hosts=np.asarray(busiest, dtype=str),
        known_limits=own,
        quantile=quantile,
        margin=margin,
        anomaly_factor=anomaly_factor,
    )


def _limits(hw: Table, thr: Thresholds, feature: str, own: bool = False) -> np.ndarray:
    return thr.limits(hw["scale"], hw["role"], hw["host"], feature, own=own)


def _text(values: np.ndarray | str, n: int) -> np.ndarray:
    """A string column of ``n`` rows (``object``), from strings or one string."""
    if isinstance(values, str):
        return np.full(n, values, dtype=object)
    return np.asarray(values, dtype=object)


def _rows(
    hw: Table,
    behaviour: np.ndarray | str,
    value: np.ndarray,
    limit: np.ndarray,
    feature: np.ndarray | str,
    detail: np.ndarray | str = "",
) -> Table:
    n = len(hw)
    return Table(
        {
            "scale": hw["scale"],
            "role": hw["role"],
            "host": hw["host"],
            "behaviour": _text(behaviour, n),
            "detail": _text(detail, n),
            "peer": _text("", n),
            "port": np.full(n, -1, np.int64),
            "proto": _text("", n),
            "start": hw["start"],
            "end": hw["end"],
            "first_ts": hw["first_ts"],
            "last_ts": hw["last_ts"],
            "flows": hw["flows"],
            "unanswered": hw["unanswered"],
            "peers": hw["peers"],
            "ports": hw["ports"],
            "targets": hw["probe_targets"],
            "bytes_out": hw["bytes_out"],
            "bytes_in": hw["bytes_in"],
            "value": np.asarray(value, dtype=float),
            "threshold": np.asarray(limit, dtype=float),
            "score": np.asarray(value / limit, dtype=float),
            "feature": _text(feature, n),
            "period": np.zeros(n),
            **{k: hw[k] for k in PROBE_KINDS},
            "uids": sample_lists(hw["uids"]),
            "community_ids": sample_lists(hw["community_ids"]),
        },
        DETECTION_COLUMNS,
    )


def anomaly_scores(
    hosts: Table, thr: Thresholds
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The host-level anomaly score of each window row: its largest ratio of actual to learned
    limit over :data:`ANOMALY_FEATURES` (1 = at the limit), with that feature, its value and
    the limit ("actual vs typical")."""
    values = np.column_stack([np.asarray(hosts[f], dtype=float) for f in ANOMALY_FEATURES])
    limits = thr.limit_table(
        hosts["scale"], hosts["role"], hosts["host"], ANOMALY_FEATURES, own=True
    )
    ratios = values / limits
    best = ratios.argmax(axis=1)
    rows = np.arange(len(hosts))
    feature = np.array(ANOMALY_FEATURES, dtype=object)[best]
    return ratios[rows, best], feature, values[rows, best], limits[rows, best]


def _joined(
    a: Table, b: Table, names: tuple[str, ...], b_names: tuple[str, ...] | None = None
) -> np.ndarray:
    """:func:`~netanomd.behaviour.table.row_codes` of the rows of ``a`` (columns ``names``)
    then of ``b`` (columns ``b_names``, the same if not given), coded together."""
    other = names if b_names is None else b_names
    return row_codes(*(np.concatenate([a[x], b[y]]) for x, y in zip(names, other, strict=True)))


def detect(closed: Closed, thr: Thresholds) -> Table:
    """Named detections for the closed windows, one row each (columns :data:`DETECTION_COLUMNS`)."""
    if not len(closed.hosts) and not len(closed.pairs):  # most batches close no window
        return Table.empty(DETECTION_COLUMNS)
    out: list[Table] = []
    hw = closed.hosts.take(np.isin(closed.hosts["scale"], thr.scales))
    named = np.zeros(len(hw), dtype=np.bool_)
    scanning = False
    role = hw["role"]
    if len(hw):
        orig = role == "orig"
        # Scans: probes reaching many (host, port) targets.
        # A scan explores: as many of its targets as the limit asks must be new to the host (a
        # client retrying the servers it always uses, unanswered, is no scan).
        tgt = np.asarray(hw["probe_targets"], dtype=float)
        lim = _limits(hw, thr, "probe_targets")
        hit = orig & (tgt >= lim) & (np.asarray(hw["new_targets"], dtype=float) >= lim)
        if hit.any():
            h = hw.take(hit)
            pp = np.asarray(h["probe_peers"], dtype=float) / _limits(h, thr, "probe_peers")
            po = np.asarray(h["probe_ports"], dtype=float) / _limits(h, thr, "probe_ports")
            kind = np.where(
                (pp >= 1) & (po >= 1),
                "scan",
                np.where(pp >= po, "horizontal scan", "vertical scan"),
            )
            out.append(_rows(h, kind, tgt[hit], lim[hit], "probe_targets"))
            named |= hit
        scanning = bool(hit.any())
        # Inbound scans: one host probed by many distinct sources (scanners, a worm, a botnet).
        src = np.asarray(hw["probe_peers"], dtype=float)
        lim = _limits(hw, thr, "probe_peers")
        hit = (role == "resp") & (src >= lim)
        if hit.any():
            out.append(_rows(hw.take(hit), "inbound scan", src[hit], lim[hit], "probe_peers"))
            named |= hit
        # Exfiltration: far more out than training hosts sent, and well above what came in.
        bo = np.asarray(hw["bytes_out"], dtype=float)
        lim = _limits(hw, thr, "bytes_out")
        hit = orig & (bo >= lim)
        hit &= bo >= 4.0 * np.asarray(hw["bytes_in"], dtype=float)
        if hit.any():
            out.append(_rows(hw.take(hit), "exfiltration", bo[hit], lim[hit], "bytes_out"))
            named |= hit
        # Floods on a service from many sources (spoofed or distributed).
        svc = role == "service"
        peers = np.asarray(hw["peers"], dtype=float)
        lim = np.maximum(_limits(hw, thr, "peers"), FLOOD_FLOWS)
        hit = svc & (peers >= lim)
        if hit.any():
            h = hw.take(hit)
            names = _strs(h["host"])
            flood = [f"{n.split('/')[0].upper()} flood" for n in names]
            out.append(
                _rows(h, objects(flood, len(flood)), peers[hit], lim[hit], "peers", h["host"])
            )
            named |= hit
    pairs = _pair_detections(closed.pairs, thr)
    if len(pairs):
        # Representative flows: the host's latest ones in that window (its last row).
        n = len(hw)
        key = _joined(hw, pairs, ("scale", "role", "host", "start"))
        at = last_match(key[:n], key[n:])
        samples = {c: _samples_at(hw[c], at) for c in ("uids", "community_ids")}
        out.append(Table({**{c: pairs[c] for c in pairs.columns}, **samples}, DETECTION_COLUMNS))
        named |= np.isin(key[:n], key[n:])
        # The target of a named outbound behaviour is that behaviour's victim, not a second case.
        victim = _joined(hw, pairs, ("scale", "host", "start"), ("scale", "peer", "start"))
        named |= (role == "resp") & np.isin(victim[:n], victim[n:])
    # Unusual activity: above a learned limit, explained by nothing named.
    if len(hw):
        score, feature, value, limit = anomaly_scores(hw, thr)
        hit = (score >= thr.anomaly_factor) & ~named & (role != "service")
        # While a scan is under way, a responder made unusual by a single source is one of its
        # targets: that is the scan's incident, not one per target.
        if scanning:
            single = (role == "resp") & (np.asarray(hw["peers"], dtype=float) < 2.0)
            hit &= ~single
        if hit.any():
            f = feature[hit]
            out.append(_rows(hw.take(hit), "unusual activity", value[hit], limit[hit], f, f))
    return Table.concat(out, DETECTION_COLUMNS)


def _samples_at(samples: np.ndarray, at: np.ndarray) -> np.ndarray:
    """:func:`sample_lists` of rows ``at`` (an empty list where -1)."""
    if not len(samples):
        return objects(([] for _ in at), len(at))
    lists = sample_lists(samples[np.maximum(at, 0)])
    lists[at < 0] = objects(([] for _ in range(int((at < 0).sum()))), int((at < 0).sum()))
    return lists


def _outbound_flows(pw: Table, inbound: np.ndarray) -> np.ndarray:
    """For each pair row: flows of the busiest originator pair into the same service (-1: none)."""
    out = pw.take(~inbound)
    n = len(out)
    key = _joined(out, pw, ("peer", "port", "scale", "start"), ("host", "port", "scale", "start"))
    best = np.full(int(key.max()) + 1 if len(key) else 0, -np.inf)
    np.maximum.at(best, key[:n], np.asarray(out["flows"], dtype=float))
    seen = np.zeros(len(best), dtype=np.bool_)
    seen[key[:n]] = True
    return np.where(seen[key[n:]], best[key[n:]], -1.0)


_NO_REPLY = re.compile(NO_REPLY_DESTS)


#: The columns of :func:`_pair_detections`: the representative flows are the host window's
#: (:func:`detect` adds them).
_PAIR_DETECTION_COLUMNS = DETECTION_COLUMNS[:-2]


def _pair_detections(pw: Table, thr: Thresholds) -> Table:
    pw = pw.take(np.isin(pw["scale"], thr.scales) & (pw["role"] != "service"))
    if not len(pw):
        return Table.empty(_PAIR_DETECTION_COLUMNS)
    # learned limit per distinct (scale, role, service), not per row
    _, first, inverse = np.unique(
        row_codes(pw["scale"], pw["role"], pw["proto"], pw["port"]),
        return_index=True,
        return_inverse=True,
    )
    service = zip(*(pw[c][first].tolist() for c in ("scale", "role", "proto", "port")), strict=True)
    limit = np.array([thr.pair_limit(s, r, p, int(q)) for s, r, p, q in service], dtype=float)
    limit = limit[inverse.reshape(-1)]
    flows = np.asarray(pw["flows"], dtype=float)
    short = np.asarray(pw["short"], dtype=float)
    unans = np.asarray(pw["unanswered"], dtype=float) / np.maximum(flows, 1.0)
    tcp = pw["proto"] == "tcp"
    inbound = pw["role"] == "resp"
    # Inbound repeats that one originator explains (its pair into the same service holds 90%
    # of them) are that originator's brute force, not two.
    explained = inbound.copy()
    if explained.any():
        explained &= _outbound_flows(pw, inbound) >= 0.9 * flows
    first = np.asarray(pw["first_ts"], dtype=float)
    last = np.asarray(pw["last_ts"], dtype=float)
    width = np.asarray(pw["end"], dtype=float) - np.asarray(pw["start"], dtype=float)
    rate = flows / np.maximum(last - first, 1.0)
    flood = (flows >= FLOOD_FLOWS) & (rate >= FLOOD_RATE) & ((unans >= UNANSWERED_SHARE) | ~tcp)
    flood &= ~explained
    # Retrying one peer for most of a 10-minute or longer window and never getting an answer: a
    # dead C&C server, a blocked service, a worm's target. Learned-limit free, like a flood.
    lasting = last - first >= 0.5 * width
    failing = (
        tcp
        & ~inbound
        & (width >= 600.0)
        & lasting
        & (flows >= PAIR_FLOOR)
        & (unans >= FAILING_SHARE)
        & ~flood
    )
    brute = tcp & (short >= limit) & ~flood & ~failing & ~explained
    # A fast series of refused attempts that the service's learned limit does not call brute
    # force (an unlabeled training window may hold it: a C&C that refuses its bot all day).
    failing |= (
        tcp
        & ~inbound
        & (flows >= FAILING_BURST)
        & (flows / np.maximum(last - first, 60.0) >= FAILING_BURST / 60.0)
        & (unans >= UNANSWERED_SHARE)
        & ~flood
        & ~brute
    )
    protos, proto_code = distinct(pw["proto"])
    proto_flood = np.array([f"{p.upper()} flood" for p in protos], dtype=object)[proto_code]
    behaviour = np.where(
        flood,
        np.where(tcp, "SYN flood", proto_flood),
        np.where(
            failing,
            "repeated failed connections",
            np.where(inbound, "inbound brute force", "brute force"),
        ),
    ).astype(object)
    si = np.searchsorted(thr.scales, np.asarray(pw["scale"], dtype=float))
    reg_lim = thr.regularity[si]
    reg = np.asarray(pw["regularity"], dtype=float)
    # Beaconing is persistent and small: regular check-ins (short flows, not back-to-back chunks
    # of a stream) over at least half of a 10-minute or longer window.
    beacon = (
        (pw["role"] == "orig")
        & (width >= 600.0)
        & lasting
        & (flows >= MIN_BEACON_EVENTS)
        & (reg >= reg_lim)
        & (short >= 0.8 * flows)
    )
    if beacon.any():  # known (training) beacons and multicast announcements are no C&C
        beacon &= ~np.isin(beacon_hash(pw), thr.known_beacons)
        beacon &= ~np.isin(beacon_hash(pw, any_host=True), thr.known_beacons)
        multicast = [_NO_REPLY.match(p) is not None for p in _strs(pw["peer"])]
        beacon &= ~np.array(multicast, dtype=np.bool_)
    parts = []
    for mask, name, value, lim, feat in (
        (
            brute | flood | failing,
            behaviour,
            np.where(brute, short, flows),
            np.where(brute, limit, np.where(flood, FLOOD_FLOWS, PAIR_FLOOR)),
            "flows",
        ),
        (beacon, np.full(len(pw), "beaconing", dtype=object), reg, reg_lim, "regularity"),
    ):
        if not mask.any():
            continue
        p = pw.take(mask)
        n = len(p)
        svc = _service(p["proto"], p["port"])
        detail = [f"{peer}:{v}" for peer, v in zip(_strs(p["peer"]), svc, strict=True)]
        parts.append(
            Table(
                {
                    "scale": p["scale"],
                    "role": p["role"],
                    "host": p["host"],
                    "behaviour": name[mask],
                    "detail": np.asarray(detail, dtype=object),
                    "peer": p["peer"],
                    "port": p["port"],
                    "proto": p["proto"],
                    "start": p["start"],
                    "end": p["end"],
                    "first_ts": p["first_ts"],
                    "last_ts": p["last_ts"],
                    "flows": p["flows"],
                    "unanswered": p["unanswered"],
                    "peers": np.ones(n),
                    "ports": np.ones(n),
                    "targets": np.ones(n),
                    "bytes_out": np.zeros(n),
                    "bytes_in": np.zeros(n),
                    "value": value[mask],
                    "threshold": lim[mask],
                    "score": value[mask] / lim[mask],
                    "feature": np.full(n, feat, dtype=object),
                    "period": p["period"],
                    **{k: np.zeros(n) for k in PROBE_KINDS},
                },
                _PAIR_DETECTION_COLUMNS,
            )
        )
    return Table.concat(parts, _PAIR_DETECTION_COLUMNS)
