"""Verdicts: which flows alert, and the :class:`Alert` every sink consumes.

Owns the verdict rule (``score >= threshold`` alerts, :func:`above_threshold`), the
:class:`Alert` and :class:`Contribution` types, and :func:`make_alerts`, which builds the
alerts of a scored batch, each explained against the model's training baselines
(:class:`~netanomd.decision.explain.Baselines`). An alert's :attr:`Alert.reason` is plain
language: what happened on the wire (:func:`what_happened`: "SMB (445/tcp): lone SYN, no
reply", "ICMP echo request (ping), no answer"), then the features furthest from training ("never
seen in training" rather than "0.00%"); the numbers stay as data in the contributions.

Alerts are built for a whole batch at once (:func:`make_alerts`): explanations are computed for
all alerting rows together. An alert's reason, id and explanation JSON are computed once, when
a sink first asks (an alert replaced by a copy before then, e.g. with its host context added,
never words its own); flow shapes and contributions are worded once and the words kept for
the alerts that share them (a scan's thousand alerts are a handful of sentences), the same for
an :class:`Alert` made by hand.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from netanomd.behaviour import reasons
from netanomd.flow import FlowBatch, FlowRecord, signatures_sentence

if TYPE_CHECKING:  # explain imports this module for Contribution
    from netanomd.decision.explain import Baselines


@dataclass(frozen=True, slots=True)
class Contribution:
    """One reason a flow looks anomalous: a feature, what was observed, what is normal."""

    feature: str
    #: Human name of the quantity ("bytes sent by the originator").
    description: str
    observed: float
    #: The training baseline it is compared with (a quantile, see ``baseline_name``).
    baseline: float
    #: "p99", "p1", "share" (fraction of training flows with this category) ...
    baseline_name: str
    #: "above", "below" or "rare".
    direction: str
    #: How unusual, >= 0; larger is more unusual. Used to rank contributions.
    weight: float

    def sentence(self) -> str:
        if self.direction == "rare":
            if self.baseline <= 0:
                return f"{self.description}: {reasons.training_share(self.baseline)}"
            return f"{self.description} in only {self.baseline:.2%} of training flows"
        word = "above" if self.direction == "above" else "below"
        pct, _, scope = self.baseline_name.partition(" ")
        which = {"p99": "the highest 1%", "p1": "the lowest 1%"}.get(pct, pct)
        scope = f" {scope}" if scope else ""
        return (
            f"{self.description} {_fmt(self.observed)}, {word} {which} of training"
            f"{scope} ({_fmt(self.baseline)})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "description": self.description,
            "observed": self.observed,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "direction": self.direction,
            "weight": self.weight,
        }


def _fmt(x: float) -> str:
    if x != x:  # NaN
        return "n/a"
    if abs(x) >= 1e6:
        return f"{x / 1e6:.1f}M"
    if abs(x) >= 1e4:
        return f"{x / 1e3:.1f}k"
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.3g}"


@dataclass(frozen=True, slots=True)
class Alert:
    """A flow whose score reached the threshold, with why.

    ``reason``, ``alert_id`` and ``explanation_json`` are computed once, on first use (a copy
    made with :func:`dataclasses.replace` computes its own)."""

    flow: FlowRecord
    score: float
    threshold: float
    model_id: str
    contributions: tuple[Contribution, ...] = field(default_factory=tuple)
    _reason: str | None = field(default=None, init=False, repr=False, compare=False)
    _alert_id: str | None = field(default=None, init=False, repr=False, compare=False)
    _explanation: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def reason(self) -> str:
        """One readable sentence: what happened, then the top contributions."""
        if self._reason is None:
            object.__setattr__(self, "_reason", _reason(self, _SAID, _SENTENCES))
        return self._reason  # type: ignore[return-value]

    @property
    def alert_id(self) -> str:
        """Deterministic id: the same flow scored by the same model gives the same id, so a
        retried delivery never makes a duplicate."""
        if self._alert_id is None:
            object.__setattr__(self, "_alert_id", alert_id(self.model_id, self.flow))
        return self._alert_id  # type: ignore[return-value]

    @property
    def explanation_json(self) -> str:
        """The contributions as a JSON list of objects (what stores keep beside the reason)."""
        if self._explanation is None:
            object.__setattr__(self, "_explanation", explanation_json(self.contributions))
        return self._explanation  # type: ignore[return-value]


def alert_id(model_id: str, f: FlowRecord) -> str:
    """The id of ``f``'s alert under ``model_id`` (:attr:`Alert.alert_id`)."""
    key = (
        f"{model_id}|{f.source}|{f.uid}|{f.flow_id}|{f.community_id}|{f.ts!r}|{f.orig_h}|"
        f"{f.orig_p}|{f.resp_h}|{f.resp_p}|{f.proto}"
    )
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def explanation_json(contributions: Sequence[Contribution]) -> str:
    """``[{"feature": ..., "observed": ..., ...}, ...]`` (:meth:`Contribution.to_dict` each:
    orjson writes a dataclass's fields in the same order)."""
    return orjson.dumps(list(contributions)).decode()


