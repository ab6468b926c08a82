"""``netanomd es setup|check``: prepare and probe Elasticsearch for netanomd alerts."""

from __future__ import annotations

import argparse
from typing import Any

from elastic_transport import TransportError as EsTransportError
from elasticsearch import ApiError

from netanomd.errors import TransportError
from netanomd.es_setup import ElasticsearchConfig, setup


def _config(args: argparse.Namespace) -> ElasticsearchConfig:
    data: dict[str, Any] = {
        "hosts": args.url,
        "retention_mode": args.retention,
        "retention_days": args.retention_days,
    }
    if args.user:
        data["username"] = args.user
    if args.ca_file:
        data["ca_file"] = args.ca_file
    return ElasticsearchConfig.from_mapping(data, where="command line")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("es", help="Elasticsearch set-up and checks")
    es_sub = p.add_subparsers(dest="es_command", required=True, metavar="ACTION")
    for name, helptext in (
        ("setup", "create the index template and retention (idempotent)"),
        ("check", "connect and print the cluster version"),
    ):
        q = es_sub.add_parser(name, help=helptext)
        q.add_argument("--url", nargs="+", default=["http://127.0.0.1:9200"])
        q.add_argument("--user", help="user name (password from NETANOMD_ES_PASSWORD)")
        q.add_argument("--ca-file", help="CA certificate file for TLS")
        q.add_argument("--retention", choices=("ilm", "dsl"), default="ilm")
        q.add_argument("--retention-days", type=int, default=30)
        q.set_defaults(func=run_setup if name == "setup" else run_check)


def run_setup(args: argparse.Namespace) -> int:
    cfg = _config(args)
    try:
        for line in setup(cfg.client(), cfg):
            print(line)
    except (EsTransportError, ApiError) as exc:
        raise TransportError(f"Elasticsearch set-up failed: {exc}") from exc
    return 0


def run_check(args: argparse.Namespace) -> int:
    cfg = _config(args)
    try:
        info = cfg.client().info()
    except (EsTransportError, ApiError) as exc:
        raise TransportError(
            f"cannot reach Elasticsearch at {', '.join(cfg.hosts)}: {exc}"
        ) from exc
    print(f"Elasticsearch {info['version']['number']} ({info.get('cluster_name', '?')})")
    return 0
