"""The last N days of a Zeek log archive, what ``netanomd train`` and ``netanomd retrain`` read
with ``--zeek-archive DIR --days N [--until YYYY-MM-DD]``.

Zeek's archiver (``zeekctl``, or ``zeek-archiver``) keeps a directory per day of rotated logs:
``<logdir>/YYYY-MM-DD/conn.HH:MM:SS-HH:MM:SS.log.gz``. A day is a directory named by its date
holding at least one ``conn.*.log.gz`` (other logs, ``conn-summary`` included, are not flows);
other directories are not days. Days are read oldest first, each day's logs in name (so time)
order.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from pathlib import Path

from netanomd.errors import InputError

DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: The conn logs of one day directory.
CONN_LOGS = "conn.*.log.gz"


def add_window_arguments(p: argparse.ArgumentParser, days: int) -> None:
    """``--days`` and ``--until``: the window :func:`day_window` reads."""
    p.add_argument("--days", type=int, default=days, help=f"days to train on (default {days})")
    p.add_argument(
        "--until", metavar="YYYY-MM-DD", help="last day of the window (default today, UTC)"
    )


def day_window(until: str | None, days: int, command: str) -> tuple[dt.date, dt.date]:
    """(first, last) day of the window of ``days`` days ending ``until`` (default today)."""
    if days < 1:
        raise InputError(f"{command}: --days {days} must be at least 1")
    try:
        last = dt.date.fromisoformat(until) if until else dt.datetime.now(dt.UTC).date()
    except ValueError:
        raise InputError(f"{command}: --until {until!r} is not a date (YYYY-MM-DD)") from None
    return last - dt.timedelta(days=days - 1), last


def archive_days(
    logdir: Path, first: dt.date, last: dt.date, command: str
) -> list[tuple[dt.date, list[Path]]]:
    """The conn logs of each day in ``[first, last]`` of a Zeek log archive, oldest first."""
    if not logdir.is_dir():
        raise InputError(f"{command}: {logdir}: no such log archive directory")
    out = []
    for d in sorted(p for p in logdir.iterdir() if p.is_dir() and DAY.match(p.name)):
        try:
            day = dt.date.fromisoformat(d.name)
        except ValueError:  # 2026-13-45: named like a day, but none
            continue
        files = sorted(d.glob(CONN_LOGS))
        if first <= day <= last and files:
            out.append((day, files))
    return out


def where(logdir: str) -> str:
    """The layout read, for messages."""
    return f"{logdir}/YYYY-MM-DD/{CONN_LOGS}"
