"""Explanations: why a flow looks anomalous, against what the model saw in training.

Owns :class:`Baselines`, the per-feature training quantiles (over all training flows, and per
application service for the common services) fitted when a model is trained and stored in its
artifact, and :meth:`Baselines.explain`, which ranks a flow's features by how far they lie
outside them and turns the top ones into :class:`~netanomd.decision.Contribution` values with
human descriptions (:func:`describe`); for
ICMP flows no port feature at all (Zeek's ports of an ICMP flow are its type and code). Rows with
the same ranking and numbers share one tuple of contributions, made once.
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
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-row (lo, med, hi) and the index of the service baseline each row uses (-1: the
        baseline over all training flows), row-wise in a few array operations."""
        n = len(X)
        svc = np.full(n, -1, dtype=np.int64)
        if services is not None and self.services and n:
            index = {s: i for i, s in enumerate(self.services)}
            svc = np.fromiter((index.get(s, -1) if s else -1 for s in services), np.int64, n)
        q = np.stack([self.lo, self.med, self.hi])  # (3, features)
        if (svc >= 0).any():
            table = np.concatenate([q[None], np.asarray(self.svc_q, dtype=q.dtype)])
            per_row = table[svc + 1]  # (rows, 3, features); row 0 of the table is overall
            return per_row[:, 0], per_row[:, 1], per_row[:, 2], svc
        lo, med, hi = (np.broadcast_to(q[k], X.shape) for k in range(3))
        return lo, med, hi, svc

    def explain(
        self,
        X: np.ndarray,
        services: Sequence[str | None] | None = None,
        protos: Sequence[str | None] | None = None,
    ) -> list[tuple[Contribution, ...]]:
        """For each row, the features furthest outside the training distribution (of the
        row's service when that service has its own baseline); port features never explain an
        ICMP row (``protos`` given).

        The ranking and every number are computed for all rows at once; the loop only wraps
        the chosen ones in :class:`Contribution` values."""
        lo, med, hi, svc = self._bounds(X, services)
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
        n = X.shape[0]
        top = np.argsort(-weights, axis=1)[:, :MAX_CONTRIBUTIONS]
        rows = np.arange(n)[:, None]
        w = weights[rows, top]
        # A row's reasons stop at its first non-positive weight.
        keep = np.cumprod(w > 0.0, axis=1).astype(np.bool_)
        x = X[rows, top].astype(np.float64)
        is_above = x > hi[rows, top]
        # In the baselines' own precision, as the numbers were always reported.
        base = np.where(is_above, hi[rows, top], lo[rows, top])
        log1p = np.array([name in LOG1P_COLUMNS for name in self.names], dtype=np.bool_)[top]
        with np.errstate(over="ignore"):  # expm1 of a column that is not log1p is unused
            obs = np.where(log1p, np.expm1(x), x)
            base = np.where(log1p, np.expm1(base), base)
        # Rows with the same numbers have the same reasons (a scan's thousand alerts are a few
        # distinct rows): each distinct row is worded once, its tuple shared by the others.
        which = np.where(keep[:, 0], svc + 1, 0)[:, None]
        key = np.ascontiguousarray(
            np.concatenate(
                [np.where(keep, top, -1), is_above & keep, which]
                + [np.where(keep, v, 0.0).view(np.int64) for v in (obs, base, w)],
                axis=1,
                dtype=np.int64,
            )
        )
        _, first, inverse = np.unique(
            key.view(np.dtype((np.void, key.dtype.itemsize * key.shape[1]))).ravel(),
            return_index=True,
            return_inverse=True,
        )
        distinct = self._contributions(
            top[first],
            keep[first],
            is_above[first],
            obs[first],
            base[first],
            w[first],
            svc[first],
        )
        return [distinct[k] for k in inverse.ravel().tolist()]

    def _contributions(
        self,
        top: np.ndarray,
        keep: np.ndarray,
        is_above: np.ndarray,
        obs: np.ndarray,
        base: np.ndarray,
        w: np.ndarray,
        svc: np.ndarray,
    ) -> list[tuple[Contribution, ...]]:
        """The :class:`Contribution` values of rows whose ranking and numbers are computed."""
        # Python lists: the loop below reads single values, which numpy makes slow.
        binary, share = self.binary[top].tolist(), np.asarray(self.share)[top].tolist()
        up, w_, obs_, base_ = is_above.tolist(), w.tolist(), obs.tolist(), base.tolist()
        suffix = ["", *(f" for {s}" for s in self.services)]
        which = (svc + 1).tolist()
        names = self.names
        descriptions = [describe(name) for name in names]
        out: list[tuple[Contribution, ...]] = [()] * len(top)
        at_i, at_j = (a.tolist() for a in np.nonzero(keep))
        for i, j, k in zip(at_i, at_j, top[keep].tolist(), strict=True):
            if binary[i][j]:
                c = Contribution(
                    names[k], descriptions[k], 1.0, share[i][j], "share", "rare", w_[i][j]
                )
            else:
                c = Contribution(
                    names[k],
                    descriptions[k],
                    obs_[i][j],
                    base_[i][j],
                    ("p99" if up[i][j] else "p1") + suffix[which[i]],
                    "above" if up[i][j] else "below",
                    w_[i][j],
                )
            out[i] = (*out[i], c)
        return out
