"""``netanomd reload``: ask a running daemon to reload and wait for its answer (ExecReload).

Sends SIGHUP to ``--pid`` and waits until the daemon has acted (see
:mod:`netanomd.daemon.reload`): exit 0 when the new configuration and model are in use, 1 with
the reason when the daemon rejected them and kept the running ones, 2 when it did not answer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from netanomd.config import DEFAULT_CONFIG_PATH, load_config


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "reload", help="reload a running daemon (SIGHUP) and wait until it accepted or refused"
    )
    p.add_argument("--pid", type=int, required=True, help="the daemon's pid ($MAINPID)")
    p.add_argument(
        "--config",
        "-c",
        default=None,
        metavar="FILE",
        help=f"the daemon's configuration, for its state_dir (default {DEFAULT_CONFIG_PATH})",
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--timeout", type=float, default=80.0, help="seconds to wait for the answer (default 80)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from netanomd.daemon.reload import request_reload

    path = args.config
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = str(DEFAULT_CONFIG_PATH)
    cfg = load_config(path, overrides=args.overrides)
    result = request_reload(Path(cfg.state_dir), args.pid, args.timeout)
    if not result.ok:
        print(
            f"netanomd: reload refused, still running {result.model}: {result.error}",
            file=sys.stderr,
        )
        return 1
    print(f"reloaded: model {result.model}")
    return 0
