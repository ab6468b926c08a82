"""Score metric rows: a detector fitted on the baseline rows, each series' robust baseline to
name what is unusual.

Owns :class:`MetricModel` (``fit`` on baseline rows, ``score`` rows), :func:`features` and
:class:`Anomaly`. Each series is first compared with its usual value for the entity (and hour
of day, when the baseline is long enough: :mod:`netanomd.telemetry.baseline`); the detector's
row is every series' deviation ``z``, compressed as ``sign(z) * log1p(|z|)``
(:func:`features`), so one detector serves entities of any size, knows that a daytime load at
3 am is unusual, and a thousandfold rise is not a hundred times farther than a tenfold one.
The detector is one of netanomd's unsupervised detectors (:mod:`netanomd.detectors.registry`,
Isolation Forest by default), fitted by :func:`netanomd.model.robust.fit_robust` on the
baseline rows kept whole (the baseline is the period the operator calls normal); the
threshold is the ``quantile`` of the baseline rows'
scores (:func:`netanomd.decision.thresholds.by_quantile`). A row after (or outside) the
baseline is an anomaly when its score passes the threshold *and* at least one series is
``min_deviation`` spreads from its usual value (:mod:`netanomd.telemetry.baseline`): the
detector says the row is odd, the series say why, and a row none of them explains is counted
(:attr:`MetricRun.unexplained`) but not reported.

A row with a series *beyond the baseline's range* (more than ``min_deviation`` spreads past the
farthest deviation the baseline itself had, either way) is an anomaly whatever its score: an
Isolation Forest cannot extrapolate, a point past its training data's range takes the path of
the training extreme on that side, so a burst a thousand times the usual throughput scored 0.47
against a threshold of 0.60 when the baseline's busiest steps were a dense cluster (measured
with the Prometheus test's loopback burst). Rows of an entity the baseline never saw
cannot be compared and are counted in :attr:`MetricRun.unknown`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netanomd.decision.thresholds import by_quantile
from netanomd.detectors import Detector
from netanomd.detectors.registry import UNSUPERVISED, make
from netanomd.errors import InputError
from netanomd.features.floors import Floors
from netanomd.model.robust import fit_robust
from netanomd.telemetry.baseline import Comparison, SeriesBaseline, reason
from netanomd.telemetry.baseline import ratio as ratio_of
from netanomd.telemetry.rows import Rows
from netanomd.telemetry.series import Series

#: Quantile of the baseline rows' scores used as the threshold: low, because on a handful of
#: series an Isolation Forest's scores saturate near the baseline's own top scores (a CSV step
#: at 14x its usual throughput scored 0.62 where the baseline's top 1% reached 0.62 too); the
#: series' deviations are the second gate.
DEFAULT_QUANTILE = 0.95
#: Spreads (robust standard deviations) from its usual value that make a series unusual.
MIN_DEVIATION = 4.0
#: Fewest baseline rows a fit accepts.
MIN_BASELINE_ROWS = 10


@dataclass(frozen=True)
class Anomaly:
    """One anomalous row, named by the series farthest from its usual value."""

    entity: str
    ts: float
    score: float
    series: Series
    value: float
    usual: float
    spread: float
    z: float
    ratio: float | None
    hourly: bool
    reason: str
    #: The other unusual series of the row, farthest first: (series, value, usual, z, reason).
    also: tuple[tuple[Series, float, float, float, str], ...] = ()

    def evidence(self) -> dict[str, float]:
        """The numbers beside the reason (stored as the incident's evidence)."""
        out = {
            "value": self.value,
            "usual": self.usual,
            "spread": self.spread,
            "z": self.z,
            "score": self.score,
            "hourly": float(self.hourly),
        }
        if self.ratio is not None:
            out["ratio"] = self.ratio
        for s, value, usual, z, _ in self.also:
            out[f"{s.name}.value"], out[f"{s.name}.usual"], out[f"{s.name}.z"] = value, usual, z
        return {k: float(v) for k, v in out.items()}  # plain floats: every sink encodes them


@dataclass
class MetricRun:
    """What scoring a window found."""

    rows: Rows
    baseline: np.ndarray  # bool per row: not scored (the baseline)
    scores: np.ndarray
    threshold: float
    kind: str
    comparison: Comparison
    anomalies: list[Anomaly] = field(default_factory=list)
    #: Rows past the threshold that no series explains.
    unexplained: int = 0
    #: Scored rows of entities absent from the baseline.
    unknown: int = 0
    #: Anomalous rows found beyond the baseline's range while under the threshold.
    beyond: int = 0


@dataclass
class MetricModel:
    """What a baseline teaches: each series' usual values, the fitted detector and its
    threshold, and the range of deviations the baseline itself had (stored with
    :mod:`netanomd.telemetry.modelfile`)."""

    series: tuple[Series, ...]
    baseline: SeriesBaseline
    detector: Detector
    floors: Floors
    threshold: float
    #: Per series, the lowest and highest deviation of the baseline rows.
    lo: np.ndarray
    hi: np.ndarray
    min_deviation: float = MIN_DEVIATION
    #: JSON-able facts: quantile, baseline rows and time span.
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.detector.kind

    @classmethod
    def fit(
        cls,
        rows: Rows,
        baseline: np.ndarray,
        *,
        kind: str = "iforest",
        quantile: float = DEFAULT_QUANTILE,
        min_deviation: float = MIN_DEVIATION,
        seed: int = 0,
    ) -> MetricModel:
        """Fit on the rows where ``baseline`` is true (module docstring)."""
        if kind not in UNSUPERVISED:
            raise InputError(f"--detector {kind!r}: expected one of {', '.join(UNSUPERVISED)}")
        baseline = np.asarray(baseline, dtype=bool)
        if baseline.sum() < MIN_BASELINE_ROWS:
            raise InputError(
                f"the baseline holds {int(baseline.sum())} rows; at least {MIN_BASELINE_ROWS} "
                "are needed (a longer window, a smaller step, or another --baseline)"
            )
        usual = SeriesBaseline.fit(rows, baseline)
        cmp = usual.compare(rows)
        detector = make(kind, seed)
        fit = fit_robust(detector, features(cmp)[baseline], distinct=False, names=rows.names)
        threshold, _ = by_quantile(fit.scores, quantile)
        seen = cmp.z[baseline & cmp.known]
        ts = rows.ts[baseline]
        info = {
            "quantile": quantile,
            "rows": int(baseline.sum()),
            "start": float(ts.min()),
            "end": float(ts.max()),
        }
        return cls(
            rows.series,
            usual,
            detector,
            fit.floors,
            threshold,
            seen.min(axis=0),
            seen.max(axis=0),
            min_deviation,
            info,
        )

    def score(self, rows: Rows, scored: np.ndarray) -> MetricRun:
        """Score the rows where ``scored`` is true (module docstring)."""
        if [s.name for s in rows.series] != [s.name for s in self.series]:
            raise InputError(
                f"the rows hold series {rows.names}, the model was fitted on "
                f"{[s.name for s in self.series]}"
            )
        scored = np.asarray(scored, dtype=bool)
        cmp = self.baseline.compare(rows)
        scores = self.detector.score(self.floors.apply(features(cmp)))
        run = MetricRun(rows, ~scored, scores, self.threshold, self.kind, cmp)
        run.unknown = int((scored & ~cmp.known).sum())
        dev = self.min_deviation
        beyond = ((cmp.z > self.hi + dev) | (cmp.z < self.lo - dev)).any(axis=1)
        run.beyond = int((scored & cmp.known & beyond & (scores <= self.threshold)).sum())
        for i in np.flatnonzero(scored & cmp.known & ((scores > self.threshold) | beyond)):
            z = np.abs(cmp.z[i])
            order = [int(j) for j in np.argsort(-z, kind="stable") if z[j] >= dev]
            if not order:
                run.unexplained += 1
                continue
            run.anomalies.append(_anomaly(rows, cmp, scores, int(i), order))
        return run


def features(cmp: Comparison) -> np.ndarray:
    """The detector's matrix: each series' deviation from its usual value, ``sign(z) *
    log1p(|z|)`` (float32)."""
    z = np.nan_to_num(cmp.z, nan=0.0, posinf=0.0, neginf=0.0)
    return np.ascontiguousarray(np.sign(z) * np.log1p(np.abs(z)), dtype=np.float32)


def _anomaly(rows: Rows, cmp: Comparison, scores: np.ndarray, i: int, order: list[int]) -> Anomaly:
    values = np.nan_to_num(rows.values[i], nan=0.0)
    hourly = bool(cmp.hourly[i])

    def said(j: int) -> str:
        return reason(rows.series[j], values[j], cmp.usual[i, j], cmp.spread[i, j], hourly)

    top = order[0]
    return Anomaly(
        entity=str(rows.entity[i]),
        ts=float(rows.ts[i]),
        score=float(scores[i]),
        series=rows.series[top],
        value=float(values[top]),
        usual=float(cmp.usual[i, top]),
        spread=float(cmp.spread[i, top]),
        z=float(cmp.z[i, top]),
        ratio=ratio_of(values[top], cmp.usual[i, top], rows.series[top].floor),
        hourly=hourly,
        reason=said(top),
        also=tuple(
            (
                rows.series[j],
                float(values[j]),
                float(cmp.usual[i, j]),
                float(cmp.z[i, j]),
                said(j),
            )
            for j in order[1:]
        ),
    )
