"""Every detector netanomd can train and load, by ``kind`` (stored in model artifacts).

A detector's module is imported when its kind is first asked for, so loading an Isolation
Forest model does not import scikit-learn's clustering and neural-network code.
"""

from __future__ import annotations

import importlib

from netanomd.detectors import Detector
from netanomd.errors import ModelError

#: kind -> (module, class, supervised).
_KINDS: dict[str, tuple[str, str, bool]] = {
    "iforest": ("netanomd.detectors.iforest", "IsolationForestDetector", False),
    "kmeans": ("netanomd.detectors.kmeans", "KMeansDetector", False),
    "autoencoder": ("netanomd.detectors.autoencoder", "AutoencoderDetector", False),
    "random_forest": ("netanomd.detectors.random_forest", "RandomForestDetector", True),
}
UNSUPERVISED = tuple(k for k, (_, _, supervised) in _KINDS.items() if not supervised)


def detector_class(kind: str) -> type[Detector]:
    """The detector class registered for ``kind`` (its module imported on first use)."""
    if kind not in _KINDS:
        known = ", ".join(sorted(_KINDS))
        raise ModelError(f"unknown detector kind {kind!r} (known: {known})")
    module, name, supervised = _KINDS[kind]
    cls: type[Detector] = getattr(importlib.import_module(module), name)
    if cls.kind != kind or bool(getattr(cls, "supervised", False)) != supervised:
        raise ModelError(f"detector registry: {module}.{name} does not match kind {kind!r}")
    return cls


def __getattr__(name: str) -> dict[str, type[Detector]]:
    """``DETECTOR_TYPES``: every detector class by kind (imports them all)."""
    if name == "DETECTOR_TYPES":
        return {kind: detector_class(kind) for kind in _KINDS}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make(kind: str, seed: int = 0) -> Detector:
    """A fresh detector of ``kind``."""
    cls: type = detector_class(kind)  # every detector takes random_state
    det: Detector = cls(random_state=seed)
    return det
