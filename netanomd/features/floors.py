"""One-sided features: a value below the training median is as typical as the median.

Owns :class:`Floors`, the per-column floor a model applies to its feature matrix before the
detector and the explanations see it. Isolation Forest isolates unusually *low* values as
readily as high ones, but for the columns the feature blocks declare one-sided
(:data:`netanomd.features.blocks.ONE_SIDED_COLUMNS`: a host's flow count, rate, distinct
destinations and ports, failure share, beaconing regularity) only high values describe an
attack. Without a floor, a host in a quiet spell — one NTP query in its window — looks as odd
on four correlated columns at once as a scan does, and outranks a real C&C flow.

The floor is the training median of each one-sided column, over the rows the detector is
fitted on: every flow of a vetted baseline, the distinct behaviours of unvetted traffic (so a
flood cannot set the floor to its own level and hide anything below it, as RemcosRAT's
beacon would set ``host_periodicity``'s); :func:`netanomd.model.robust.fit_robust` fits both
together. It is stored in the model artifact, and
the same :meth:`Floors.apply` serves training, live scoring and evaluation. For an Isolation
Forest, fitting on floored columns is what matters (no split then falls below a floor, so a
lower value takes the floor's path); distance-based detectors and the explanations need the
floor at scoring time too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from netanomd.errors import ModelError
from netanomd.features.blocks import ONE_SIDED_COLUMNS

#: Quantile of the training values used as each one-sided column's floor.
FLOOR_QUANTILE = 0.5


class Floors:
    """Per-column lower bounds for the one-sided columns of a feature matrix."""

    def __init__(
        self,
        names: Sequence[str],
        columns: Sequence[str],
        values: np.ndarray,
        quantile: float = FLOOR_QUANTILE,
    ) -> None:
        index = {n: i for i, n in enumerate(names)}
        missing = [c for c in columns if c not in index]
        if missing:
            raise ModelError(f"floors name columns the features lack: {', '.join(missing)}")
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (len(columns),) or not np.all(np.isfinite(values)):
            raise ModelError(f"floors need {len(columns)} finite values, got shape {values.shape}")
        self.columns = tuple(columns)
        self.values = values
        self.quantile = float(quantile)
        self._idx = np.array([index[c] for c in columns], dtype=np.int64)
        self._rows: dict[tuple[int, np.dtype[Any]], np.ndarray] = {}

    @classmethod
    def fit(cls, names: Sequence[str], X: np.ndarray, q: float = FLOOR_QUANTILE) -> Floors:
        """Floors at the ``q`` quantile of the training rows ``X`` for the one-sided columns
        among ``names`` (none, for feature sets without any)."""
        columns = [n for n in names if n in ONE_SIDED_COLUMNS]
        if not columns or len(X) == 0:
            return cls(names, [], np.empty(0), q)
        idx = [list(names).index(c) for c in columns]
        return cls(names, columns, np.quantile(X[:, idx], q, axis=0), q)

    def apply(self, X: np.ndarray) -> np.ndarray:
        """A copy of ``X`` with each one-sided column raised to its floor (``X`` itself when
        there are no one-sided columns)."""
        if not len(self.columns) or len(X) == 0:
            return X
        floored: np.ndarray = np.maximum(X, self._row(X.shape[1], X.dtype))  # (copy + floors)
        return floored

    def _row(self, width: int, dtype: np.dtype[Any]) -> np.ndarray:
        """The floor of every column of a ``width``-wide matrix: ``-inf`` where there is none
        (``max(x, -inf)`` is ``x``, NaN included)."""
        key = (width, dtype)
        row = self._rows.get(key)
        if row is None:
            row = np.full(width, -np.inf, dtype=dtype)
            row[self._idx] = self.values.astype(dtype)
            self._rows[key] = row
        return row

    def to_state(self) -> tuple[dict[str, Any], np.ndarray]:
        """JSON-able description and the values array, for the model artifact."""
        return {"columns": list(self.columns), "quantile": self.quantile}, self.values
