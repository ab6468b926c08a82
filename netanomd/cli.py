"""Command-line entry point: ``netanomd <command> ...``.

Each command lives in its own module under :mod:`netanomd.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a function taking the
parsed arguments and returning an exit code. This module only wires them, configures logging
and turns :class:`netanomd.errors.NetanomError` into a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from netanomd import __version__
from netanomd.errors import NetanomError
from netanomd.logs import configure

log = logging.getLogger(__name__)

#: One line per command module; each registers its own sub-commands.
COMMAND_MODULES: tuple[str, ...] = (
    "netanomd.commands.demo",
    "netanomd.commands.train",
    "netanomd.commands.score",
    "netanomd.commands.alerts",
    "netanomd.commands.incidents",
    "netanomd.commands.es",
    "netanomd.commands.kibana",
    "netanomd.commands.zeek",
    "netanomd.commands.evaluate",
    "netanomd.commands.run",
    "netanomd.commands.reload",
    "netanomd.commands.config",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netanomd",
        description="Network anomaly detector for Zeek and Suricata flows.",
    )
    parser.add_argument("--version", action="version", version=f"netanomd {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure(args.log_level.upper())
    try:
        code: int = args.func(args)
    except NetanomError as exc:
        print(f"netanomd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("netanomd: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
