"""Standardisation shared by distance- and reconstruction-based detectors."""

from __future__ import annotations

import numpy as np

from netanomd.errors import ModelError


class Scaler:
    def __init__(self, mean: np.ndarray | None = None, scale: np.ndarray | None = None) -> None:
        self.mean, self.scale = mean, scale

    def fit(self, X: np.ndarray) -> np.ndarray:
        self.mean = X.mean(axis=0, dtype=np.float64)
        std = X.std(axis=0, dtype=np.float64)
        self.scale = np.where(std > 1e-9, std, 1.0)
        return self.transform(X)

    def transform(self, X: np.ndarray) -> np.ndarray:
        if self.mean is None or self.scale is None:
            raise ModelError("detector is not fitted")
        if X.ndim != 2 or X.shape[1] != len(self.mean):
            raise ModelError(f"expected {len(self.mean)} feature columns, got {X.shape[1:]}")
        return np.asarray((X - self.mean) / self.scale, dtype=np.float64)

    def arrays(self) -> dict[str, np.ndarray]:
        assert self.mean is not None and self.scale is not None
        return {"mean": self.mean, "scale": self.scale}


def need(arrays: dict[str, np.ndarray], *names: str) -> list[np.ndarray]:
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ModelError(f"detector state lacks arrays: {', '.join(missing)}")
    return [np.asarray(arrays[n]) for n in names]
