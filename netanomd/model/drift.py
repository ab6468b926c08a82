"""Drift: how far today's traffic has moved from the model's training window.

Owns the training-window summary a model stores (``meta.json``'s ``drift`` entry, written by
training) and the population stability index (PSI) of new flows against it, per feature and
for the score distribution.

The summary keeps, per feature column and for the scores, the training deciles as cut points
and the share of training rows in each bin. Network features are heavily tied (a port, a
protocol, a zero byte count), so each distinct cut point is a bin of its own between the
open intervals around it: ``2k + 1`` bins for ``k`` cut points, and a feature that was always
0 in training still shows drift when it stops being 0.

PSI = sum over bins of (new - old) * ln(new / old), shares floored at :data:`EPSILON`. The
usual reading: below 0.1 stable, 0.1 to 0.25 moderate, above :data:`DRIFT_PSI` (0.25) drifted.
Drift is flagged when the score drifted or more than :data:`DRIFT_SHARE` of the columns did.
A model trained before this summary existed has no drift entry; :func:`summary_of` says so.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from netanomd.errors import ModelError
from netanomd.features import FlowFeatures
from netanomd.flow import FlowBatch

if TYPE_CHECKING:
    from netanomd.model.artifact import Model

log = logging.getLogger(__name__)

#: PSI above which a feature (or the score) counts as drifted.
DRIFT_PSI = 0.25
#: Floor on a bin's share, so an empty bin does not make PSI infinite.
EPSILON = 1e-4
#: Share of feature columns drifting that flags drift even when the score has not moved.
DRIFT_SHARE = 0.2
#: Cut points per column (deciles).
QUANTILES = tuple(i / 10 for i in range(1, 10))
#: Flows needed before drift is reported (PSI on a handful of flows is noise).
MIN_ROWS = 200


@dataclass(frozen=True)
class ColumnSummary:
    """One column of the training window: cut points and the training share per bin."""

    edges: np.ndarray
    shares: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> ColumnSummary:
        v = values[np.isfinite(values)]
        edges = np.unique(np.quantile(v, QUANTILES)) if v.size else np.empty(0)
        return cls(edges, _shares(edges, v))

    def to_dict(self) -> dict[str, list[float]]:
        return {"edges": [float(x) for x in self.edges], "shares": self.shares.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> ColumnSummary:
        try:
            edges = np.asarray(data["edges"], dtype=np.float64)
            shares = np.asarray(data["shares"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"drift summary of {where}: {exc}") from exc
        if shares.shape != (2 * len(edges) + 1,):
            raise ModelError(
                f"drift summary of {where}: {len(shares)} shares for {len(edges)} cut points"
            )
        return cls(edges, shares)

    def psi(self, values: np.ndarray) -> float:
        v = values[np.isfinite(values)]
        return psi(self.shares, _shares(self.edges, v))


def _bins(edges: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bin of each value: 2i for the interval below edge i, 2i+1 for edge i itself."""
    i = np.searchsorted(edges, v, side="left")
    exact = np.zeros(len(v), dtype=bool)
    inside = i < len(edges)
    exact[inside] = edges[i[inside]] == v[inside]
    return 2 * i + exact


def _shares(edges: np.ndarray, v: np.ndarray) -> np.ndarray:
    counts = np.bincount(_bins(edges, v), minlength=2 * len(edges) + 1).astype(np.float64)
    return counts / max(1, len(v))


