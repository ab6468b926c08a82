"""Samples to feature rows: one row per (entity, step), one column per series.

Owns :data:`SAMPLE_COLUMNS` (what every metrics reader returns: entity, ts, series, value; one
row per sample) and :class:`Rows` (:func:`build_rows`). A series no entity reported in the
window is left out (its name in :attr:`Rows.absent`); a series an entity does not report at all
(node-exporter's CPU on a container) is NaN in its rows, and a step an entity missed keeps the
entity's previous value. What the detector sees is each value's deviation from its usual value
(:mod:`netanomd.telemetry.scoring`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from netanomd.errors import InputError
from netanomd.telemetry.series import Series

#: The columns of a samples frame, with their dtypes.
SAMPLE_COLUMNS: dict[str, str] = {
    "entity": "object",
    "ts": "float64",
    "series": "object",
    "value": "float64",
}


@dataclass
class Rows:
    """Feature rows in time order (entity ascending within a step)."""

    entity: np.ndarray  # str per row
    ts: np.ndarray  # float64 epoch seconds per row
    #: (rows, series) values as read; NaN only where an entity never reported the series.
    values: np.ndarray
    series: tuple[Series, ...]
    #: Names of the requested series that no entity reported in the window.
    absent: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.series]


def build_rows(samples: pd.DataFrame, series: Sequence[Series], *, keep_all: bool = False) -> Rows:
    """Pivot ``samples`` (:data:`SAMPLE_COLUMNS`) into :class:`Rows` over ``series``; with
    ``keep_all``, a series without samples stays as a column of NaN (a stored model's
    columns are fixed)."""
    missing = set(SAMPLE_COLUMNS) - set(samples.columns)
    if missing:
        raise InputError(f"samples lack column(s) {sorted(missing)}")
    wanted = [s.name for s in series]
    samples = samples[samples["series"].isin(wanted) & np.isfinite(samples["value"])]
    if samples.empty:
        raise InputError(
            f"no samples for any of the series {', '.join(wanted)} in the window "
            "(is the exporter scraped, and the window right?)"
        )
    wide = samples.pivot_table(
        index=["entity", "ts"], columns="series", values="value", aggfunc="sum"
    )
    for s in series:
        if keep_all and s.name not in wide.columns:
            wide[s.name] = np.nan
    present = [s for s in series if s.name in wide.columns]
    wide = wide[[s.name for s in present]].sort_index()
    # A step an entity missed keeps its last value; what it never reported stays NaN.
    wide = wide.groupby(level="entity").ffill()
    wide = wide.reset_index().sort_values(["ts", "entity"], kind="stable")
    return Rows(
        entity=wide["entity"].astype(str).to_numpy(dtype=object),
        ts=wide["ts"].to_numpy(dtype=np.float64),
        values=wide[[s.name for s in present]].to_numpy(dtype=np.float64),
        series=tuple(present),
        absent=tuple(s.name for s in series if s.name not in wide.columns),
    )
