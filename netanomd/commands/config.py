"""``netanomd config check|show``: validate a configuration, print the effective one."""

from __future__ import annotations

import argparse
from typing import Any

from netanomd.config import DEFAULT_CONFIG_PATH, dump_yaml, load_config


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("config", help="check or show the configuration")
    csub = p.add_subparsers(dest="config_command", required=True)
    for name, helptext in (
        ("check", "validate (every problem is listed with file, line and key path)"),
        ("show", "print the effective configuration (defaults < file < env < --set)"),
    ):
        c: argparse.ArgumentParser = csub.add_parser(name, help=helptext)
        c.add_argument("--config", "-c", default=None, metavar="FILE")
        c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
        c.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = args.config
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = str(DEFAULT_CONFIG_PATH)
    cfg = load_config(path, overrides=args.overrides)  # raises ConfigError listing everything
    if args.config_command == "check":
        print(f"{path or 'defaults'}: OK ({len(cfg.sources)} sources)")
    else:
        print(dump_yaml(cfg), end="")
    return 0
