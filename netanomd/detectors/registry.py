"""Every detector netanomd can train and load, by ``kind`` (stored in model artifacts)."""

from __future__ import annotations

from typing import Any

from netanomd.detectors.autoencoder import AutoencoderDetector
from netanomd.detectors.iforest import IsolationForestDetector
from netanomd.detectors.kmeans import KMeansDetector
from netanomd.detectors.random_forest import RandomForestDetector

DETECTOR_TYPES: dict[str, Any] = {
    c.kind: c
    for c in (IsolationForestDetector, KMeansDetector, AutoencoderDetector, RandomForestDetector)
}
UNSUPERVISED = tuple(k for k, c in DETECTOR_TYPES.items() if not getattr(c, "supervised", False))


def make(kind: str, seed: int = 0) -> Any:
    """A fresh detector of ``kind``."""
    from netanomd.model import detector_class

    return detector_class(kind)(random_state=seed)
