"""Arrays as the feature kernels take them: read-only, whatever Arrow gave.

numba compiles one version of a kernel per argument type, and read-only is part of an array's
type. A numpy view of an Arrow buffer is read-only, while a copy (a column with nulls, a batch
of several chunks, a cast) is writable, so the same kernel met a new type whenever a live batch
had no nulls where the last had some: a compile (or a load from numba's cache) on the scoring
thread, with the batch's alerts waiting. :func:`frozen` makes every input read-only, so one
compiled version serves every batch.
"""

from __future__ import annotations

import numpy as np


def frozen(a: np.ndarray) -> np.ndarray:
    """``a``, read-only (no copy)."""
    a.flags.writeable = False
    return a
