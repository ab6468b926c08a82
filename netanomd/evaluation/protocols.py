"""The two evaluation protocols a sensor really has, and their metrics.

Owns splitting, training, threshold choice and scoring for one :class:`LabeledData`:

* ``clean``: train on the benign flows of an early time window (a baseline someone vetted),
  their host features computed as if the attack's flows had not been there;
* ``contaminated``: train on *all* flows of that window, labels unseen (day one on a sensor).

Rows are split in time order (random order when the data has no time): the first 50% train,
the next 15% validate, the last 35% test (NSL-KDD uses its own test file; its validation rows
are 15% of its train file). The deployed threshold is the validation split's best-F1 score when
the validation rows hold both classes, else the stored training-quantile rule; test labels are
never used to choose anything. Rows labeled Background/Unknown are scored but left out of every
metric, and counted.

Each protocol runs two models on the same rows: ``netanomd`` (flow + host features, one-sided
host columns floored at their training median as in a model, see :mod:`netanomd.features.floors`;
fitted on every training flow of the vetted clean window, and on the distinct behaviours of
the unvetted contaminated one, see :mod:`netanomd.model.robust`) and ``plain_iforest``
(scikit-learn's Isolation Forest on per-flow features only, defaults, every training row): the
baseline it must beat.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score

from netanomd.decision import thresholds
from netanomd.detectors import Detector, Scorer
from netanomd.errors import ModelError
from netanomd.evaluation.data import LabeledData
from netanomd.model import DEFAULT_THRESHOLD_QUANTILE
from netanomd.model.robust import DEFAULT_TRIM, fit_robust

PROTOCOLS = ("clean", "contaminated")
TRAIN, VALID = 0.50, 0.15
MIN_TRAIN = 30


class _SklearnIForest:
    """The plain baseline: scikit-learn defaults, score = -score_samples (higher = odder)."""

    def __init__(self, seed: int) -> None:
        self.model = IsolationForest(random_state=seed, n_jobs=1)

    def fit(self, X: np.ndarray) -> None:
        self.model.fit(X)

    def score(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(-self.model.score_samples(X), dtype=np.float64)


@dataclass
class Split:
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    how: str


def split(data: LabeledData, seed: int = 0) -> Split:
    n = len(data.y)
    if data.test_y is not None:
        idx = np.random.default_rng(seed).permutation(n)
        cut = int(n * (1 - VALID))
        return Split(idx[:cut], idx[cut:], np.empty(0, np.int64), "given test file")
    if data.ts is not None:
        order = np.argsort(data.ts, kind="stable")
        how = "time order"
    else:
        order = np.random.default_rng(seed).permutation(n)
        how = "random (no time)"
    a, b = int(n * TRAIN), int(n * (TRAIN + VALID))
    return Split(order[:a], order[a:b], order[b:], how)


@dataclass
class Result:
    """Metrics of one model under one protocol."""

    model: str
    protocol: str
    status: str = "ok"
    train_rows: int = 0
    test_rows: int = 0
    test_benign: int = 0
    test_malicious: int = 0
    test_excluded: int = 0
    threshold: float | None = None
    threshold_rule: dict[str, Any] = field(default_factory=dict)
    roc_auc: float | None = None
    pr_auc: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    alerts_per_10k: float | None = None
    confusion: dict[str, int] = field(default_factory=dict)
    recall_by_type: dict[str, dict[str, float]] = field(default_factory=dict)
    #: For the report: scores and labels of the test rows (not in the JSON).
    scores: np.ndarray | None = None
    labels: np.ndarray | None = None
    kinds: np.ndarray | None = None
    importance: dict[str, float] = field(default_factory=dict)
    #: ROC-AUC and PR-AUC of every repeat with another seed (this run's first), when repeated.
    runs: dict[str, list[float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        skip = {"scores", "labels", "kinds"}
        return {k: v for k, v in self.__dict__.items() if k not in skip}


def metrics(
    scores: np.ndarray, y: np.ndarray, kinds: np.ndarray, threshold: float, res: Result
) -> None:
    """Fill ``res`` with the test metrics (rows with y < 0 count only in alerts/10k)."""
    alerts = scores >= threshold
    res.alerts_per_10k = float(alerts.mean() * 10_000) if len(alerts) else None
    keep = y >= 0
    s, t, a = scores[keep], y[keep], alerts[keep]
    res.test_benign, res.test_malicious = int((t == 0).sum()), int((t == 1).sum())
    res.test_excluded = int((~keep).sum())
    tp = int((a & (t == 1)).sum())
    fp = int((a & (t == 0)).sum())
    fn = int((~a & (t == 1)).sum())
    tn = int((~a & (t == 0)).sum())
    res.confusion = {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    # Undefined (None) when there is nothing to divide by: no alerts, or no malicious flows.
    res.precision = tp / (tp + fp) if tp + fp else None
    res.recall = tp / (tp + fn) if tp + fn else None
    if res.recall is not None:
        p = res.precision or 0.0
        res.f1 = 2 * p * res.recall / (p + res.recall) if p + res.recall > 0 else 0.0
    if res.test_benign and res.test_malicious:
        res.roc_auc = float(roc_auc_score(t, s))
        res.pr_auc = float(average_precision_score(t, s))
    by: dict[str, dict[str, float]] = {}
    k = kinds[keep]
    for kind in sorted({str(x) for x in k[t == 1]}):
        m = (t == 1) & (k == kind)
        by[kind] = {"flows": int(m.sum()), "recall": float(a[m].mean())}
    res.recall_by_type = by
    res.scores, res.labels, res.kinds = scores, y, kinds


def permutation_importance(
    det: Scorer, X: np.ndarray, y: np.ndarray, names: list[str], seed: int, top: int = 12
) -> dict[str, float]:
    """Drop in ROC-AUC when one feature's test values are shuffled (larger = more used)."""
    keep = y >= 0
    X, y = X[keep], y[keep]
    if len(set(y.tolist())) < 2 or len(X) < 20:
        return {}
    rng = np.random.default_rng(seed)
    if len(X) > 5000:
        pick = rng.choice(len(X), 5000, replace=False)
        X, y = X[pick], y[pick]
    base = roc_auc_score(y, det.score(X))
    out = {}
    for j, name in enumerate(names):
        if np.ptp(X[:, j]) == 0:
            continue
        Xp = X.copy()
        Xp[:, j] = rng.permutation(Xp[:, j])
        out[name] = float(base - roc_auc_score(y, det.score(np.ascontiguousarray(Xp))))
    best = sorted(out.items(), key=lambda kv: -kv[1])[:top]
    return dict(best)


