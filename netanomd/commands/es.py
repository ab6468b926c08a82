"""``netanomd es setup|check``: prepare and probe Elasticsearch for netanomd alerts.

The settings are the daemon's ``sinks.elasticsearch`` section: the declared defaults, then
``--config FILE`` (the daemon's file, optional), the environment and ``--set``, then this
command's options, all validated by the same rules as ``netanomd run``. ``setup --dry-run``
prints the requests instead of sending them (:func:`netanomd.es_setup.plan`). A connection or
API error names the URL(s) it was talking to.
"""

from __future__ import annotations

import argparse
from typing import Any

from elastic_transport import TransportError as EsTransportError
from elasticsearch import ApiError

from netanomd.config import (
    ES_API_KEY_ENV,
    ES_PASSWORD_ENV,
    ElasticsearchSinkConfig,
    Option,
    load_config,
)
from netanomd.ecs import DATASET
from netanomd.errors import TransportError
from netanomd.es_client import elasticsearch_client
from netanomd.es_setup import plan, setup

SECTION = "sinks.elasticsearch"


def _section(args: argparse.Namespace) -> ElasticsearchSinkConfig:
    options = [
        Option("--url", f"{SECTION}.hosts", args.url),
        Option("--api-key", f"{SECTION}.api_key", args.api_key),
        Option("--user", f"{SECTION}.username", args.user),
        Option("--ca-file", f"{SECTION}.ca_file", args.ca_file),
        Option("--retention", f"{SECTION}.retention_mode", args.retention),
        Option("--retention-days", f"{SECTION}.retention_days", args.retention_days),
        Option("--namespace", f"{SECTION}.namespace", args.namespace),
    ]
    return load_config(args.config, overrides=args.overrides, options=options).sinks.elasticsearch


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("es", help="Elasticsearch set-up and checks")
    es_sub = p.add_subparsers(dest="es_command", required=True, metavar="ACTION")
    d = ElasticsearchSinkConfig()  # the declared defaults, for the help text
    for name, helptext in (
        ("setup", "create the index template and retention (idempotent)"),
        ("check", "connect and print the cluster version"),
    ):
        q = es_sub.add_parser(name, help=helptext)
        q.add_argument(
            "--config",
            "-c",
            metavar="FILE",
            help=f"take {SECTION} from this configuration file (netanomd run's)",
        )
        q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
        q.add_argument(
            "--url",
            nargs="+",
            metavar="URL",
            help=f"Elasticsearch node URL(s), http:// or https:// ({SECTION}.hosts; default "
            f"{' '.join(d.hosts)})",
        )
        q.add_argument(
            "--api-key",
            metavar="KEY",
            help=f"API key ({SECTION}.api_key); better set {ES_API_KEY_ENV}, which keeps it "
            "out of the process list and shell history",
        )
        q.add_argument("--user", help=f"user name (password from {ES_PASSWORD_ENV})")
        q.add_argument("--ca-file", help="CA certificate file for TLS")
        q.add_argument(
            "--namespace",
            help=f"data stream namespace: alerts go to logs-{DATASET}-NAMESPACE "
            f"({SECTION}.namespace; default {d.namespace!r})",
        )
        q.add_argument(
            "--retention",
            metavar="ilm|dsl",
            help="how old alerts are deleted: an ILM policy (ilm) or the data stream's own "
            f"lifecycle (dsl, Elasticsearch >= 8.11) ({SECTION}.retention_mode; default "
            f"{d.retention_mode})",
        )
        q.add_argument(
            "--retention-days",
            type=int,
            metavar="DAYS",
            help=f"delete alerts this many days old ({SECTION}.retention_days; default "
            f"{d.retention_days})",
        )
        if name == "setup":
            q.add_argument(
                "--dry-run",
                action="store_true",
                help="print the requests (method, path, JSON body) instead of sending them",
            )
        q.set_defaults(func=run_setup if name == "setup" else run_check)


def run_setup(args: argparse.Namespace) -> int:
    cfg = _section(args)
    if args.dry_run:
        for step in plan(cfg):
            print(step.show())
        return 0
    try:
        for line in setup(elasticsearch_client(cfg), cfg):
            print(line)
    except (EsTransportError, ApiError) as exc:
        raise TransportError(f"Elasticsearch set-up at {_where(cfg)} failed: {exc}") from exc
    return 0


def run_check(args: argparse.Namespace) -> int:
    cfg = _section(args)
    try:
        info = elasticsearch_client(cfg).info()
    except (EsTransportError, ApiError) as exc:
        raise TransportError(f"cannot reach Elasticsearch at {_where(cfg)}: {exc}") from exc
    print(f"Elasticsearch {info['version']['number']} ({info.get('cluster_name', '?')})")
    return 0


def _where(cfg: ElasticsearchSinkConfig) -> str:
    return ", ".join(cfg.hosts)
