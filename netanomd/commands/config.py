"""``netanomd config check|show``: check a configuration (its values, then what can be checked on
this machine without starting: :mod:`netanomd.config.checks`), print the effective one."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from netanomd.config import DEFAULT_CONFIG_PATH, dump_yaml, load_config


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("config", help="check or show the configuration")
    csub = p.add_subparsers(dest="config_command", required=True)
    for name, helptext in (
        (
            "check",
            "validate, then check the model, log paths, directories, ports and TLS files on "
            "this machine (every problem with its key path and value; exit 1 if any)",
        ),
        ("show", "print the effective configuration (defaults < file < env < --set)"),
    ):
        c: argparse.ArgumentParser = csub.add_parser(name, help=helptext)
        c.add_argument("--config", "-c", default=None, metavar="FILE")
        c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
        if name == "check":
            c.add_argument(
                "--offline",
                action="store_true",
                help="check the values only, not this machine (a configuration for another host)",
            )
        c.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = args.config
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = str(DEFAULT_CONFIG_PATH)
    cfg = load_config(path, overrides=args.overrides)  # raises ConfigError listing everything
    if args.config_command == "show":
        print(dump_yaml(cfg), end="")
        return 0
    from netanomd.config.checks import check_environment

    findings = [] if args.offline else check_environment(cfg)
    problems = [f for f in findings if f.problem]
    for f in findings:
        print(f.render(), file=sys.stderr if f.problem else sys.stdout)
    where = path or "defaults"
    if problems:
        n = len(problems)
        print(f"{where}: {n} problem{'s' if n != 1 else ''}", file=sys.stderr)
        return 1
    print(f"{where}: OK ({len(cfg.sources)} sources)")
    return 0
