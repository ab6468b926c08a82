"""numba kernel that evaluates a flattened isolation forest.

Layout: every tree is a complete binary tree of depth ``D`` stored in breadth-first order
(node ``k`` has children ``2k+1`` and ``2k+2``); ``2^D - 1`` internal nodes and ``2^D`` leaves
(``leaf[t, j]``: the path length of leaf ``j``). The walk is branch-free:
``k = 2k + 1 + (x[feature[k]] > threshold[k])``.

Integer compares: a float32's bits, read as an int32 and mapped by :func:`order_keys`, order as
the floats do, so one ``int64`` per internal node holds both its feature (high half) and its
threshold's key (low half), made by :func:`pack_nodes`: a step of the walk loads the node, then
the row's key, instead of a feature, a threshold and a value. The kernel maps a block of rows to
keys once, then walks every tree over it. NaN maps below every key (``NaN > t`` is false: a NaN
always goes left, as the float compare did) and -0.0 to 0.0's key (they are equal as floats).

The walk is latency-bound (each step's load waits for the previous step's), so eight walks run
together: two rows through four trees. On the bench model (100 trees of depth 8, 57 features,
one core), 0.66 us a row, against 0.75 with float compares and 0.89 for eight rows through one
tree. Every row's path lengths are added in the same order (four trees a group, groups in tree
order) whichever rows it is walked with, so a row scores the same alone as in a batch, bit for
bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Rows per block: 256 rows x 64 features x 4 bytes of keys stay inside L2.
BLOCK = 256
_NAN_KEY = np.int32(np.iinfo(np.int32).min)


def order_keys(values: np.ndarray) -> np.ndarray:
    """int32 keys of float32 values that compare as the values do (NaN lowest, -0.0 as 0.0)."""
    v = np.array(values, dtype=np.float32)  # a copy: -0.0 is rewritten below
    v[v == 0] = 0.0
    bits = v.view(np.int32)
    keys = bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))
    keys[np.isnan(v)] = _NAN_KEY
    return keys


def pack_nodes(feature: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """One int64 per internal node: its feature in the high half, its threshold's key in the
    low half (what :func:`path_length_sums` walks)."""
    low = order_keys(threshold).astype(np.int64) & np.int64(0xFFFFFFFF)
    return np.ascontiguousarray((feature.astype(np.int64) << 32) | low)


@njit(
    "float64[:](float32[:, ::1], int64[:, ::1], float64[:, ::1], int64)",
    cache=True,
    nogil=True,
    boundscheck=False,
)
def path_length_sums(
    X: np.ndarray, nodes: np.ndarray, leaf: np.ndarray, depth: int
) -> np.ndarray:  # pragma: no cover - compiled
    n, m = X.shape
    n_trees = nodes.shape[0]
    first_leaf = (1 << depth) - 1
    out = np.zeros(n, dtype=np.float64)
    bits = X.view(np.int32)
    keys = np.empty((min(n, BLOCK), m), dtype=np.int32)
    for b0 in range(0, n, BLOCK):
        rows = min(n, b0 + BLOCK) - b0
        for r in range(rows):  # the block's rows as order keys (order_keys, inline)
            for c in range(m):
                v = bits[b0 + r, c]
                mag = v & 0x7FFFFFFF
                key = v ^ ((v >> 31) & 0x7FFFFFFF)
                if mag == 0:
                    key = 0
                elif mag > 0x7F800000:
                    key = -2147483648
                keys[r, c] = key
        t = 0
        while t + 4 <= n_trees:
            n0, n1, n2, n3 = nodes[t], nodes[t + 1], nodes[t + 2], nodes[t + 3]
            l0, l1, l2, l3 = leaf[t], leaf[t + 1], leaf[t + 2], leaf[t + 3]
            i = 0
            while i < rows:
                j = i + 1 if i + 1 < rows else i  # an odd last row walks twice, added once
                a0 = a1 = a2 = a3 = c0 = c1 = c2 = c3 = 0
                for _ in range(depth):
                    v = n0[a0]
                    a0 = 2 * a0 + 1 + (keys[i, v >> 32] > np.int32(v))
                    v = n1[a1]
                    a1 = 2 * a1 + 1 + (keys[i, v >> 32] > np.int32(v))
                    v = n2[a2]
                    a2 = 2 * a2 + 1 + (keys[i, v >> 32] > np.int32(v))
                    v = n3[a3]
                    a3 = 2 * a3 + 1 + (keys[i, v >> 32] > np.int32(v))
                    v = n0[c0]
                    c0 = 2 * c0 + 1 + (keys[j, v >> 32] > np.int32(v))
                    v = n1[c1]
                    c1 = 2 * c1 + 1 + (keys[j, v >> 32] > np.int32(v))
                    v = n2[c2]
                    c2 = 2 * c2 + 1 + (keys[j, v >> 32] > np.int32(v))
                    v = n3[c3]
                    c3 = 2 * c3 + 1 + (keys[j, v >> 32] > np.int32(v))
                a0 -= first_leaf
                a1 -= first_leaf
                a2 -= first_leaf
                a3 -= first_leaf
                out[b0 + i] += l0[a0] + l1[a1] + l2[a2] + l3[a3]
                if j != i:
                    c0 -= first_leaf
                    c1 -= first_leaf
                    c2 -= first_leaf
                    c3 -= first_leaf
                    out[b0 + j] += l0[c0] + l1[c1] + l2[c2] + l3[c3]
                i += 2
            t += 4
        while t < n_trees:  # the last n_trees % 4 trees, one at a time
            nd, lv = nodes[t], leaf[t]
            for i in range(rows):
                k = 0
                for _ in range(depth):
                    v = nd[k]
                    k = 2 * k + 1 + (keys[i, v >> 32] > np.int32(v))
                out[b0 + i] += lv[k - first_leaf]
            t += 1
    return out
