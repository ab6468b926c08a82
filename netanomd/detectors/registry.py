"""Every detector netanomd can train and load, by ``kind`` (stored in model artifacts)."""

from __future__ import annotations

from netanomd.detectors import Detector
from netanomd.detectors.autoencoder import AutoencoderDetector
from netanomd.detectors.iforest import IsolationForestDetector
from netanomd.detectors.kmeans import KMeansDetector
from netanomd.detectors.random_forest import RandomForestDetector
from netanomd.errors import ModelError

DETECTOR_TYPES: dict[str, type[Detector]] = {
    c.kind: c
    for c in (IsolationForestDetector, KMeansDetector, AutoencoderDetector, RandomForestDetector)
}
UNSUPERVISED = tuple(k for k, c in DETECTOR_TYPES.items() if not getattr(c, "supervised", False))


def detector_class(kind: str) -> type[Detector]:
    """The detector class registered for ``kind``."""
    if kind not in DETECTOR_TYPES:
        known = ", ".join(sorted(DETECTOR_TYPES))
        raise ModelError(f"unknown detector kind {kind!r} (known: {known})")
    return DETECTOR_TYPES[kind]


def make(kind: str, seed: int = 0) -> Detector:
    """A fresh detector of ``kind``."""
    cls: type = detector_class(kind)  # every detector takes random_state
    det: Detector = cls(random_state=seed)
    return det
