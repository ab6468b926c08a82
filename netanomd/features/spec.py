"""The feature spec: an ordered list of feature blocks, stored with a model and checked on load.

Owns :class:`FeatureSpec`, which turns a :class:`~netanomd.flow.FlowBatch` into a ``float32``
matrix with named columns (the blocks' columns side by side), round-trips through plain data
for the model artifact (blocks by ``kind``, from :data:`~netanomd.features.blocks.BLOCK_TYPES`)
and refuses an artifact whose feature names this code would not reproduce.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from netanomd.errors import ModelError
from netanomd.features.blocks import BLOCK_TYPES, FeatureBlock
from netanomd.features.flow_block import FlowFeatures
from netanomd.flow import FlowBatch

#: Bump when the meaning of any column changes: artifacts record it and refuse a mismatch.
FEATURES_VERSION = 1


class FeatureSpec:
    """An ordered list of feature blocks: the "feature pipeline" stored with a model.

    Stateful blocks (host behaviour) remember the batches they transformed: a spec scores a
    stream. :meth:`fresh` is the same spec at the start of a new stream.
    """

    def __init__(self, blocks: Sequence[FeatureBlock] | None = None) -> None:
        self.blocks: list[FeatureBlock] = list(blocks) if blocks else [FlowFeatures()]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for b in self.blocks for n in b.names)

    def fit(self, batch: FlowBatch) -> None:
        for b in self.blocks:
            b.fit(batch)

    def reset(self) -> None:
        """Forget the state of stateful blocks (a new stream of flows starts)."""
        for b in self.blocks:
            b.reset()

    def fresh(self) -> FeatureSpec:
        """A copy with its own, empty stream state (this spec's state is left alone)."""
        return FeatureSpec.from_state(self.to_state())

    def transform(self, batch: FlowBatch) -> np.ndarray:
        """The ``float32`` matrix, each block writing its columns into its slice of it."""
        out = np.empty((len(batch), len(self.names)), dtype=np.float32)
        j = 0
        for b in self.blocks:
            width = len(b.names)
            b.transform_into(batch, out[:, j : j + width])
            j += width
        return out

    def to_state(self) -> dict[str, Any]:
        return {
            "version": FEATURES_VERSION,
            "blocks": [{"kind": b.kind, "state": b.to_state()} for b in self.blocks],
            "names": list(self.names),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FeatureSpec:
        """Rebuild the spec and check it yields exactly the stored feature names."""
        if state.get("version") != FEATURES_VERSION:
            raise ModelError(
                f"model features version {state.get('version')!r} does not match this "
                f"netanomd's features version {FEATURES_VERSION}: retrain the model"
            )
        blocks = []
        for i, entry in enumerate(state.get("blocks", [])):
            kind = entry.get("kind")
            if kind not in BLOCK_TYPES:
                raise ModelError(
                    f"features.blocks[{i}].kind: unknown feature block {kind!r} "
                    f"(known: {', '.join(sorted(BLOCK_TYPES))})"
                )
            blocks.append(BLOCK_TYPES[kind].from_state(entry.get("state", {})))
        spec = cls(blocks)
        if list(spec.names) != list(state.get("names", [])):
            raise ModelError(
                "feature names in the model do not match what this netanomd computes "
                f"(model has {len(state.get('names', []))}, code makes {len(spec.names)}): "
                "retrain the model"
            )
        return spec
