"""Features: turn a :class:`~netanomd.flow.FlowBatch` into a ``float32`` matrix with named columns.

One module per job:

* :mod:`~netanomd.features.flow_block`: the per-flow block (every column documented there);
* :mod:`~netanomd.features.host_block`: per-originator behaviour over sliding windows;
* :mod:`~netanomd.features.blocks`: the block contract, the explicit table of blocks a model may
  name, and their column properties (``log1p``, binary, one-sided);
* :mod:`~netanomd.features.spec`: :class:`FeatureSpec`, the ordered blocks stored in a model;
* :mod:`~netanomd.features.floors`: one-sided columns raised to their training median.

Imports run one way: the blocks know nothing of the table, the table knows the blocks, the
spec and the floors read the table.
"""

from __future__ import annotations

from netanomd.features.blocks import (
    BLOCK_TYPES,
    LOG1P_COLUMNS,
    ONE_SIDED_COLUMNS,
    FeatureBlock,
    is_binary,
)
from netanomd.features.floors import Floors
from netanomd.features.flow_block import FlowFeatures
from netanomd.features.host_block import HostFeatures
from netanomd.features.spec import FEATURES_VERSION, FeatureSpec

__all__ = [
    "BLOCK_TYPES",
    "FEATURES_VERSION",
    "LOG1P_COLUMNS",
    "ONE_SIDED_COLUMNS",
    "FeatureBlock",
    "FeatureSpec",
    "Floors",
    "FlowFeatures",
    "HostFeatures",
    "is_binary",
]
