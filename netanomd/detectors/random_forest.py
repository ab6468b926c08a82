"""Supervised Random Forest detector, for when labeled flows exist (``fit(X, y)``).

Score: the forest's probability that a flow is malicious. The fitted trees are stored as plain
arrays (children, split feature, threshold, leaf probability) and evaluated in numpy, so the
artifact needs no pickle. Without labels it refuses to fit: it is not an anomaly detector.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from netanomd.detectors._scale import need
from netanomd.errors import ModelError

_FIELDS = ("left", "right", "feature", "threshold", "prob")


class RandomForestDetector:
    kind = "random_forest"
    supervised = True

    def __init__(
        self, n_estimators: int = 100, max_depth: int | None = 16, random_state: int = 0
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.random_state = random_state
        self.trees: list[dict[str, np.ndarray]] = []
        self.n_features = 0

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> None:
        if y is None:
            raise ModelError("random_forest is supervised: it needs labels (y) to fit")
        y = np.asarray(y)
        if len(set(y.tolist())) < 2:
            raise ModelError("random_forest needs both benign and malicious training flows")
        rf = RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            random_state=self.random_state,
            n_jobs=1,
            class_weight="balanced",
        ).fit(X, y)
        pos = list(rf.classes_).index(1)
        self.trees = []
        for est in rf.estimators_:
            t = est.tree_
            value = t.value[:, 0, :]
            prob = value[:, pos] / np.maximum(value.sum(axis=1), 1e-12)
            self.trees.append(
                {
                    "left": t.children_left.astype(np.int32),
                    "right": t.children_right.astype(np.int32),
                    "feature": t.feature.astype(np.int32),
                    "threshold": t.threshold.astype(np.float64),
                    "prob": prob.astype(np.float64),
                }
            )
        self.n_features = X.shape[1]

    def score(self, X: np.ndarray) -> np.ndarray:
        if not self.trees:
            raise ModelError("random_forest is not fitted")
        X = np.asarray(X, dtype=np.float32).astype(np.float64)
        if X.shape[1] != self.n_features:
            raise ModelError(f"expected {self.n_features} feature columns, got {X.shape[1]}")
        total = np.zeros(len(X))
        rows = np.arange(len(X))
        for t in self.trees:
            node = np.zeros(len(X), dtype=np.int64)
            active = t["left"][node] != -1
            while active.any():
                n = node[active]
                go_left = X[rows[active], t["feature"][n]] <= t["threshold"][n]
                node[active] = np.where(go_left, t["left"][n], t["right"][n])
                active = t["left"][node] != -1
            total += t["prob"][node]
        return total / len(self.trees)

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if not self.trees:
            raise ModelError("random_forest is not fitted")
        arrays = {f"t{i}/{k}": t[k] for i, t in enumerate(self.trees) for k in _FIELDS}
        params = {
            "n_estimators": self.n_estimators,
            "max_depth": self.max_depth,
            "random_state": self.random_state,
            "trees": len(self.trees),
            "n_features": self.n_features,
        }
        return params, arrays

    @classmethod
    def from_state(
        cls, params: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> RandomForestDetector:
        n = int(params.get("trees", 0))
        det = cls(
            int(params.get("n_estimators", n)),
            params.get("max_depth"),
            int(params.get("random_state", 0)),
        )
        det.n_features = int(params.get("n_features", 0))
        for i in range(n):
            vals = need(arrays, *(f"t{i}/{k}" for k in _FIELDS))
            det.trees.append(dict(zip(_FIELDS, vals, strict=True)))
        if not det.trees:
            raise ModelError("random_forest state: no trees")
        return det
