"""``netanomd alerts``: list stored alerts."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

import orjson

from netanomd.commands._display import alert_line
from netanomd.errors import InputError
from netanomd.sinks.sqlite import default_db_path, query_alerts


def parse_since(text: str, option: str = "--since") -> float:
    """Epoch seconds from an ISO date/time (UTC unless it says otherwise), epoch seconds, or a
    relative age such as ``90m``, ``24h``, ``7d``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return dt.datetime.now(dt.UTC).timestamp() - float(text[:-1]) * units[text[-1]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InputError(
            f"{option} {text!r}: expected an ISO date/time, epoch seconds, or an age like 24h"
        ) from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("alerts", help="list stored alerts")
    p.add_argument("--db", metavar="PATH", help=f"alert database (default {default_db_path()})")
    p.add_argument("--since", metavar="WHEN", help="ISO time, epoch seconds, or age (24h, 7d)")
    p.add_argument("--min-score", type=float, metavar="S")
    p.add_argument("--incident", metavar="ID", help="the flow alerts of this incident (id prefix)")
    p.add_argument("--limit", type=int, default=50, help="at most this many; 0 for all (50)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = query_alerts(
        args.db or default_db_path(),
        since=parse_since(args.since) if args.since else None,
        min_score=args.min_score,
        limit=args.limit or None,
        incident=args.incident,
    )
    for a in rows:
        if args.json:
            print(orjson.dumps(a.to_dict()).decode())
        else:
            print(alert_line(a))
    return 0
