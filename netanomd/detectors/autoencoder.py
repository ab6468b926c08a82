"""Autoencoder detector: reconstruction error of a small neural network (scikit-learn's
MLPRegressor trained to reproduce its standardised input through a bottleneck).

Scoring is a plain numpy forward pass over the stored weights (ReLU hidden layers, identity
output), so the artifact holds only arrays. Score: mean squared reconstruction error.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor

from netanomd.detectors._scale import Scaler, need
from netanomd.errors import ModelError


class AutoencoderDetector:
    kind = "autoencoder"

    def __init__(
        self, hidden: tuple[int, ...] = (32, 8, 32), max_iter: int = 200, random_state: int = 0
    ) -> None:
        self.hidden = tuple(hidden)
        self.max_iter = max_iter
        self.random_state = random_state
        self.scaler = Scaler()
        self.weights: list[np.ndarray] = []
        self.biases: list[np.ndarray] = []

    def fit(self, X: np.ndarray) -> None:
        Z = self.scaler.fit(np.asarray(X, dtype=np.float64))
        net = MLPRegressor(
            hidden_layer_sizes=self.hidden,
            max_iter=self.max_iter,
            random_state=self.random_state,
            early_stopping=len(Z) >= 200,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            net.fit(Z, Z)
        self.weights = [np.asarray(w) for w in net.coefs_]
        self.biases = [np.asarray(b) for b in net.intercepts_]

    def score(self, X: np.ndarray) -> np.ndarray:
        if not self.weights:
            raise ModelError("autoencoder is not fitted")
        Z = self.scaler.transform(np.asarray(X, dtype=np.float64))
        h = Z
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                np.maximum(h, 0.0, out=h)
        return np.asarray(((h - Z) ** 2).mean(axis=1))

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if not self.weights:
            raise ModelError("autoencoder is not fitted")
        arrays = {f"w{i}": w for i, w in enumerate(self.weights)}
        arrays |= {f"b{i}": b for i, b in enumerate(self.biases)}
        params = {
            "hidden": list(self.hidden),
            "max_iter": self.max_iter,
            "random_state": self.random_state,
            "layers": len(self.weights),
        }
        return params, arrays | self.scaler.arrays()

    @classmethod
    def from_state(
        cls, params: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> AutoencoderDetector:
        n = int(params.get("layers", 0))
        if n < 1:
            raise ModelError("autoencoder state: no layers")
        names = [f"w{i}" for i in range(n)] + [f"b{i}" for i in range(n)] + ["mean", "scale"]
        got = need(arrays, *names)
        det = cls(
            tuple(params.get("hidden", ())),
            int(params.get("max_iter", 200)),
            int(params.get("random_state", 0)),
        )
        det.weights, det.biases = got[:n], got[n : 2 * n]
        det.scaler = Scaler(got[-2], got[-1])
        width = len(got[-2])
        if det.weights[0].shape[0] != width or det.weights[-1].shape[1] != width:
            raise ModelError("autoencoder state: layer shapes do not match the features")
        return det
