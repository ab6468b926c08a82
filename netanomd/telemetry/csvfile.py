"""Offline metrics from a CSV file of the first seed's shape.

Owns :func:`read_csv`. The file has a header; one column names the time (``timestamp``,
``time`` or ``ts``: ISO 8601, UTC unless it says otherwise, or epoch seconds), one the entity
(``container``, ``instance`` or ``host``), and every other column is a numeric series (``cpu``,
``memory``, ``throughput``, ``latency``, ...). A column's unit comes from its name's suffix
(:data:`SUFFIX_UNITS`: ``memory_bytes`` is bytes, ``latency_ms`` milliseconds), else it has
none; its noise floor is 1% of its 99th percentile of magnitudes. A bad cell is an
:class:`~netanomd.errors.InputError` naming the file, line and column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from netanomd.errors import InputError
from netanomd.telemetry.series import Series

TIME_COLUMNS = ("timestamp", "time", "ts")
ENTITY_COLUMNS = ("container", "instance", "host")
#: Name suffix -> unit (longest first).
SUFFIX_UNITS = (
    ("_bytes_per_second", "B/s"),
    ("_bps", "B/s"),
    ("_bytes", "B"),
    ("_percent", "%"),
    ("_pct", "%"),
    ("_ms", "ms"),
    ("_seconds", "s"),
)
#: A CSV series' noise floor, as a share of its 99th percentile magnitude.
FLOOR_SHARE = 0.01


def read_csv(path: str | Path) -> tuple[pd.DataFrame, tuple[Series, ...]]:
    """The samples (:data:`netanomd.telemetry.rows.SAMPLE_COLUMNS`) and series of a CSV file."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except OSError as exc:
        raise InputError(f"--csv {path}: cannot read it ({exc.strerror})") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a CSV file ({exc})") from exc
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    time_col = next((c for c in TIME_COLUMNS if c in frame.columns), None)
    entity_col = next((c for c in ENTITY_COLUMNS if c in frame.columns), None)
    if time_col is None or entity_col is None:
        raise InputError(
            f"{path}: expected a time column ({'/'.join(TIME_COLUMNS)}) and an entity column "
            f"({'/'.join(ENTITY_COLUMNS)}); the header has {', '.join(frame.columns)}"
        )
    value_cols = [c for c in frame.columns if c not in (time_col, entity_col)]
    if not value_cols:
        raise InputError(f"{path}: no series columns besides {time_col} and {entity_col}")
    if frame.empty:
        raise InputError(f"{path}: no rows")
    ts = _times(frame[time_col], path, time_col)
    long = []
    series = []
    for col in value_cols:
        values = _numbers(frame[col], path, col)
        finite = np.abs(values[np.isfinite(values)])
        floor = FLOOR_SHARE * float(np.quantile(finite, 0.99)) if finite.size else 0.0
        series.append(Series(col, "", col.replace("_", " "), _unit(col), floor, entity_col))
        long.append(
            pd.DataFrame(
                {"entity": frame[entity_col].to_numpy(), "ts": ts, "series": col, "value": values}
            )
        )
    samples = pd.concat(long, ignore_index=True)
    samples = samples[np.isfinite(samples["value"])]
    return samples.reset_index(drop=True), tuple(series)


def _unit(name: str) -> str:
    return next((unit for suffix, unit in SUFFIX_UNITS if name.endswith(suffix)), "")


def _first_bad(text: pd.Series, parsed: pd.Series) -> int:
    """The first row whose non-empty text did not parse, or -1."""
    bad = np.flatnonzero((parsed.isna() & (text.str.strip() != "")).to_numpy())
    return int(bad[0]) if bad.size else -1


def _numbers(text: pd.Series, path: Path, col: str) -> np.ndarray:
    parsed = pd.to_numeric(text.str.strip(), errors="coerce")
    i = _first_bad(text, parsed)
    if i >= 0:
        raise InputError(f"{path}, line {i + 2}, column {col}: {text.iloc[i]!r} is not a number")
    return parsed.to_numpy(dtype=np.float64)


def _times(text: pd.Series, path: Path, col: str) -> np.ndarray:
    stripped = text.str.strip()
    numeric = pd.to_numeric(stripped, errors="coerce")
    if numeric.notna().all():
        return numeric.to_numpy(dtype=np.float64)
    parsed = pd.to_datetime(stripped, errors="coerce", utc=True, format="ISO8601")
    if parsed.isna().any():
        i = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise InputError(
            f"{path}, line {i + 2}, column {col}: {text.iloc[i]!r} is not an ISO date/time "
            "or epoch seconds"
        )
    seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return seconds.to_numpy(dtype=np.float64)
