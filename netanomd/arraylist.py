"""A doubly linked list kept in arrays, for numba kernels that keep things in an order they
change one item at a time (least recently used first, oldest first): ``prev[e]``/``nxt[e]``
are item ``e``'s neighbours (-1: none) and ``meta[HEAD]``/``meta[TAIL]`` its ends (-1: empty).
Used by the host features' host table and the daemon's de-duplication table."""

from __future__ import annotations

import numba as nb
import numpy as np

#: Where the list's ends are kept in ``meta`` (the users keep their own fields after them).
HEAD, TAIL = 0, 1


@nb.njit(cache=True, nogil=True, boundscheck=False)
def unlink(
    prev: np.ndarray, nxt: np.ndarray, meta: np.ndarray, e: int
) -> None:  # pragma: no cover - compiled
    """Take item ``e`` out of the list (its own links are left as they were)."""
    p, q = prev[e], nxt[e]
    if p >= 0:
        nxt[p] = q
    else:
        meta[HEAD] = q
    if q >= 0:
        prev[q] = p
    else:
        meta[TAIL] = p


@nb.njit(cache=True, nogil=True, boundscheck=False)
def push_front(
    prev: np.ndarray, nxt: np.ndarray, meta: np.ndarray, e: int
) -> None:  # pragma: no cover - compiled
    """Put item ``e`` (not in the list) at its head."""
    head = meta[HEAD]
    prev[e], nxt[e] = -1, head
    if head >= 0:
        prev[head] = e
    else:
        meta[TAIL] = e
    meta[HEAD] = e


@nb.njit(cache=True, nogil=True, boundscheck=False)
def push_back(
    prev: np.ndarray, nxt: np.ndarray, meta: np.ndarray, e: int
) -> None:  # pragma: no cover - compiled
    """Put item ``e`` (not in the list) at its tail."""
    tail = meta[TAIL]
    prev[e], nxt[e] = tail, -1
    if tail >= 0:
        nxt[tail] = e
    else:
        meta[HEAD] = e
    meta[TAIL] = e
