"""Arrow string columns as the numpy views a numba kernel walks, and their 64-bit hashes.

Owns :func:`string_views` (a column's offsets, bytes and validity, without copying a single
chunk), :func:`hash_strings` (one 64-bit hash per value, nulls hashed as ``""``) and
:func:`codes` (each value's index in a short list of words), so the feature kernels read
strings straight from Arrow's buffers instead of Python objects.
"""

from __future__ import annotations

import functools

import numba as nb
import numpy as np
import pyarrow as pa

from netanomd.bytescan import words
from netanomd.features._frozen import frozen

_NO_NULLS = frozen(np.ones(0, dtype=np.bool_))

# 64-bit FNV-1a over the bytes, then the splitmix64 finaliser to spread the bits.
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def string_views(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(offsets, data, valid)`` of a string column: value ``r`` is
    ``data[offsets[r]:offsets[r + 1]]``; ``valid`` is empty when the column has no nulls, else
    one bool per value. A single chunk is viewed, not copied; all three are read-only."""
    if isinstance(col, pa.ChunkedArray):
        col = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    if not pa.types.is_string(col.type):
        col = col.cast(pa.string())
    n = len(col)
    _, offsets_buf, data_buf = col.buffers()
    if offsets_buf is None or n == 0:
        offsets = np.zeros(n + 1, dtype=np.int32)
    else:
        offsets = np.frombuffer(offsets_buf, np.int32, count=n + 1, offset=col.offset * 4)
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    valid = np.asarray(col.is_valid()) if col.null_count else _NO_NULLS
    return frozen(offsets), frozen(data), frozen(valid)  # (one kernel type: features._frozen)


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _hash_kernel(
    offsets: np.ndarray, data: np.ndarray, valid: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    check = valid.shape[0] > 0
    for r in range(out.shape[0]):
        h = _FNV_OFFSET
        if not check or valid[r]:
            for k in range(offsets[r], offsets[r + 1]):
                h = (h ^ np.uint64(data[k])) * _FNV_PRIME
        h = (h ^ (h >> _S30)) * _MIX1
        h = (h ^ (h >> _S27)) * _MIX2
        out[r] = h ^ (h >> _S31)


def hash_strings(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A ``uint64`` hash per value of a string column (a null hashes as ``""``)."""
    offsets, data, valid = string_views(col)
    out = np.empty(len(offsets) - 1, dtype=np.uint64)
    _hash_kernel(offsets, data, valid, out)
    return out


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _codes_kernel(
    offsets: np.ndarray,
    data: np.ndarray,
    valid: np.ndarray,
    names: np.ndarray,
    name_at: np.ndarray,
    fold: bool,
    null: int,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    check = valid.shape[0] > 0
    for r in range(out.shape[0]):
        if check and not valid[r]:
            out[r] = null
            continue
        a, m = offsets[r], offsets[r + 1] - offsets[r]
        code = -1
        for w in range(name_at.shape[0] - 1):
            if name_at[w + 1] - name_at[w] != m:
                continue
            q = 0
            while q < m:
                c = data[a + q]
                if fold and 65 <= c <= 90:  # A-Z
                    c += 32
                if c != names[name_at[w] + q]:
                    break
                q += 1
            if q == m:
                code = w
                break
        out[r] = code


@functools.cache
def _words(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``names`` as :func:`netanomd.bytescan.words` lays them out, read-only (one compiled
    kernel for every call) and made once."""
    table, at = words(names)
    return frozen(table), frozen(at)


def codes(
    col: pa.ChunkedArray | pa.Array, names: tuple[str, ...], *, fold: bool = False, null: int = -1
) -> np.ndarray:
    """Each value's index in ``names`` (int8; -1 when absent, ``null`` for a null). With
    ``fold``, ASCII upper-case letters match the lower-case ones of ``names``."""
    offsets, data, valid = string_views(col)
    table, at = _words(names)
    out = np.empty(len(offsets) - 1, dtype=np.int8)
    _codes_kernel(offsets, data, valid, table, at, fold, null, out)
    return frozen(out)
