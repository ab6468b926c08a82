"""Each series' usual value per entity: median and spread (MAD), per hour of day when it can.

Owns :class:`SeriesBaseline` and :func:`reason`. The baseline is fitted on the baseline rows;
when they span at least :data:`HOURLY_SPAN` seconds (two days) every (entity, hour of day) with
at least :data:`MIN_HOUR_ROWS` rows gets its own median and MAD ("its usual for this hour"),
the rest fall back to the entity's overall ones. The spread is ``1.4826 * MAD`` (a standard
deviation for normal data), never below the series' floor nor :data:`RELATIVE_FLOOR` of the
median, so a series that never moved in the baseline is not infinitely surprised by a small
change. :meth:`SeriesBaseline.compare` gives, per row and series, the usual value, the spread
and the deviation ``z = (value - usual) / spread``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netanomd.telemetry.rows import Rows
from netanomd.telemetry.series import Series, fmt

#: Baseline span (seconds) from which medians are kept per hour of day.
HOURLY_SPAN = 2 * 86400.0
#: Rows an (entity, hour) needs in the baseline for a median of its own.
MIN_HOUR_ROWS = 3
#: The spread is at least this share of the usual value.
RELATIVE_FLOOR = 0.05
#: MAD to standard deviation for normal data.
MAD_SCALE = 1.4826
_OVERALL = -1


def hour_of(ts: np.ndarray) -> np.ndarray:
    """Hour of day (UTC) of epoch seconds."""
    return ((np.asarray(ts, dtype=np.float64) // 3600) % 24).astype(np.int64)


@dataclass(frozen=True)
class Comparison:
    """Per row and series: the usual value, the spread and the deviation; and per row whether
    the usual value was the hour's (else the overall one)."""

    usual: np.ndarray
    spread: np.ndarray
    z: np.ndarray
    hourly: np.ndarray  # bool per row
    known: np.ndarray  # bool per row: the entity was in the baseline


class SeriesBaseline:
    """Median and spread per (entity, hour of day or overall) and series."""

    def __init__(self, series: tuple[Series, ...], hourly: bool) -> None:
        self.series = series
        self.hourly = hourly
        self.usual: dict[tuple[str, int], np.ndarray] = {}
        self.spread: dict[tuple[str, int], np.ndarray] = {}

    @classmethod
    def fit(cls, rows: Rows, mask: np.ndarray) -> SeriesBaseline:
        """Fit on the rows where ``mask`` is true."""
        ts = rows.ts[mask]
        hourly = bool(len(ts) and ts.max() - ts.min() >= HOURLY_SPAN)
        base = cls(rows.series, hourly)
        entity, values = rows.entity[mask], rows.values[mask]
        hours = hour_of(ts)
        for name in np.unique(entity):
            mine = entity == name
            base._add(str(name), _OVERALL, values[mine])
            if hourly:
                for h in np.unique(hours[mine]):
                    sel = mine & (hours == h)
                    if sel.sum() >= MIN_HOUR_ROWS:
                        base._add(str(name), int(h), values[sel])
        return base

    def _add(self, entity: str, hour: int, values: np.ndarray) -> None:
        with np.errstate(all="ignore"):
            usual = (
                np.nanmedian(values, axis=0) if len(values) else np.full(values.shape[1], np.nan)
            )
            mad = np.nanmedian(np.abs(values - usual), axis=0)
        floors = np.array([s.floor for s in self.series])
        spread = np.fmax(MAD_SCALE * mad, np.fmax(floors, RELATIVE_FLOOR * np.abs(usual)))
        spread = np.where(spread > 0, spread, 1e-9)
        self.usual[(entity, hour)] = np.nan_to_num(usual, nan=0.0)
        self.spread[(entity, hour)] = np.nan_to_num(spread, nan=1e-9)

    def compare(self, rows: Rows) -> Comparison:
        n, k = rows.values.shape
        usual = np.zeros((n, k))
        spread = np.ones((n, k))
        hourly = np.zeros(n, dtype=bool)
        known = np.zeros(n, dtype=bool)
        hours = hour_of(rows.ts)
        for i, (entity, hour) in enumerate(zip(rows.entity.tolist(), hours.tolist(), strict=True)):
            key = (entity, hour) if (entity, hour) in self.usual else (entity, _OVERALL)
            if key not in self.usual:
                continue
            known[i] = True
            hourly[i] = key[1] != _OVERALL
            usual[i], spread[i] = self.usual[key], self.spread[key]
        # A series an entity did not report (yet) is not unusual: its deviation is 0.
        seen = known[:, None] & np.isfinite(rows.values)
        z = np.where(seen, (np.nan_to_num(rows.values) - usual) / spread, 0.0)
        return Comparison(usual, spread, z, hourly, known)


def ratio(value: float, usual: float, floor: float) -> float | None:
    """How many times its usual a value is; None when the usual value is 0 or within the
    series' noise floor, where a ratio says nothing."""
    if value < 0 or usual <= 0 or usual < floor:
        return None
    return float(value / usual)


def reason(series: Series, value: float, usual: float, spread: float, hourly: bool) -> str:
    """``"receive throughput 38.0 MB/s, 14x its usual for this hour (2.7 MB/s)"``."""
    when = " for this hour" if hourly else ""
    r = ratio(value, usual, series.floor)
    head = f"{series.words} {fmt(value, series.unit)}"
    if r is None or r == 0:
        return (
            f"{head}, usually {fmt(usual, series.unit)}{when} (spread {fmt(spread, series.unit)})"
        )
    if r >= 1:
        times = f"{r:.0f}x" if r >= 10 else f"{r:.1f}x"
        return f"{head}, {times} its usual{when} ({fmt(usual, series.unit)})"
    below = 1 / r
    times = f"{below:.0f}x" if below >= 10 else f"{below:.1f}x"
    return f"{head}, {times} below its usual{when} ({fmt(usual, series.unit)})"