def psi(old: np.ndarray, new: np.ndarray) -> float:
    """Population stability index between two bin-share vectors."""
    p = np.maximum(old, EPSILON)
    q = np.maximum(new, EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


@dataclass(frozen=True)
class TrainingWindow:
    """What a model remembers of its training window for drift."""

    features: dict[str, ColumnSummary]
    score: ColumnSummary
    rows: int

    def to_meta(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "quantiles": list(QUANTILES),
            "score": self.score.to_dict(),
            "features": {k: v.to_dict() for k, v in self.features.items()},
        }


def summarize(names: tuple[str, ...], X: np.ndarray, scores: np.ndarray) -> TrainingWindow:
    """The training window of feature matrix ``X`` (columns ``names``) and its ``scores``."""
    if X.shape[1] != len(names):
        raise ModelError(f"drift: {X.shape[1]} feature columns for {len(names)} names")
    cols = {n: ColumnSummary.fit(np.asarray(X[:, j], np.float64)) for j, n in enumerate(names)}
    return TrainingWindow(cols, ColumnSummary.fit(np.asarray(scores, np.float64)), len(X))


def summary_of(meta: dict[str, Any]) -> TrainingWindow | None:
    """The stored training window of a model's meta, None for a model trained without one."""
    data = meta.get("drift")
    if data is None:
        return None
    feats = {
        str(k): ColumnSummary.from_dict(v, f"feature {k}") for k, v in data["features"].items()
    }
    return TrainingWindow(feats, ColumnSummary.from_dict(data["score"], "score"), int(data["rows"]))


@dataclass(frozen=True)
class DriftReport:
    """PSI of a window of new flows against the training window."""

    rows: int
    score_psi: float
    feature_psi: dict[str, float]
    model_age_seconds: float | None

    @property
    def drifted(self) -> list[str]:
        """Drifted columns, most drifted first (``score`` for the score distribution)."""
        cols = dict(self.feature_psi, score=self.score_psi)
        return [k for k, v in sorted(cols.items(), key=lambda kv: -kv[1]) if v > DRIFT_PSI]

    @property
    def enough(self) -> bool:
        return self.rows >= MIN_ROWS

    @property
    def flagged(self) -> bool:
        """Drift worth a warning: enough flows, and the score distribution moved or more
        than :data:`DRIFT_SHARE` of the feature columns did (a column or two drifting on an
        ordinary day is not a changed network)."""
        columns = sum(v > DRIFT_PSI for v in self.feature_psi.values())
        share = columns / max(1, len(self.feature_psi))
        return self.enough and (self.score_psi > DRIFT_PSI or share > DRIFT_SHARE)

    def warning(self) -> str | None:
        """One line naming the drift, or None when it is not :attr:`flagged`."""
        if not self.flagged:
            return None
        top = ", ".join(
            f"{k} {self.score_psi if k == 'score' else self.feature_psi[k]:.2f}"
            for k in self.drifted[:5]
        )
        return (
            f"traffic drifted from the model's training window (PSI > {DRIFT_PSI}: {top}; "
            f"{len(self.drifted)} of {len(self.feature_psi) + 1} columns, {self.rows} flows); "
            "consider `netanomd retrain`"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "score_psi": round(self.score_psi, 4),
            "feature_psi": {k: round(v, 4) for k, v in self.feature_psi.items()},
            "drifted": self.drifted,
            "flagged": self.flagged,
            "model_age_seconds": self.model_age_seconds,
        }


def trained_at(meta: dict[str, Any]) -> float | None:
    """When the model was trained (its ``created_at``), epoch seconds; None when unknown."""
    try:
        return dt.datetime.fromisoformat(str(meta["created_at"])).timestamp()
    except (KeyError, ValueError):
        return None


def model_age(meta: dict[str, Any], now: float) -> float | None:
    """Seconds since the model was trained, None when unknown."""
    created = trained_at(meta)
    return None if created is None else max(0.0, now - created)


def measure(
    window: TrainingWindow,
    names: tuple[str, ...],
    X: np.ndarray,
    scores: np.ndarray,
    age: float | None = None,
) -> DriftReport:
    """PSI of the new flows (feature matrix ``X`` with columns ``names``, their ``scores``)."""
    per = {
        n: window.features[n].psi(np.asarray(X[:, j], np.float64))
        for j, n in enumerate(names)
        if n in window.features
    }
    score = window.score.psi(np.asarray(scores, np.float64))
    return DriftReport(len(X), score if math.isfinite(score) else 0.0, per, age)


#: Parts (scored batches) the daemon's sample holds before neighbours are merged.
MAX_PARTS = 64

#: A part of the sample: its newest flow time, a scored batch, the scores of its rows sampled
#: and which rows of the batch those are (None: all of them). A batch is sampled, and thinned,
#: by its row numbers: its rows are copied once, when parts are merged (:func:`_merged`).
_Part = tuple[float, FlowBatch, np.ndarray, "np.ndarray | None"]


def _merged(group: list[_Part]) -> _Part:
    """One part of ``group``'s sampled rows (their order kept), its newest flow time. Parts
    holding all their batch's rows are joined as chunks of one table (no rows copied); the
    sampled rows of the others are taken in one copy."""
    if len(group) == 1 and group[0][3] is None:
        return group[0]
    batch = FlowBatch.concat([b for _, b, _, _ in group]) if len(group) > 1 else group[0][1]
    if any(r is not None for *_, r in group):
        offsets = np.cumsum([0] + [len(b) for _, b, _, _ in group])
        index = [
            start + (np.arange(len(b)) if r is None else r)
            for start, (_, b, _, r) in zip(offsets.tolist(), group, strict=False)
        ]
        batch = batch.take(np.concatenate(index))
    scores = np.concatenate([s for _, _, s, _ in group])
    return max(t for t, _, _, _ in group), batch, scores, None


def _materialized(parts: Sequence[_Part]) -> list[_Part]:
    """``parts`` with the sampled rows of every part not merged yet copied, in one take."""
    lazy = [p for p in parts if p[3] is not None]
    if not lazy:
        return list(parts)
    _, taken, _, _ = _merged(lazy)
    out: list[_Part] = []
    start = 0
    for t, b, s, r in parts:
        if r is not None:
            b, start = taken.slice(start, len(r)), start + len(r)
        out.append((t, b, s, None))
    return out


#: The columns the sample keeps: what the per-flow features read, and the flow time.
KEPT = frozenset({"ts", *FlowFeatures.reads})


def _slim(batch: FlowBatch) -> FlowBatch:
    """``batch`` with the columns not in :data:`KEPT` all null: merging parts then copies a
    fraction of each row (the addresses, uids and signatures are most of its bytes)."""
    n, table = len(batch), batch.table
    columns = [
        table.column(i) if f.name in KEPT else pa.nulls(n, f.type)
        for i, f in enumerate(table.schema)
    ]
    return FlowBatch(pa.Table.from_arrays(columns, schema=table.schema))


class DriftMonitor:
    """The daemon's view: a uniform sample of the flows scored over the last ``window``
    seconds of flow time (every flow, alerts included; at most ``cap`` rows: when the sample
    outgrows it, every part is thinned by half and new flows are sampled at half the rate),
    measured against the model in use by a pass every ``every`` seconds (:meth:`check`, which
    the daemon's loop calls with its clock). The last pass is what the metrics and the health
    endpoint show (:attr:`latest`); a pass that finds drift the previous one did not (or the
    first pass of a model) logs a warning, and one that finds it gone says so.

    A sample of flows carries no host history, so the daemon compares the per-flow columns
    (the stateless feature blocks) and the score distribution, which the host columns feed;
    the tests measure every column on whole streams."""

    def __init__(
        self, cap: int = 20_000, window: float = 86400.0, every: float = 300.0, seed: int = 0
    ) -> None:
        if every <= 0:
            raise ModelError(f"drift: a pass every {every} seconds; expected more than 0")
        self.cap = cap
        self.window = window
        self.every = every
        self.rate = 1.0
        self.rng = np.random.default_rng(seed)
        self._parts: deque[_Part] = deque()
        self._n = 0  # rows sampled
        self._held = 0  # rows of the batches held (a part not merged yet holds its whole batch)
        self._lock = threading.Lock()
        #: (when, model id, report) of the last pass.
        self._last: tuple[float, str, DriftReport] | None = None
        self.passes = 0

    def observe(self, batch: FlowBatch, scores: np.ndarray) -> None:
        batch = _slim(batch)
        with self._lock:
            ts = batch.numeric("ts", fill=np.nan)
            rows = None
            if self.rate < 1.0:
                rows = np.flatnonzero(self.rng.random(len(batch)) < self.rate)
                ts, scores = ts[rows], scores[rows]
            newest = float(np.nanmax(ts)) if np.isfinite(ts).any() else -np.inf
            self._parts.append((newest, batch, scores, rows))
            self._n += len(scores)
            self._held += len(batch)
            while self._parts and self._parts[0][0] < newest - self.window:
                _, gone, sampled, _ = self._parts.popleft()
                self._n -= len(sampled)
                self._held -= len(gone)
            # merged when they are many, or hold many rows the sample does not keep
            if len(self._parts) > MAX_PARTS or self._held > 2 * self.cap:
                self._coalesce()
            while self._n > self.cap:
                self.rate /= 2
                thinned: deque[_Part] = deque()
                for t, b, s, r in self._parts:
                    keep = np.flatnonzero(self.rng.random(len(s)) < 0.5)
                    thinned.append((t, b, s[keep], keep if r is None else r[keep]))
                self._parts = thinned
                self._n = sum(len(s) for _, _, s, _ in thinned)

    def _coalesce(self) -> None:
        """Merge neighbouring parts into chunks of about ``cap / MAX_PARTS`` rows, each keeping
        its newest flow time, so thinning or reading the sample is a few table operations
        rather than one per batch the daemon scored (a chunk leaves the window with its newest
        flow)."""
        size = max(self.cap // MAX_PARTS, 1)
        merged: deque[_Part] = deque()
        group: list[_Part] = []
        rows = 0
        for part in _materialized(self._parts):
            group.append(part)
            rows += len(part[2])
            if rows >= size:
                merged.append(_merged(group))
                group, rows = [], 0
        if group:
            merged.append(_merged(group))
        self._parts = merged
        self._held = sum(len(b) for _, b, _, _ in merged)

    def scores(self) -> np.ndarray:
        """The sampled flows' scores (every flow, alerts or not): recent traffic's score
        distribution, e.g. for the analyst page's model view."""
        with self._lock:
            parts = [s for _, _, s, _ in self._parts]
        return np.concatenate(parts) if parts else np.empty(0)

    @property
    def latest(self) -> DriftReport | None:
        """The last pass's report (None before the first)."""
        last = self._last
        return None if last is None else last[2]

    def due(self, model: Model, now: float) -> bool:
        """Whether :meth:`check` would make a pass now: ``every`` seconds passed since the
        last one (``now``: epoch seconds), or the model changed."""
        last = self._last
        return last is None or last[1] != model.model_id or now - last[0] >= self.every

    def check(self, model: Model, now: float) -> DriftReport | None:
        """A pass when ``every`` seconds passed since the last one (``now``: epoch seconds),
        or the model changed; returns its report, None when no pass was due."""
        if not self.due(model, now):
            return None
        last = self._last
        report = self.measure(model, now)
        self.passes += 1
        warning = report.warning()
        was = last is not None and last[1] == model.model_id and last[2].flagged
        if warning and not was:
            log.warning("model %s: %s", model.model_id, warning)
        elif was and not report.flagged:
            log.info("model %s: traffic back within its training window", model.model_id)
        self._last = (now, model.model_id, report)
        return report

    def measure(self, model: Model, now: float) -> DriftReport:
        """Drift of the recent flows against ``model``'s training window."""
        with self._lock:
            parts = list(self._parts)
        age = model_age(model.meta, now)
        window = summary_of(model.meta)
        if window is None or not parts:
            return DriftReport(0, 0.0, {}, age)
        _, batch, scores, _ = _merged(parts)
        flow = [b for b in model.spec.blocks if isinstance(b, FlowFeatures)]
        if not flow:
            return DriftReport(0, 0.0, {}, age)
        # (stateless and never floored: the columns the model's own matrix has)
        X = np.hstack([b.transform(batch) for b in flow])
        names = tuple(n for b in flow for n in b.names)
        return measure(window, names, X, scores, age)
