"""Named numpy columns of one length: the closed windows and the detections, without pandas.

Owns :class:`Table`, what :class:`~netanomd.behaviour.windows.HostWindows` closes (host and pair
windows) and :func:`~netanomd.behaviour.detectors.detect` names. A column is a numpy array
(numbers, or ``object`` for strings and lists); rows are taken by index or mask; the incident
tracker (:mod:`netanomd.behaviour.incidents`) reads a detection's row as a named tuple of its
columns.
Rows are matched on several columns by integer codes (:func:`row_codes`), not by a Python
tuple per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def objects(values: Iterable[object], count: int) -> np.ndarray:
    """An ``object`` array of ``count`` items, each kept as it is (lists stay one item)."""
    return np.fromiter(values, dtype=object, count=count)


def distinct(values: np.ndarray) -> tuple[list[Any], np.ndarray]:
    """The distinct values of a column and each row's index into them (``int64``); strings
    (an ``object`` column) are coded by Arrow, in order of first appearance, numbers sorted."""
    if values.dtype != object:
        uniq, codes = np.unique(values, return_inverse=True)
        return uniq.tolist(), np.asarray(codes, dtype=np.int64).reshape(-1)
    enc = pc.dictionary_encode(pa.array(values, pa.string()))
    idx = enc.indices
    names = enc.dictionary.to_pylist()
    if idx.null_count:  # None is a value of its own
        idx = idx.fill_null(len(names))
        names.append(None)
    return names, np.asarray(idx.to_numpy(zero_copy_only=False), dtype=np.int64)


def row_codes(*cols: np.ndarray) -> np.ndarray:
    """One ``int64`` code per row of ``cols`` (columns of one length: strings or numbers): two
    rows share a code exactly when every column holds equal values in both."""
    if not cols:
        return np.zeros(0, dtype=np.int64)
    code = distinct(np.asarray(cols[0]))[1]
    for col in cols[1:]:
        names, c = distinct(np.asarray(col))
        code = np.unique(code * len(names) + c, return_inverse=True)[1].reshape(-1)
    return code


def last_match(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """For each of ``wanted``, the last row of ``keys`` that holds it (-1: none)."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    pos = np.maximum(np.searchsorted(ordered, wanted, side="right") - 1, 0)
    if not len(order):
        return np.full(len(wanted), -1, dtype=np.int64)
    return np.where(ordered[pos] == wanted, order[pos], -1).astype(np.int64)


#: :meth:`Table.empty` by column names (no rows to write to: shared).
_EMPTY: dict[tuple[str, ...], Table] = {}


class Table:
    """Columns ``names`` (numpy arrays of one length); see the module docstring."""

    __slots__ = ("_cols", "columns")

    def __init__(self, cols: Mapping[str, np.ndarray], names: Sequence[str] | None = None) -> None:
        self.columns: tuple[str, ...] = tuple(cols if names is None else names)
        self._cols = {c: cols[c] for c in self.columns}
        lengths = {len(v) for v in self._cols.values()}
        if len(lengths) > 1:
            sizes = {c: len(v) for c, v in self._cols.items()}
            raise ValueError(f"Table columns differ in length: {sizes}")

    @classmethod
    def empty(cls, names: Sequence[str]) -> Table:
        """No rows (one shared table per ``names``: a batch that closes no window makes one)."""
        key = tuple(names)
        table = _EMPTY.get(key)
        if table is None:
            table = _EMPTY[key] = cls({c: np.zeros(0) for c in names}, names)
        return table

    @classmethod
    def concat(cls, parts: Sequence[Table], names: Sequence[str]) -> Table:
        """The rows of ``parts`` in order (empty parts add nothing)."""
        full = [p for p in parts if len(p)]
        if not full:
            return cls.empty(names)
        if len(full) == 1:
            return full[0]
        return cls({c: np.concatenate([p[c] for p in full]) for c in names}, names)

    def __len__(self) -> int:
        return len(self._cols[self.columns[0]]) if self.columns else 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self._cols[name]

    def take(self, rows: np.ndarray) -> Table:
        """Rows by index (ints) or mask (bools)."""
        return Table({c: v[rows] for c, v in self._cols.items()}, self.columns)

    def replace(self, **cols: np.ndarray) -> Table:
        """The same rows with columns ``cols`` replaced."""
        return Table({**self._cols, **cols}, self.columns)