def _what_key(f: FlowRecord) -> tuple[Any, ...]:
    """What :func:`what_happened` reads of a flow: flows with equal keys are worded alike
    (keep it in step with :func:`what_happened`; a test checks the two agree)."""
    return (
        f.proto,
        f.orig_p,
        ":" in (f.orig_h or ""),
        f.resp_p,
        f.resp_pkts,
        f.orig_pkts,
        f.conn_state,
        f.history,
        f.service,
    )


#: The words of flow shapes (:func:`_what_key`) and of contributions already said, kept for
#: the alerts that share them (each started afresh past :data:`_MEMO_MAX` entries).
_SAID: dict[tuple[Any, ...], str] = {}
_SENTENCES: dict[Contribution, str] = {}
_MEMO_MAX = 1 << 16


def _reason(
    alert: Alert,
    said: dict[tuple[Any, ...], str],
    sentences: dict[Contribution, str],
) -> str:
    """:attr:`Alert.reason`, with the wording of flow shapes (``said``) and contributions
    (``sentences``) already done reused (and what is new added to them)."""
    key = _what_key(alert.flow)
    what = said.get(key)
    if what is None:
        if len(said) >= _MEMO_MAX:
            said.clear()
        what = said[key] = what_happened(alert.flow)
    parts = []
    for c in alert.contributions:
        text = sentences.get(c)
        if text is None:
            if len(sentences) >= _MEMO_MAX:
                sentences.clear()
            text = sentences[c] = c.sentence()
        parts.append(text)
    if not parts:
        parts.append(f"score {alert.score:.3f} >= threshold {alert.threshold:.3f}")
    sigs = signatures_sentence(alert.flow.signatures)  # Suricata's own, when any fired
    if sigs:
        parts.append(sigs)
    return f"{what}; {'; '.join(parts)}"


#: ICMPv6 types (Zeek logs both ICMP versions as ``icmp``; an IPv6 flow's type is one of these).
ICMP6_TYPES: dict[int, str] = {
    1: "destination unreachable",
    2: "packet too big",
    3: "time exceeded",
    4: "parameter problem",
    128: "echo request (ping)",
    129: "echo reply",
    130: "multicast listener query",
    131: "multicast listener report",
    132: "multicast listener done",
    133: "router solicitation",
    134: "router advertisement",
    135: "neighbor solicitation",
    136: "neighbor advertisement",
    137: "redirect",
    143: "multicast listener report v2",
}


#: :func:`reasons.service_name` looks ports up in the system's services database: once each.
_service_name = functools.lru_cache(maxsize=1 << 16)(reasons.service_name)


def what_happened(flow: FlowRecord) -> str:
    """The flow on the wire in words: ``"SMB (445/tcp): lone SYN, no reply"``; for ICMP its
    type by name (Zeek's ``orig_p`` is the ICMP type, never a port)."""
    proto = (flow.proto or "").lower()
    if proto == "icmp":
        answer = "answered" if (flow.resp_pkts or 0) > 0 else "no answer"
        if flow.orig_p is None:
            return f"ICMP, {answer}"
        if ":" in (flow.orig_h or ""):
            kind = ICMP6_TYPES.get(int(flow.orig_p), f"type {flow.orig_p}")
            return f"ICMPv6 {kind}, {answer}"
        return f"ICMP {reasons.icmp_type(flow.orig_p)}, {answer}"
    what = reasons.describe_flow(
        proto, flow.conn_state, flow.history, flow.orig_pkts, flow.resp_pkts
    )
    if flow.resp_p is None:
        return what
    svc = _service_name(proto, int(flow.resp_p))
    if flow.service and flow.service.lower() not in svc.lower():
        svc += f", {flow.service}"
    return f"{svc}: {what}"


def above_threshold(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of rows whose score reaches ``threshold`` (the one verdict rule)."""
    return np.flatnonzero(scores >= threshold)


def make_alerts(
    batch: FlowBatch,
    scores: np.ndarray,
    threshold: float,
    model_id: str,
    *,
    X: np.ndarray | None = None,
    baselines: Baselines | None = None,
    select: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[Alert]:
    """Alerts for the rows of ``batch`` at or above ``threshold`` (with ``select``, for the
    rows it returns given those: the others are never built).

    With ``baselines`` and the feature matrix ``X`` the rows were scored on, each alert
    carries the features furthest outside the training distribution of its service.
    """
    if (X is None) != (baselines is None):
        raise ValueError("make_alerts explains with both X and baselines, or with neither")
    idx = above_threshold(scores, threshold)
    if select is not None:
        idx = np.asarray(select(idx), dtype=np.int64)
    if idx.size == 0:
        return []
    sub = batch.take(idx)
    flows = list(sub.records())
    why: Sequence[tuple[Contribution, ...]]
    if X is not None and baselines is not None:
        service, proto = (sub.column(c).to_pylist() for c in ("service", "proto"))
        why = baselines.explain(X[idx], service, proto)
    else:
        why = [()] * len(idx)
    threshold = float(threshold)
    return [
        Alert(f, score, threshold, model_id, tuple(w))
        for f, score, w in zip(flows, scores[idx].tolist(), why, strict=True)
    ]
