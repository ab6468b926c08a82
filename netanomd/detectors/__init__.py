"""Detectors: score feature rows; **higher score means more anomalous**. A detector never
decides (that is :mod:`netanomd.decision`'s job).

Contract (:class:`Detector`): ``fit(X)`` on a float32 matrix, ``score(X)`` returns float64
scores of the same length; ``to_state()``/``from_state()`` round-trip the fitted detector
through plain data (JSON-able params plus named numpy arrays), so that a model artifact never
needs pickle. :class:`Scorer` is the fitting-and-scoring half, all that robust fitting and the
evaluation need. Every detector a model may name is listed in
:mod:`netanomd.detectors.registry`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Scorer(Protocol):
    """Fits on feature rows and scores them (higher = more anomalous)."""

    def fit(self, X: np.ndarray) -> None: ...

    def score(self, X: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class Detector(Scorer, Protocol):
    """A :class:`Scorer` that a model artifact can store and load again."""

    #: Stable identifier stored in the artifact ("iforest", ...).
    kind: str

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able parameters, named arrays) that fully describe the fitted detector."""
        ...

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Detector:
        """The fitted detector :meth:`to_state` describes; :class:`ModelError` if it is
        incomplete or inconsistent."""
        ...
