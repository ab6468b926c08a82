"""``netanomd kibana export|import``: the triage data view, searches and dashboard."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from netanomd.kibana import export_ndjson, import_ndjson


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("kibana", help="Kibana saved objects")
    k_sub = p.add_subparsers(dest="kibana_command", required=True, metavar="ACTION")
    e = k_sub.add_parser("export", help="write the saved objects as ndjson")
    e.add_argument("-o", "--output", help="file (default: standard output)")
    e.set_defaults(func=run_export)
    i = k_sub.add_parser("import", help="post the saved objects to Kibana's import API")
    i.add_argument("--url", required=True, help="Kibana base URL, e.g. http://127.0.0.1:5601")
    i.add_argument("--space", help="Kibana space id")
    i.add_argument("--user", help="user name (password from NETANOMD_KIBANA_PASSWORD)")
    i.set_defaults(func=run_import)


def run_export(args: argparse.Namespace) -> int:
    text = export_ndjson()
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


def run_import(args: argparse.Namespace) -> int:
    basic = (args.user, os.environ.get("NETANOMD_KIBANA_PASSWORD", "")) if args.user else None
    answer = import_ndjson(
        args.url,
        export_ndjson(),
        space=args.space,
        api_key=os.environ.get("NETANOMD_KIBANA_API_KEY"),
        basic=basic,
    )
    print(
        f"Kibana imported {answer.get('successCount', 0)} objects, "
        f"errors: {answer.get('errors', [])}"
    )
    return 0 if answer.get("success") else 1
