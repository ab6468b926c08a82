"""K-Means detector: distance to the nearest centroid, k chosen by the elbow method.

Fits K-Means on standardised features for k = 2..``k_max``, picks k at the elbow of the
inertia curve (the point furthest from the line joining the first and last inertia) and
records the silhouette score of every k (on a sample) next to it. A flow's score is its
distance to the nearest centroid divided by that cluster's 99th-percentile training distance
(about 1 at the edge of a cluster). Each cluster has a profile: its share of training flows and
the features that set it apart (largest standardised centroid coordinates).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from netanomd.detectors._scale import Scaler, need
from netanomd.errors import ModelError


class KMeansDetector:
    kind = "kmeans"

    def __init__(self, k_max: int = 10, random_state: int = 0, k: int | None = None) -> None:
        self.k_max = k_max
        self.random_state = random_state
        self.k = k
        self.scaler = Scaler()
        self.centroids: np.ndarray | None = None
        self.radius: np.ndarray | None = None
        self.inertia: dict[int, float] = {}
        self.silhouette: dict[int, float] = {}
        self.profiles: list[dict[str, Any]] = []
        self.feature_names: list[str] = []

    def fit(self, X: np.ndarray) -> None:
        Z = self.scaler.fit(np.asarray(X, dtype=np.float64))
        rng = np.random.default_rng(self.random_state)
        sample = Z[rng.choice(len(Z), min(len(Z), 2000), replace=False)]
        if len(Z) < 3:
            raise ModelError(f"k-means needs at least 3 training rows, got {len(Z)}")
        fits = {}
        for k in range(2, min(self.k_max, len(Z) - 1) + 1):
            km = KMeans(n_clusters=k, n_init=3, random_state=self.random_state).fit(Z)
            fits[k] = km
            self.inertia[k] = float(km.inertia_)
            labels = km.predict(sample)
            if len(set(labels.tolist())) > 1:
                self.silhouette[k] = float(silhouette_score(sample, labels))
        self.k = self.k or _elbow(self.inertia)
        km = fits[self.k]
        self.centroids = np.asarray(km.cluster_centers_)
        d, lab = self._nearest(Z)
        self.radius = np.array(
            [
                max(float(np.quantile(d[lab == c], 0.99)), 1e-6) if (lab == c).any() else 1.0
                for c in range(self.k)
            ]
        )
        self.profiles = []
        for c in range(self.k):
            top = np.argsort(-np.abs(self.centroids[c]))[:5]
            self.profiles.append(
                {
                    "cluster": c,
                    "share": float((lab == c).mean()),
                    "features": {int(j): float(self.centroids[c, j]) for j in top},
                }
            )

    def _nearest(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.centroids is not None
        d2 = ((Z[:, None, :] - self.centroids[None, :, :]) ** 2).sum(axis=2)
        lab = d2.argmin(axis=1)
        return np.sqrt(d2[np.arange(len(Z)), lab]), lab

    def score(self, X: np.ndarray) -> np.ndarray:
        if self.centroids is None or self.radius is None:
            raise ModelError("k-means detector is not fitted")
        out = np.empty(len(X))
        for o in range(0, len(X), 8192):  # bounded memory for the distance matrix
            d, lab = self._nearest(self.scaler.transform(np.asarray(X[o : o + 8192], np.float64)))
            out[o : o + 8192] = d / self.radius[lab]
        return out

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if self.centroids is None or self.radius is None:
            raise ModelError("k-means detector is not fitted")
        params = {
            "k": self.k, "k_max": self.k_max, "random_state": self.random_state,
            "inertia": {str(k): v for k, v in self.inertia.items()},
            "silhouette": {str(k): v for k, v in self.silhouette.items()},
            "profiles": self.profiles,
        }  # fmt: skip
        return params, {"centroids": self.centroids, "radius": self.radius} | self.scaler.arrays()

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> KMeansDetector:
        c, r, mean, scale = need(arrays, "centroids", "radius", "mean", "scale")
        if c.ndim != 2 or len(r) != len(c) or c.shape[1] != len(mean) != len(scale):
            raise ModelError("k-means state: array shapes do not agree")
        det = cls(int(params.get("k_max", 10)), int(params.get("random_state", 0)), len(c))
        det.centroids, det.radius = c, r
        det.scaler = Scaler(mean, scale)
        det.profiles = list(params.get("profiles", []))
        det.inertia = {int(k): float(v) for k, v in params.get("inertia", {}).items()}
        det.silhouette = {int(k): float(v) for k, v in params.get("silhouette", {}).items()}
        return det


def _elbow(inertia: dict[int, float]) -> int:
    """k furthest below the straight line from the first to the last inertia (normalised)."""
    ks = np.array(sorted(inertia))
    if len(ks) <= 2:
        return int(ks[0])
    y = np.array([inertia[k] for k in ks])
    x = (ks - ks[0]) / (ks[-1] - ks[0])
    yn = (y - y[-1]) / max(y[0] - y[-1], 1e-12)
    return int(ks[int(np.argmax((1 - x) - yn))])
