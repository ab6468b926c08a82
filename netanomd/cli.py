"""Command-line entry point: ``netanomd <command> ...``.

Each command lives in its own module under :mod:`netanomd.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a function taking the
parsed arguments and returning an exit code. This module only wires them, configures logging
and turns :class:`netanomd.errors.NetanomError` into a one-line message and exit status 2.

Only the command being run is imported (its module may pull in scikit-learn, numba, pyarrow):
the others appear in ``netanomd --help`` through their one-line help in :data:`COMMANDS`, which
a test keeps equal to each module's own.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Iterable, Sequence

from netanomd import __version__
from netanomd.errors import NetanomError
from netanomd.logs import configure

log = logging.getLogger(__name__)

#: Command name -> (its module, its one-line help as the module's parser gives it).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "netanomd.commands.demo",
        "train on the bundled baseline, score bundled attacks, show the incidents",
    ),
    "train": ("netanomd.commands.train", "fit a detector on flow files and write a model artifact"),
    "score": ("netanomd.commands.score", "score flow files; store incidents and alerts in SQLite"),
    "pcap": (
        "netanomd.commands.pcap",
        "run Zeek or Suricata on captures, score their flows, show the incidents",
    ),
    "metrics": (
        "netanomd.commands.metrics",
        "find anomalies in host and sensor metrics (Prometheus or CSV); store incidents",
    ),
    "alerts": ("netanomd.commands.alerts", "list stored flow alerts"),
    "incidents": (
        "netanomd.commands.incidents",
        "list stored incidents (grouped alerts and host behaviours), newest first",
    ),
    "es": ("netanomd.commands.es", "Elasticsearch set-up and checks"),
    "kibana": ("netanomd.commands.kibana", "Kibana saved objects"),
    "zeek": ("netanomd.commands.zeek", "talk to a Zeek running the package"),
    "evaluate": (
        "netanomd.commands.evaluate",
        "measure detection on labeled data (clean and contaminated protocols)",
    ),
    "run": (
        "netanomd.commands.run",
        "run the sensor daemon (sources -> scoring -> sinks) until SIGTERM",
    ),
    "reload": (
        "netanomd.commands.reload",
        "reload a running daemon (SIGHUP) and wait until it accepted or refused",
    ),
    "config": ("netanomd.commands.config", "check or show the configuration"),
    "ui": (
        "netanomd.commands.ui",
        "serve the analyst's page (incidents, hosts, model, scoring, allowlist)",
    ),
    "model": (
        "netanomd.commands.model",
        "the versioned model store: list, show, add, promote, roll back",
    ),
    "retrain": (
        "netanomd.commands.retrain",
        "train a candidate on recent days; promote it only if it keeps the budget",
    ),
    "feedback": (
        "netanomd.commands.feedback",
        "export analyst feedback (verdicts, allowlist rules, judged flows)",
    ),
}


def build_parser(load: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the real sub-parsers of the commands in ``load`` (all when None) and a
    one-line entry for each other command."""
    wanted = set(COMMANDS) if load is None else set(load)
    parser = argparse.ArgumentParser(
        prog="netanomd",
        description="Network anomaly detector for Zeek and Suricata flows.",
    )
    parser.add_argument("--version", action="version", version=f"netanomd {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, helptext) in COMMANDS.items():
        if name in wanted:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name, help=helptext)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The command named on a command line (the first word that is not an option)."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "--log-level":
            skip = True
        elif not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = command_of(argv)
    parser = build_parser([command] if command in COMMANDS else [])
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