def run_protocol(
    data: LabeledData,
    protocol: str,
    make_detector: Callable[[], Detector],
    *,
    seed: int = 0,
    importance: bool = True,
) -> list[Result]:
    """Both models under one protocol."""
    sp = split(data, seed)
    train_mask = np.zeros(len(data.y), dtype=bool)
    train_mask[sp.train] = True
    if protocol == "clean":
        train_mask &= data.y == 0
    elif protocol != "contaminated":
        raise ValueError(f"unknown protocol {protocol!r}")
    if data.test_y is not None:
        assert data.test_X is not None and data.test_X_flow is not None
        assert data.test_kind is not None
        test = (data.test_X, data.test_X_flow, data.test_y, data.test_kind)
    else:
        test = (data.X[sp.test], data.X_flow[sp.test], data.y[sp.test], data.kind[sp.test])
    results = []
    # Unvetted training data (contaminated) is fitted on its distinct behaviours, keyed by the
    # per-flow columns, so that a flood cannot define normal. A vetted (clean) baseline is kept
    # whole, its volume being real, with host features computed without the attack's flows, as
    # in a clean period. Validation and test rows always come from the full stream; the plain
    # baseline fits every row of its per-flow features.
    vetted = protocol == "clean"
    n_flow = data.X_flow.shape[1]
    X_ours_train = data.X_benign_stream if vetted and data.X_benign_stream is not None else data.X
    for name, X, X_train, Xt, ours, det in (
        ("netanomd", data.X, X_ours_train, test[0], True, make_detector()),
        ("plain_iforest", data.X_flow, data.X_flow, test[1], False, _SklearnIForest(seed)),
    ):
        robust = ours and not vetted
        res = Result(model=name, protocol=protocol, test_rows=len(test[2]))
        Xtr = np.ascontiguousarray(X_train[train_mask])
        res.train_rows = len(Xtr)
        if len(Xtr) < MIN_TRAIN:
            res.status = f"skipped: {len(Xtr)} training rows in the {protocol} window"
            results.append(res)
            continue
        # netanomd floors its one-sided columns at their training median, as a model does.
        fit = fit_robust(
            det,
            Xtr,
            trim=DEFAULT_TRIM if robust else 0.0,
            distinct=robust,
            key_columns=n_flow,
            names=data.feature_names if ours else (),
        )
        Xv, Xt = fit.floors.apply(X[sp.valid]), fit.floors.apply(Xt)
        vs, vy = det.score(np.ascontiguousarray(Xv)), data.y[sp.valid]
        try:
            t, rule = thresholds.by_validation_f1(vs, vy)
        except ModelError:
            t, rule = thresholds.by_quantile(fit.behaviour_scores, DEFAULT_THRESHOLD_QUANTILE)
            rule["why"] = "validation split lacks one class"
        res.threshold, res.threshold_rule = t, rule | {"training": fit.info}
        scores = det.score(np.ascontiguousarray(Xt))
        metrics(scores, test[2], test[3], t, res)
        if importance and name == "netanomd":
            res.importance = permutation_importance(
                det, np.ascontiguousarray(Xt), test[2], data.feature_names, seed
            )
        results.append(res)
    return results
