"""``netanomd incidents``: list stored incidents, newest first, as a table or as JSON lines."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from netanomd.commands._display import when
from netanomd.commands.alerts import check_limit, db_help, db_paths, print_table, summary
from netanomd.sinks.sqlite import (
    IncidentQuery,
    StoredIncident,
)
from netanomd.store.read import incidents_of, min_severity, parse_since


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "incidents",
        help="list stored incidents (grouped alerts and host behaviours), newest first",
        description=(
            "List the incidents in the alert database, newest (last seen) first. Times are "
            "flow time: the time of the traffic, not when it was scored. The flow alerts of "
            "an incident: netanomd alerts --incident ID."
        ),
    )
    p.add_argument("--db", metavar="PATH", action="append", help=db_help())
    p.add_argument(
        "--severity",
        metavar="LEVEL",
        help="at least this severity: low, medium, high, critical, or a number 0-100",
    )
    p.add_argument("--behaviour", metavar="NAME", help="e.g. 'horizontal scan', 'brute force'")
    p.add_argument("--host", metavar="IP", help="incidents of this host (or with it as peer)")
    p.add_argument("--since", metavar="WHEN", help="last seen at or after (ISO, epoch, or 24h)")
    p.add_argument("--until", metavar="WHEN", help="first seen at or before (ISO, epoch, or 24h)")
    p.add_argument("--limit", type=int, default=50, help="at most this many; 0 for all (50)")
    p.add_argument("--json", action="store_true", help="one JSON object per line (for jq)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    query = IncidentQuery(
        min_severity=min_severity(args.severity) if args.severity else None,
        behaviour=args.behaviour,
        host=args.host,
        since=parse_since(args.since, "--since") if args.since else None,
        until=parse_since(args.until, "--until") if args.until else None,
    )
    page = incidents_of(db_paths(args.db), query, limit=check_limit(args.limit))
    if args.json:
        for inc in page.items:
            sys.stdout.write(orjson.dumps(inc.to_dict()).decode() + "\n")
    else:
        print_table(
            ["LAST SEEN (UTC)", "SEVERITY", "BEHAVIOUR", "FLOWS", "ID"],
            [_row(i) for i in page.items],
            right={3},
            last="TITLE",
            tail=[i.title for i in page.items],
        )
    # The count goes to stderr with --json, so that stdout stays one object per line.
    print(summary(page, "incidents"), file=sys.stderr if args.json else sys.stdout)
    return 0


def _row(inc: StoredIncident) -> list[str]:
    return [
        when(inc.last_seen),
        f"{inc.severity_label} {inc.severity}",
        inc.behaviour,
        f"{inc.flows:,}",
        inc.incident_id[:12],
    ]
