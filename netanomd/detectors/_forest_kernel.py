"""numba kernel that evaluates a flattened isolation forest.

Layout: every tree is a complete binary tree of depth ``D`` stored in breadth-first order
(node ``k`` has children ``2k+1`` and ``2k+2``); ``feature[t, k]``/``threshold[t, k]`` for the
``2^D - 1`` internal nodes and ``leaf[t, j]`` for the ``2^D`` leaves. The walk is branch-free:
``k = 2k + 1 + (x[feature[k]] > threshold[k])``. Trees run in the outer loop and rows in
blocks, so one tree's arrays stay in cache while a block of rows goes through it.

NaN inputs: ``NaN > t`` is false, so a NaN always goes left (documented, deterministic).
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Rows per block: 256 rows x 64 features x 4 bytes stays well inside L2.
BLOCK = 256


@njit(
    "float64[:](float32[:, ::1], int32[:, ::1], float32[:, ::1], float64[:, ::1], int64)",
    cache=True,
    nogil=True,
    boundscheck=False,
)
def path_length_sums(
    X: np.ndarray, feature: np.ndarray, threshold: np.ndarray, leaf: np.ndarray, depth: int
) -> np.ndarray:  # pragma: no cover - compiled
    n = X.shape[0]
    n_trees = feature.shape[0]
    first_leaf = (1 << depth) - 1
    out = np.zeros(n, dtype=np.float64)
    for b0 in range(0, n, BLOCK):
        b1 = min(n, b0 + BLOCK)
        for t in range(n_trees):
            f = feature[t]
            th = threshold[t]
            lv = leaf[t]
            # Eight rows walk the tree together: their load chains overlap (latency-bound).
            i = b0
            while i + 8 <= b1:
                k0 = k1 = k2 = k3 = k4 = k5 = k6 = k7 = 0
                for _ in range(depth):
                    k0 = 2 * k0 + 1 + (X[i, f[k0]] > th[k0])
                    k1 = 2 * k1 + 1 + (X[i + 1, f[k1]] > th[k1])
                    k2 = 2 * k2 + 1 + (X[i + 2, f[k2]] > th[k2])
                    k3 = 2 * k3 + 1 + (X[i + 3, f[k3]] > th[k3])
                    k4 = 2 * k4 + 1 + (X[i + 4, f[k4]] > th[k4])
                    k5 = 2 * k5 + 1 + (X[i + 5, f[k5]] > th[k5])
                    k6 = 2 * k6 + 1 + (X[i + 6, f[k6]] > th[k6])
                    k7 = 2 * k7 + 1 + (X[i + 7, f[k7]] > th[k7])
                out[i] += lv[k0 - first_leaf]
                out[i + 1] += lv[k1 - first_leaf]
                out[i + 2] += lv[k2 - first_leaf]
                out[i + 3] += lv[k3 - first_leaf]
                out[i + 4] += lv[k4 - first_leaf]
                out[i + 5] += lv[k5 - first_leaf]
                out[i + 6] += lv[k6 - first_leaf]
                out[i + 7] += lv[k7 - first_leaf]
                i += 8
            while i < b1:
                k = 0
                for _ in range(depth):
                    k = 2 * k + 1 + (X[i, f[k]] > th[k])
                out[i] += lv[k - first_leaf]
                i += 1
    return out
