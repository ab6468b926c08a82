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

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from netanomd.behaviour.windows import (
    MIN_BEACON_EVENTS,
    NO_REPLY_DESTS,
    PROBE_KINDS,
    ROLES,
    Closed,
    empty_frame,
    hash_strings,
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
    _known_index: pd.Index = field(default_factory=lambda: pd.Index([]), repr=False)

    def __post_init__(self) -> None:
        self._pair = dict(zip(self.pair_keys.tolist(), self.pair_limits.tolist(), strict=True))
        self._known_index = pd.Index(self.known_hosts.tolist())

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
        who = pd.Index(roles.astype(str)).str.cat(pd.Index(np.asarray(host).astype(str)), sep="|")
        ki = self._known_index.get_indexer(who)
        mine = np.where((ki >= 0)[:, None], self.known_limits[np.maximum(ki, 0), si][:, f], 0.0)
        return np.asarray(np.maximum(lim, mine), dtype=float)

    def host_limit(self, scale: float, role: str, feature: str) -> float:
        s = int(np.flatnonzero(np.isclose(self.scales, scale))[0])
        return float(self.host[s, ROLES.index(role), FEATURES.index(feature)])

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


def beacon_hash(frame: pd.DataFrame, *, any_host: bool = False) -> np.ndarray:
    """A host's periodic use of a service (any peer: NTP and update pools rotate addresses);
    with ``any_host``, the service's periodic use by anyone (``role|*|proto/port``)."""
    host = "*" if any_host else frame["host"].astype(str)
    keys = (
        frame["role"].astype(str)
        + "|"
        + host
        + "|"
        + frame["proto"].astype(str)
        + "/"
        + frame["port"].astype(int).astype(str)
    )
    return hash_strings(keys.to_numpy(dtype=object))


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
    hw = hw[hw["scale"].isin(list(scales))]
    for si, sc in enumerate(scales):
        for ri, role in enumerate(ROLES):
            rows = hw[(hw["scale"] == sc) & (hw["role"] == role)]
            if len(rows):
                per_host = rows.groupby("host")[list(FEATURES)].max()
                q = per_host.quantile(quantile).to_numpy(dtype=float)
                host[si, ri] = np.maximum(floors_at(sc), q * margin)
    # The busiest training hosts keep their own limits (a resolver, a proxy, a scanner you run).
    who = hw["role"].astype(str) + "|" + hw["host"].astype(str)
    busiest = who.groupby(who).size().sort_values(ascending=False).index[:max_known].tolist()
    own = np.zeros((len(busiest), len(scales), len(FEATURES)))
    if busiest:
        per = hw.assign(who=who)[who.isin(busiest)].groupby(["who", "scale"])[list(FEATURES)].max()
        pos = {k: i for i, k in enumerate(busiest)}
        sidx = {float(s): i for i, s in enumerate(scales)}
        for (k, sc), vals in zip(per.index.tolist(), per.to_numpy(dtype=float), strict=True):
            own[pos[k], sidx[float(sc)]] = vals * margin
    pw = training.pairs
    keys: list[str] = []
    limits: list[float] = []
    if len(pw):
        svc = (
            pw["scale"].map(lambda s: f"{s:g}")
            + "|"
            + pw["role"].astype(str)
            + "|"
            + pw["proto"].astype(str)
            + "/"
            + pw["port"].astype(int).astype(str)
        )
        mx = pw.assign(svc=svc).groupby("svc")["short"].max()
        keys = mx.index.tolist()
        limits = np.maximum(PAIR_FLOOR, mx.to_numpy(dtype=float) * margin).tolist()
    regularity = np.full(len(scales), REGULARITY_FLOOR)
    known = np.zeros(0, dtype=np.uint64)
    if len(pw):
        beacons = pw[(pw["flows"] >= MIN_BEACON_EVENTS) & (pw["role"] == "orig")]
        for si, sc in enumerate(scales):
            r = beacons.loc[beacons["scale"] == sc, "regularity"].to_numpy(dtype=float)
            if len(r):
                regularity[si] = max(REGULARITY_FLOOR, float(np.quantile(r, quantile)))
        regular = beacons[beacons["regularity"] >= REGULARITY_FLOOR]
        if len(regular):
            # A service used regularly with a pool of servers (NTP, DNS, update mirrors) is
            # what clocks and resolvers do: periodic use of it is known for every host.
            svc = regular["proto"].astype(str) + "/" + regular["port"].astype(int).astype(str)
            peers = regular.assign(svc=svc).groupby("svc")["peer"].nunique()
            pool = regular[svc.isin(peers.index[peers >= POOL_PEERS]).to_numpy()]
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


def _limits(hw: pd.DataFrame, thr: Thresholds, feature: str, own: bool = False) -> np.ndarray:
    return thr.limits(
        hw["scale"].to_numpy(), hw["role"].to_numpy(), hw["host"].to_numpy(), feature, own=own
    )


def _rows(
    hw: pd.DataFrame,
    behaviour: np.ndarray | str,
    value: np.ndarray,
    limit: np.ndarray,
    feature: str,
    detail: np.ndarray | str = "",
) -> pd.DataFrame:
    n = len(hw)
    return pd.DataFrame(
        {
            "scale": hw["scale"],
            "role": hw["role"],
            "host": hw["host"],
            "behaviour": behaviour,
            "detail": detail,
            "peer": "",
            "port": -1,
            "proto": "",
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
            "value": value,
            "threshold": limit,
            "score": value / limit,
            "feature": feature,
            "period": np.zeros(n),
            **{k: hw[k] for k in PROBE_KINDS},
            "uids": hw["uids"],
            "community_ids": hw["community_ids"],
        },
        columns=list(DETECTION_COLUMNS),
    ).reset_index(drop=True)


def anomaly_scores(
    hosts: pd.DataFrame, thr: Thresholds
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The host-level anomaly score of each window row: its largest ratio of actual to learned
    limit over :data:`ANOMALY_FEATURES` (1 = at the limit), with that feature, its value and
    the limit ("actual vs typical")."""
    values = np.column_stack([hosts[f].to_numpy(dtype=float) for f in ANOMALY_FEATURES])
    limits = thr.limit_table(
        hosts["scale"].to_numpy(),
        hosts["role"].to_numpy(),
        hosts["host"].to_numpy(),
        ANOMALY_FEATURES,
        own=True,
    )
    ratios = values / limits
    best = ratios.argmax(axis=1)
    rows = np.arange(len(hosts))
    feature = np.array(ANOMALY_FEATURES, dtype=object)[best]
    return ratios[rows, best], feature, values[rows, best], limits[rows, best]


def detect(closed: Closed, thr: Thresholds) -> pd.DataFrame:
    """Named detections for the closed windows, one row each (columns :data:`DETECTION_COLUMNS`)."""
    if not len(closed.hosts) and not len(closed.pairs):  # most batches close no window
        return empty_frame(DETECTION_COLUMNS)
    out: list[pd.DataFrame] = []
    hw = closed.hosts[closed.hosts["scale"].isin(thr.scales.tolist())]
    hw = hw.reset_index(drop=True)
    named = np.zeros(len(hw), dtype=np.bool_)
    scanning = False
    if len(hw):
        orig = (hw["role"] == "orig").to_numpy()
        # Scans: probes reaching many (host, port) targets.
        # A scan explores: as many of its targets as the limit asks must be new to the host (a
        # client retrying the servers it always uses, unanswered, is no scan).
        tgt = hw["probe_targets"].to_numpy(dtype=float)
        lim = _limits(hw, thr, "probe_targets")
        hit = orig & (tgt >= lim) & (hw["new_targets"].to_numpy(dtype=float) >= lim)
        if hit.any():
            h = hw[hit]
            pp = h["probe_peers"].to_numpy(float) / _limits(h, thr, "probe_peers")
            po = h["probe_ports"].to_numpy(float) / _limits(h, thr, "probe_ports")
            kind = np.where(
                (pp >= 1) & (po >= 1),
                "scan",
                np.where(pp >= po, "horizontal scan", "vertical scan"),
            )
            out.append(_rows(h, kind, tgt[hit], lim[hit], "probe_targets"))
            named |= hit
        scanning = bool(hit.any())
        # Inbound scans: one host probed by many distinct sources (scanners, a worm, a botnet).
        src = hw["probe_peers"].to_numpy(dtype=float)
        lim = _limits(hw, thr, "probe_peers")
        hit = (hw["role"] == "resp").to_numpy() & (src >= lim)
        if hit.any():
            out.append(_rows(hw[hit], "inbound scan", src[hit], lim[hit], "probe_peers"))
            named |= hit
        # Exfiltration: far more out than training hosts sent, and well above what came in.
        bo = hw["bytes_out"].to_numpy(dtype=float)
        lim = _limits(hw, thr, "bytes_out")
        hit = orig & (bo >= lim)
        hit &= bo >= 4.0 * hw["bytes_in"].to_numpy(dtype=float)
        if hit.any():
            out.append(_rows(hw[hit], "exfiltration", bo[hit], lim[hit], "bytes_out"))
            named |= hit
        # Floods on a service from many sources (spoofed or distributed).
        svc = (hw["role"] == "service").to_numpy()
        peers = hw["peers"].to_numpy(dtype=float)
        lim = np.maximum(_limits(hw, thr, "peers"), FLOOD_FLOWS)
        hit = svc & (peers >= lim)
        if hit.any():
            h = hw[hit]
            proto = h["host"].str.split("/").str[0].str.upper()
            out.append(
                _rows(
                    h,
                    (proto + " flood").to_numpy(dtype=object),
                    peers[hit],
                    lim[hit],
                    "peers",
                    h["host"].to_numpy(dtype=object),
                )
            )
            named |= hit
    pairs = _pair_detections(closed.pairs, thr)
    if len(pairs):
        # Representative flows: the host's latest ones in that window.
        wkey = list(zip(hw["scale"], hw["role"], hw["host"], hw["start"], strict=True))
        uids = dict(zip(wkey, hw["uids"], strict=True))
        cids = dict(zip(wkey, hw["community_ids"], strict=True))
        pk = list(zip(pairs["scale"], pairs["role"], pairs["host"], pairs["start"], strict=True))
        pairs["uids"] = [uids.get(k, []) for k in pk]
        pairs["community_ids"] = [cids.get(k, []) for k in pk]
        out.append(pairs)
        key = set(zip(pairs["scale"], pairs["role"], pairs["host"], pairs["start"], strict=True))
        named |= np.array(
            [k in key for k in zip(hw["scale"], hw["role"], hw["host"], hw["start"], strict=True)],
            dtype=np.bool_,
        )
        # The target of a named outbound behaviour is that behaviour's victim, not a second case.
        victims = set(zip(pairs["scale"], pairs["peer"], pairs["start"], strict=True))
        named |= (hw["role"] == "resp").to_numpy() & np.array(
            [k in victims for k in zip(hw["scale"], hw["host"], hw["start"], strict=True)],
            dtype=np.bool_,
        )
    # Unusual activity: above a learned limit, explained by nothing named.
    if len(hw):
        score, feature, value, limit = anomaly_scores(hw, thr)
        hit = (score >= thr.anomaly_factor) & ~named & (hw["role"] != "service").to_numpy()
        # While a scan is under way, a responder made unusual by a single source is one of its
        # targets: that is the scan's incident, not one per target.
        if scanning:
            single = (hw["role"] == "resp").to_numpy() & (hw["peers"].to_numpy(float) < 2.0)
            hit &= ~single
        if hit.any():
            rows = _rows(hw[hit], "unusual activity", value[hit], limit[hit], "", feature[hit])
            rows["feature"] = feature[hit]
            out.append(rows)
    if not out:
        return empty_frame(DETECTION_COLUMNS)
    return pd.concat(out, ignore_index=True)


def _outbound_flows(pw: pd.DataFrame, inbound: np.ndarray) -> np.ndarray:
    """For each pair row: flows of the busiest originator pair into the same service (-1: none)."""
    best = pw[~inbound].groupby(["peer", "port", "scale", "start"])["flows"].max()
    at = pd.MultiIndex.from_arrays([pw["host"], pw["port"], pw["scale"], pw["start"]])
    return np.asarray(best.reindex(at).fillna(-1.0).to_numpy(dtype=float))


def _pair_detections(pw: pd.DataFrame, thr: Thresholds) -> pd.DataFrame:
    pw = pw[pw["scale"].isin(thr.scales.tolist()) & (pw["role"] != "service")]
    pw = pw.reset_index(drop=True)
    if not len(pw):
        return pw
    # learned limit per distinct (scale, role, service), not per row
    kind, kinds = pd.factorize(
        pd.MultiIndex.from_arrays([pw["scale"], pw["role"], pw["proto"], pw["port"]])
    )
    limit = np.array([thr.pair_limit(s, r, p, int(port)) for s, r, p, port in kinds])[kind]
    flows = pw["flows"].to_numpy(dtype=float)
    short = pw["short"].to_numpy(dtype=float)
    unans = pw["unanswered"].to_numpy(dtype=float) / np.maximum(flows, 1.0)
    tcp = (pw["proto"] == "tcp").to_numpy()
    inbound = (pw["role"] == "resp").to_numpy()
    # Inbound repeats that one originator explains (its pair into the same service holds 90%
    # of them) are that originator's brute force, not two.
    explained = inbound.copy()
    if explained.any():
        explained &= _outbound_flows(pw, inbound) >= 0.9 * flows
    first = pw["first_ts"].to_numpy(float)
    last = pw["last_ts"].to_numpy(float)
    width = pw["end"].to_numpy(float) - pw["start"].to_numpy(float)
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
    proto_up = pw["proto"].astype(str).str.upper().to_numpy(dtype=object)
    behaviour = np.where(
        flood,
        np.where(tcp, "SYN flood", proto_up + " flood"),
        np.where(
            failing,
            "repeated failed connections",
            np.where(inbound, "inbound brute force", "brute force"),
        ),
    )
    si = np.searchsorted(thr.scales, pw["scale"].to_numpy(dtype=float))
    reg_lim = thr.regularity[si]
    reg = pw["regularity"].to_numpy(dtype=float)
    # Beaconing is persistent and small: regular check-ins (short flows, not back-to-back chunks
    # of a stream) over at least half of a 10-minute or longer window.
    beacon = (
        (pw["role"] == "orig").to_numpy()
        & (width >= 600.0)
        & lasting
        & (pw["flows"].to_numpy(float) >= MIN_BEACON_EVENTS)
        & (reg >= reg_lim)
        & (short >= 0.8 * flows)
    )
    if beacon.any():  # known (training) beacons and multicast announcements are no C&C
        beacon &= ~np.isin(beacon_hash(pw), thr.known_beacons)
        beacon &= ~np.isin(beacon_hash(pw, any_host=True), thr.known_beacons)
        beacon &= ~pw["peer"].astype(str).str.match(NO_REPLY_DESTS).to_numpy(dtype=np.bool_)
    frames = []
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
        p = pw[mask]
        frames.append(
            pd.DataFrame(
                {
                    "scale": p["scale"],
                    "role": p["role"],
                    "host": p["host"],
                    "behaviour": name[mask],
                    "detail": (
                        p["peer"].astype(str)
                        + ":"
                        + p["proto"]
                        + "/"
                        + p["port"].astype(int).astype(str)
                    ),
                    "peer": p["peer"],
                    "port": p["port"],
                    "proto": p["proto"],
                    "start": p["start"],
                    "end": p["end"],
                    "first_ts": p["first_ts"],
                    "last_ts": p["last_ts"],
                    "flows": p["flows"],
                    "unanswered": p["unanswered"],
                    "peers": 1.0,
                    "ports": 1.0,
                    "targets": 1.0,
                    "bytes_out": 0.0,
                    "bytes_in": 0.0,
                    "value": value[mask],
                    "threshold": lim[mask],
                    "score": value[mask] / lim[mask],
                    "feature": feat,
                    "period": p["period"],
                    **{k: 0.0 for k in PROBE_KINDS},
                    "uids": [[] for _ in range(len(p))],
                    "community_ids": [[] for _ in range(len(p))],
                },
                columns=list(DETECTION_COLUMNS),
            )
        )
    if not frames:
        return pw.iloc[0:0]
    return pd.concat(frames, ignore_index=True)
