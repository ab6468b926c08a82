"""How alerts are printed on a terminal (one line each)."""

from __future__ import annotations

import datetime as dt

from netanomd.flow import endpoint
from netanomd.sinks.sqlite import StoredAlert


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    if ts < 1e9:  # CTU/IoT-23 logs sometimes carry relative seconds
        return f"+{ts:.3f}s"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def alert_line(a: StoredAlert) -> str:
    proto = a.proto or "-"
    svc = f"/{a.service}" if a.service else ""
    return (
        f"{a.score:.3f}  {when(a.ts)}  {endpoint(a.orig_h, a.orig_p)} -> "
        f"{endpoint(a.resp_h, a.resp_p)} {proto}{svc}  {a.reason}"
    )
