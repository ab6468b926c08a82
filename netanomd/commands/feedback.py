"""``netanomd feedback``: the analysts' actions and allowlist rules stored beside the alerts.

``netanomd feedback export`` writes everything as JSON lines (rules, actions with who and when,
the flows judged, suppression counts by rule); ``--benign-flows FILE`` also writes the flows
marked benign as Zeek JSON conn.log lines, which the next training run takes as one more input
(``netanomd train --input BASELINE... FILE``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

import orjson


def register(sub: Any) -> None:
    from netanomd.commands.alerts import db_help

    p: argparse.ArgumentParser = sub.add_parser(
        "feedback", help="export analyst feedback (verdicts, allowlist rules, judged flows)"
    )
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    e = verbs.add_parser(
        "export",
        help="every rule, action, judged flow and suppression count as JSON lines",
        description=(
            "Write the feedback stored in the alert database as JSON lines (type: rule, action, "
            "flow, suppressed). --benign-flows FILE writes the flows marked benign as Zeek JSON "
            "conn.log lines: give FILE to 'netanomd train --input' after the baseline to include "
            "them."
        ),
    )
    e.add_argument("--db", metavar="PATH", help=db_help())
    e.add_argument("--rules", metavar="YAML", help="also list this allowlist rules file's rules")
    e.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    e.add_argument("--benign-flows", metavar="FILE", help="write the benign flows (conn.log JSON)")
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from netanomd.feedback import benign_conn_lines, load_rules_file, open_store
    from netanomd.sinks.sqlite import reading_db_path

    store = open_store(reading_db_path(args.db), load_rules_file(args.rules) if args.rules else [])
    try:
        with contextlib.ExitStack() as stack:
            out = (
                stack.enter_context(open(args.output, "w", encoding="utf-8"))
                if args.output
                else sys.stdout
            )
            n = 0
            for item in store.export():
                out.write(orjson.dumps(item).decode() + "\n")
                n += 1
        print(f"{n} feedback items", file=sys.stderr)
        if args.benign_flows:
            with open(args.benign_flows, "w", encoding="utf-8") as f:
                lines = 0
                for line in benign_conn_lines(store):
                    f.write(line + "\n")
                    lines += 1
            print(
                f"{lines} benign flows -> {args.benign_flows} (netanomd train --input BASELINE "
                f"{args.benign_flows})",
                file=sys.stderr,
            )
    finally:
        store.close()
    return 0
