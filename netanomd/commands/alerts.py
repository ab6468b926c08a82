"""``netanomd alerts``: list stored flow alerts, as a table or as JSON lines.

Also owns what the listing commands (``alerts``, ``incidents``) print alike: the "showing N of
M" line with its hint when a time filter hides every match (:func:`summary`), and printing an
aligned table (:func:`print_table`). Reading their time options is :mod:`netanomd.store.read`'s.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import orjson

from netanomd.commands._display import when
from netanomd.errors import InputError
from netanomd.sinks.sqlite import (
    AlertQuery,
    Page,
    StoredAlert,
    daemon_db_path,
    default_db_path,
    reading_db_path,
)
from netanomd.store.read import alerts_of, parse_since


def db_help() -> str:
    return (
        f"database (default {default_db_path()} if it exists, else the daemon's "
        f"{daemon_db_path()}); repeat to read several as one (one per daemon sharing the work)"
    )


def db_paths(given: Sequence[str] | None) -> list[Path]:
    """The databases a reading command opens: each ``--db`` given, or the default one."""
    return [reading_db_path(p) for p in given] if given else [reading_db_path(None)]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "alerts",
        help="list stored flow alerts",
        description=(
            "List the flow alerts in the alert database, highest score first (--sort time: "
            "newest first). Times are flow time: when the traffic happened, not when it was "
            "scored. --json writes one object per line for jq; the count goes to stderr."
        ),
    )
    p.add_argument("--db", metavar="PATH", action="append", help=db_help())
    p.add_argument("--since", metavar="WHEN", help="flow time at or after (ISO, epoch, or 24h)")
    p.add_argument("--until", metavar="WHEN", help="flow time at or before (ISO, epoch, or 24h)")
    p.add_argument("--host", metavar="IP", help="alerts with this address at either end")
    p.add_argument("--port", type=int, metavar="N", help="alerts to this responder port")
    p.add_argument("--min-score", type=float, metavar="S")
    p.add_argument("--incident", metavar="ID", help="the flow alerts of this incident (id prefix)")
    p.add_argument("--sort", choices=("score", "time"), default="score", help="(default score)")
    p.add_argument("--limit", type=int, default=50, help="at most this many; 0 for all (50)")
    p.add_argument("--json", action="store_true", help="one JSON object per line (for jq)")
    p.set_defaults(func=run)


def check_limit(limit: int) -> int | None:
    if limit < 0:
        raise InputError(f"--limit {limit}: expected 0 (all) or a positive number")
    return limit or None


def run(args: argparse.Namespace) -> int:
    query = AlertQuery(
        since=parse_since(args.since, "--since") if args.since else None,
        until=parse_since(args.until, "--until") if args.until else None,
        min_score=args.min_score,
        host=args.host,
        port=args.port,
        incident=args.incident,
    )
    page = alerts_of(
        db_paths(args.db),
        query,
        limit=check_limit(args.limit),
        order="ts" if args.sort == "time" else "score",
    )
    if args.json:
        for a in page.items:
            sys.stdout.write(orjson.dumps(a.to_dict()).decode() + "\n")
    else:
        print_table(
            ["SCORE", "FLOW TIME (UTC)", "SOURCE", "UID", "ORIGINATOR", "RESPONDER", "PROTO"],
            [_alert_row(a) for a in page.items],
            right={0},
            last="REASON",
            tail=[a.reason for a in page.items],
        )
    print(summary(page, "alerts"), file=sys.stderr if args.json else sys.stdout)
    return 0


def _endpoint(host: str | None, port: int | None) -> str:
    if not host:
        return "-"
    host = f"[{host}]" if ":" in host and port is not None else host
    return host if port is None else f"{host}:{port}"


def _alert_row(a: StoredAlert) -> list[str]:
    proto = a.proto or "-"
    return [
        f"{a.score:.3f}",
        when(a.ts),
        a.source or "-",
        a.uid or (str(a.flow_id) if a.flow_id is not None else "-"),
        _endpoint(a.orig_h, a.orig_p),
        _endpoint(a.resp_h, a.resp_p),
        f"{proto}/{a.service}" if a.service else proto,
    ]


def summary(page: Page[Any], noun: str) -> str:
    """``showing N of M <noun>``; when a time filter hid every match, how many and where they
    lie in flow time."""
    shown = f"showing {len(page.items):,} of {page.total:,} {noun}"
    if page.total or not page.hidden_by_time or page.span is None:
        return shown
    lo, hi = page.span
    return (
        f"{shown}: the time filter hides all {page.hidden_by_time:,} that match otherwise. "
        f"--since and --until compare with flow time (when the traffic happened); these "
        f"{noun} span {when(lo)} to {when(hi)} UTC"
    )


def print_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Collection[int] = (),
    last: str,
    tail: Sequence[str],
) -> None:
    """Aligned columns, then one last free-width column (a sentence); nothing when empty."""
    if not rows:
        return
    table = [list(header), *(list(r) for r in rows)]
    widths = [max(len(r[c]) for r in table) for c in range(len(header))]
    for r, end in zip(table, [last, *tail], strict=True):
        cells = [r[c].rjust(w) if c in right else r[c].ljust(w) for c, w in enumerate(widths)]
        print("  ".join([*cells, end]))
