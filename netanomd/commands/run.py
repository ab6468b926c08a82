"""``netanomd run``: the sensor daemon (see :mod:`netanomd.daemon.service`)."""

from __future__ import annotations

import argparse
from typing import Any

from netanomd.config import DEFAULT_CONFIG_PATH


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run", help="run the sensor daemon (sources -> scoring -> sinks) until SIGTERM"
    )
    p.add_argument(
        "--config",
        "-c",
        default=None,
        metavar="FILE",
        help=f"configuration file (default {DEFAULT_CONFIG_PATH} if it exists)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting (dotted key path)",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        default=60.0,
        help="seconds to drain and flush on SIGTERM (default 60)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from netanomd.daemon.service import Daemon
    from netanomd.logs import configure

    path = args.config
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = str(DEFAULT_CONFIG_PATH)
    daemon = Daemon(path, args.overrides, shutdown_timeout=args.shutdown_timeout)
    configure(daemon.config.log_level.upper())
    return daemon.serve()
