"""Fitting a detector on training traffic that may hold attacks.

On day one a sensor cannot know which of its traffic is clean. Automated malicious traffic
(C&C heartbeats, scans, floods) is also *repetitive*: thousands of flows with the same shape.
Fitted on raw volume, a density-style detector learns that flood as the most normal thing on
the network. Two defences, both unsupervised:

* **distinct behaviours** (:func:`distinct_behaviours`, the default for unvetted data): fit on
  one row per behaviour, where a behaviour is a flow's per-flow features rounded to a grid
  (:data:`BEHAVIOUR_GRID`: one unit of the log-scaled byte, packet and duration features, i.e.
  an e-fold, and the exact value of every flag). What the detector learns is then *which*
  behaviours occur, not how often: a flood weighs as much as one connection of its kind. A
  quantile threshold is then a quantile over behaviours too (:attr:`RobustFit.behaviour_scores`),
  so a flood that is most of the training flows still alerts when its behaviour is odd.
* **trimming** (``trim``): fit, drop the most anomalous share of the rows, refit. Measured on the
  shared data it helps less than distinct behaviours and costs a little when combined with
  them (README, "Offline use"), so it is off by default and kept as an option.

A vetted baseline (``distinct=False``, ``trim=0``) is kept whole: its volume is real.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from netanomd.detectors import Scorer
from netanomd.features.floors import Floors

log = logging.getLogger(__name__)

#: Default share of the most anomalous training rows dropped before the final fit.
DEFAULT_TRIM = 0.0
#: Grid the behaviour key is rounded to (in feature units; log features are natural logs).
BEHAVIOUR_GRID = 1.0
#: Fewer distinct behaviours than this and the detector is fitted on every row instead.
MIN_DISTINCT = 3


def distinct_behaviours(
    X: np.ndarray, key_columns: int | None = None, grid: float = BEHAVIOUR_GRID
) -> np.ndarray:
    """Indices (ascending) of the first row of each distinct behaviour in ``X``.

    The key is the first ``key_columns`` columns (all when None) rounded to ``grid``.
    """
    if len(X) == 0:
        return np.empty(0, dtype=np.int64)
    key = np.round(np.asarray(X[:, :key_columns], dtype=np.float64) / grid)
    _, first = np.unique(key, axis=0, return_index=True)
    return np.sort(first).astype(np.int64)


@dataclass
class RobustFit:
    """What :func:`fit_robust` did."""

    #: The final fit's score of every training row.
    scores: np.ndarray
    #: The rows a quantile threshold is taken over: one per distinct behaviour when the fit was
    #: on distinct behaviours ("as odd as the rarest 0.5% of behaviours seen"), else every row.
    behaviour_scores: np.ndarray
    #: JSON-able summary, stored with the threshold rule.
    info: dict[str, int | float | bool]
    #: One-sided floors fitted on the same rows as the detector (:mod:`netanomd.features.floors`);
    #: apply them to whatever else the detector will score.
    floors: Floors


def fit_robust(
    detector: Scorer,
    X: np.ndarray,
    *,
    trim: float = DEFAULT_TRIM,
    distinct: bool = True,
    key_columns: int | None = None,
    names: Sequence[str] = (),
) -> RobustFit:
    """Fit ``detector`` on ``X`` (optionally on its distinct behaviours, optionally trimmed),
    its one-sided columns (by ``names``) floored at their median over the rows it is fitted on.
    """
    keep: np.ndarray | None = None
    info: dict[str, int | float | bool] = {"rows": len(X), "distinct": False, "trim": trim}
    if distinct:
        keep = distinct_behaviours(X, key_columns)
        info["behaviours"] = len(keep)
        if len(keep) >= MIN_DISTINCT:
            info["distinct"] = True
        else:
            log.warning(
                "only %d distinct behaviours in %d training flows: fitting on every flow",
                len(keep),
                len(X),
            )
            keep = None
    floors = Floors.fit(names, X[keep] if keep is not None else X)
    X = floors.apply(X)
    fit_rows = np.ascontiguousarray(X[keep]) if keep is not None else X
    detector.fit(fit_rows)
    if trim > 0.0 and len(fit_rows) >= 100:
        fit_scores = detector.score(fit_rows)
        keep_rows = fit_scores <= np.quantile(fit_scores, 1.0 - trim)
        if keep_rows.sum() >= 50:
            detector.fit(np.ascontiguousarray(fit_rows[keep_rows]))
    scores = detector.score(X)
    return RobustFit(scores, scores[keep] if keep is not None else scores, info, floors)
