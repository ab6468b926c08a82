"""The feature blocks netanomd knows, in one explicit table, and what their columns mean.

Owns the :class:`FeatureBlock` contract, :data:`BLOCK_TYPES` (every block a model artifact may
name, by ``kind``: listed here, never registered by importing a module, so loading a model
needs no other import first) and the column properties the blocks declare, gathered over the
table: which columns are ``log1p`` of a quantity (:data:`LOG1P_COLUMNS`, shown to people as
``expm1``), which are 0/1 (:func:`is_binary`), and which are one-sided
(:data:`ONE_SIDED_COLUMNS`: only high values can mean an attack, see
:mod:`netanomd.features.floors`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from netanomd.features.flow_block import FlowFeatures
from netanomd.features.host_block import HostFeatures
from netanomd.flow import FlowBatch


@runtime_checkable
class FeatureBlock(Protocol):
    """A group of feature columns computed from a batch."""

    #: Table key, stored in the artifact.
    kind: ClassVar[str]
    #: Columns that are ``log1p`` of a count, size, duration or rate.
    log1p: ClassVar[frozenset[str]]
    #: Columns where only high values can mean an attack.
    one_sided: ClassVar[frozenset[str]]
    #: 0/1 columns (flags and one-hot categories).
    binary: ClassVar[frozenset[str]]

    @property
    def names(self) -> tuple[str, ...]: ...

    def fit(self, batch: FlowBatch) -> None:
        """Learn whatever the block needs from training data (may do nothing)."""
        ...

    def reset(self) -> None:
        """Forget stream state (may do nothing)."""
        ...

    def transform(self, batch: FlowBatch) -> np.ndarray:
        """``float32`` matrix of shape ``(len(batch), len(names))``."""
        ...

    def transform_into(self, batch: FlowBatch, out: np.ndarray) -> None:
        """The same columns written into ``out``, a ``float32`` view of that shape (a column
        slice of a wider matrix will do)."""
        ...

    def to_state(self) -> dict[str, Any]:
        """JSON-able parameters that recreate the fitted block."""
        ...

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FeatureBlock:
        """The block :meth:`to_state` describes."""
        ...


#: kind -> block class: every block a model artifact may name.
BLOCK_TYPES: dict[str, type[FeatureBlock]] = {
    FlowFeatures.kind: FlowFeatures,
    HostFeatures.kind: HostFeatures,
}

LOG1P_COLUMNS: frozenset[str] = frozenset().union(*(b.log1p for b in BLOCK_TYPES.values()))
ONE_SIDED_COLUMNS: frozenset[str] = frozenset().union(*(b.one_sided for b in BLOCK_TYPES.values()))
BINARY_COLUMNS: frozenset[str] = frozenset().union(*(b.binary for b in BLOCK_TYPES.values()))


def is_binary(name: str) -> bool:
    """True for 0/1 feature columns (flags and one-hot categories)."""
    return name in BINARY_COLUMNS
