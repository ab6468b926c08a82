"""``netanomd es setup|check``: prepare and probe Elasticsearch for netanomd alerts.

The settings are the daemon's ``sinks.elasticsearch`` section: the declared defaults, then
``--config FILE`` (the daemon's file, optional), the environment and ``--set``, then this
command's options, all validated by the same rules as ``netanomd run``.
"""

from __future__ import annotations

import argparse
from typing import Any

from elastic_transport import TransportError as EsTransportError
from elasticsearch import ApiError

from netanomd.config import ES_PASSWORD_ENV, ElasticsearchSinkConfig, Option, load_config
from netanomd.errors import TransportError
from netanomd.es_client import elasticsearch_client
from netanomd.es_setup import setup

SECTION = "sinks.elasticsearch"


def _section(args: argparse.Namespace) -> ElasticsearchSinkConfig:
    options = [
        Option("--url", f"{SECTION}.hosts", args.url),
        Option("--user", f"{SECTION}.username", args.user),
        Option("--ca-file", f"{SECTION}.ca_file", args.ca_file),
        Option("--retention", f"{SECTION}.retention_mode", args.retention),
        Option("--retention-days", f"{SECTION}.retention_days", args.retention_days),
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
        q.add_argument("--url", nargs="+", help=f"{SECTION}.hosts (default {' '.join(d.hosts)})")
        q.add_argument("--user", help=f"user name (password from {ES_PASSWORD_ENV})")
        q.add_argument("--ca-file", help="CA certificate file for TLS")
        q.add_argument(
            "--retention",
            metavar="ilm|dsl",
            help=f"{SECTION}.retention_mode (default {d.retention_mode})",
        )
        q.add_argument(
            "--retention-days",
            type=int,
            help=f"{SECTION}.retention_days (default {d.retention_days})",
        )
        q.set_defaults(func=run_setup if name == "setup" else run_check)


def run_setup(args: argparse.Namespace) -> int:
    cfg = _section(args)
    try:
        for line in setup(elasticsearch_client(cfg), cfg):
            print(line)
    except (EsTransportError, ApiError) as exc:
        raise TransportError(f"Elasticsearch set-up failed: {exc}") from exc
    return 0


def run_check(args: argparse.Namespace) -> int:
    cfg = _section(args)
    try:
        info = elasticsearch_client(cfg).info()
    except (EsTransportError, ApiError) as exc:
        raise TransportError(
            f"cannot reach Elasticsearch at {', '.join(cfg.hosts)}: {exc}"
        ) from exc
    print(f"Elasticsearch {info['version']['number']} ({info.get('cluster_name', '?')})")
    return 0
