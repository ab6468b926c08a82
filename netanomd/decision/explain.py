"""Explanations: why a flow looks anomalous, against what the model saw in training.

Owns :class:`Baselines`, the per-feature training quantiles (over all training flows, and per
application service for the common services) fitted when a model is trained and stored in its
artifact, and :meth:`Baselines.explain`, which ranks a flow's features by how far they lie
outside them and turns the top ones into :class:`~netanomd.decision.Contribution` values with
human descriptions (:func:`describe`); for
ICMP flows no port feature at all (Zeek's ports of an ICMP flow are its type and code).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from netanomd.decision.verdicts import Contribution
from netanomd.features.blocks import LOG1P_COLUMNS, is_binary

#: How many reasons an alert carries.
MAX_CONTRIBUTIONS = 3

#: Human descriptions of feature columns for explanations; others use the column name.
DESCRIPTIONS: dict[str, str] = {
    "log_duration": "duration (s)",
    "log_orig_bytes": "bytes sent by originator",
    "log_resp_bytes": "bytes sent by responder",
    "log_orig_pkts": "packets from originator",
    "log_resp_pkts": "packets from responder",
    "log_orig_ip_bytes": "IP bytes from originator",
    "log_resp_ip_bytes": "IP bytes from responder",
    "bytes_ratio": "log ratio of bytes out to in",
    "orig_bytes_per_pkt": "originator bytes per packet",
    "resp_bytes_per_pkt": "responder bytes per packet",
    "log_pkt_rate": "packets per second",
    "missed": "missed bytes",
    "no_service": "no application protocol recognised",
    "resp_port_wellknown": "a well-known destination port (below 1024)",
    "resp_port_registered": "a registered destination port (1024-49151)",
    "resp_port_dynamic": "an ephemeral destination port (49152 and up)",
    "orig_port_wellknown": "a well-known source port (below 1024)",
    "host_log_conns": "flows from this host in the window",
    "host_log_rate": "flows per minute from this host",
    "host_log_dsts": "distinct destinations of this host",
    "host_log_ports": "distinct destination ports of this host",
    "host_fail_ratio": "share of this host's flows that failed",
    "host_out_in": "log ratio of this host's bytes out to in",
    "host_periodicity": "regularity of this host's connections to this destination",
}


#: Zeek history letters (upper case: the originator's, lower: the responder's).
_HISTORY: dict[str, str] = {
    "S": "sent a SYN",
    "H": "sent a SYN-ACK",
    "A": "sent a pure ACK",
    "D": "sent data",
    "F": "sent a FIN",
    "R": "sent a reset",
    "T": "retransmitted",
}
#: Columns derived from ports: meaningless for ICMP (type and code in the port fields).
PORT_COLUMNS = frozenset(
    {"resp_port_wellknown", "resp_port_registered", "resp_port_dynamic", "orig_port_wellknown"}
)


def describe(feature: str) -> str:
    if feature in DESCRIPTIONS:
        return DESCRIPTIONS[feature]
    if feature.startswith("state_"):
        state = feature[6:]
        return "an unusual connection state" if state == "other" else f"connection state {state}"
    if feature.startswith("proto_"):
        return f"protocol {feature[6:].upper()}"
    if feature.startswith("hist_o"):
        return f"originator {_HISTORY.get(feature[6:].upper(), repr(feature[6:]))}"
    if feature.startswith("hist_r"):
        return f"responder {_HISTORY.get(feature[6:].upper(), repr(feature[6:]))}"
    if feature == "hist_flip":
        return "direction flipped by Zeek"
    return feature.replace("_", " ")


class Baselines:
    """Per-feature training statistics that explanations compare against: over all training
    flows, and per application service (``http``, ``dns``...) for the services common enough
    in training, so a flow is compared with what is normal *for its service*."""

    QUANTILES = (0.01, 0.5, 0.99)
    #: Services with at least this many training flows get their own baseline (at most 16).
    MIN_SERVICE_ROWS = 200
    MAX_SERVICES = 16

    def __init__(
        self,
        names: Sequence[str],
        lo: np.ndarray,
        med: np.ndarray,
        hi: np.ndarray,
        share: np.ndarray,
        services: Sequence[str] = (),
        svc_q: np.ndarray | None = None,
    ) -> None:
        self.names = tuple(names)
        self.lo, self.med, self.hi, self.share = lo, med, hi, share
        self.binary = np.array([is_binary(n) for n in names])
        self.services = list(services)
        #: shape (services, 3 quantiles, features)
        self.svc_q = svc_q if svc_q is not None else np.zeros((0, 3, len(names)))

    @classmethod
    def fit(
        cls, names: Sequence[str], X: np.ndarray, services: np.ndarray | None = None
    ) -> Baselines:
        if len(X) == 0:
            z = np.zeros(len(names))
            return cls(names, z, z, z, z)
        q = np.quantile(X, cls.QUANTILES, axis=0)
        svc_names: list[str] = []
        svc_q = []
        if services is not None:
            values, counts = np.unique(services.astype(str), return_counts=True)
            order = np.argsort(-counts)
            for i in order[: cls.MAX_SERVICES]:
                if counts[i] < cls.MIN_SERVICE_ROWS or values[i] in ("", "None"):
                    continue
                rows = X[services.astype(str) == values[i]]
                svc_names.append(str(values[i]))
                svc_q.append(np.quantile(rows, cls.QUANTILES, axis=0))
        return cls(
            names,
            q[0],
            q[1],
            q[2],
            X.mean(axis=0, dtype=np.float64),
            svc_names,
            np.asarray(svc_q) if svc_q else None,
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "lo": self.lo,
            "med": self.med,
            "hi": self.hi,
            "share": self.share,
            "svc_q": self.svc_q,
        }

    def _bounds(
        self, X: np.ndarray, services: Sequence[str | None] | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """Per-row (lo, med, hi) and a label of which baseline each row uses."""
        n = len(X)
        lo = np.broadcast_to(self.lo, X.shape).copy()
        med = np.broadcast_to(self.med, X.shape).copy()
        hi = np.broadcast_to(self.hi, X.shape).copy()
        which = [""] * n
        if services is not None and self.services:
            index = {s: i for i, s in enumerate(self.services)}
            for r, svc in enumerate(services):
                k = index.get(svc) if svc else None
                if k is not None:
                    lo[r], med[r], hi[r] = self.svc_q[k]
                    which[r] = f" for {svc}"
        return lo, med, hi, which

    def explain(
        self,
        X: np.ndarray,
        services: Sequence[str | None] | None = None,
        protos: Sequence[str | None] | None = None,
    ) -> list[tuple[Contribution, ...]]:
        """For each row, the features furthest outside the training distribution (of the
        row's service when that service has its own baseline); port features never explain an
        ICMP row (``protos`` given)."""
        lo, med, hi, which = self._bounds(X, services)
        above = np.maximum(X - hi, 0.0) / (np.maximum(hi - med, 0.0) + 0.25)
        below = np.maximum(lo - X, 0.0) / (np.maximum(med - lo, 0.0) + 0.25)
        # A category present in the flow but rare in training: -log10 of its training share.
        rare = np.where((X > 0.5) & self.binary, -np.log10(np.clip(self.share, 1e-4, 1.0)), 0.0)
        rare = np.where(rare >= 1.0, rare, 0.0)  # only categories seen in < 10% of training
        weights = np.where(self.binary, rare, np.maximum(above, below))
        if protos is not None:
            icmp = np.array([(p or "").lower() == "icmp" for p in protos], dtype=np.bool_)
            ports = np.array([n in PORT_COLUMNS for n in self.names], dtype=np.bool_)
            weights = np.where(icmp[:, None] & ports[None, :], 0.0, weights)
        out: list[tuple[Contribution, ...]] = []
        top = np.argsort(-weights, axis=1)[:, :MAX_CONTRIBUTIONS]
        for i in range(X.shape[0]):
            contribs = []
            for j in top[i]:
                w = float(weights[i, j])
                if w <= 0.0:
                    break
                name = self.names[j]
                if self.binary[j]:
                    share = float(self.share[j])
                    contribs.append(
                        Contribution(name, describe(name), 1.0, share, "share", "rare", w)
                    )
                    continue
                is_above = X[i, j] > hi[i, j]
                base = hi[i, j] if is_above else lo[i, j]
                obs = float(X[i, j])
                if name in LOG1P_COLUMNS:
                    obs, base = float(np.expm1(obs)), float(np.expm1(base))
                contribs.append(
                    Contribution(
                        name,
                        describe(name),
                        obs,
                        float(base),
                        ("p99" if is_above else "p1") + which[i],
                        "above" if is_above else "below",
                        w,
                    )
                )
            out.append(tuple(contribs))
        return out
