"""``netanomd ui``: serve the analyst's page over an alert database (see :mod:`netanomd.ui`)."""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path
from typing import Any

from netanomd.errors import InputError
from netanomd.fsutil import read_token


def register(sub: Any) -> None:
    from netanomd.commands.alerts import db_help

    p: argparse.ArgumentParser = sub.add_parser(
        "ui",
        help="serve the analyst's page (incidents, hosts, model, scoring, allowlist)",
        description=(
            "Serve the analyst's page over an alert database. Bound to 127.0.0.1 unless told "
            "otherwise; beyond loopback every request needs a token. Read-only unless an "
            "analyst is named (--analyst NAME for local use, NAME:TOKEN beyond loopback)."
        ),
    )
    p.add_argument(
        "--db", metavar="PATH", help=db_help() + "; else the demo's, after 'netanomd demo'"
    )
    p.add_argument(
        "--model",
        metavar="PATH",
        help="model for scoring and status (default: demo-model.npz or model.npz beside --db)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument(
        "--token-file",
        metavar="PATH",
        help="file holding the read-only token (else $NETANOMD_UI_TOKEN; one is made and "
        "printed when bound beyond loopback without any)",
    )
    p.add_argument(
        "--analyst",
        action="append",
        default=[],
        metavar="NAME[:TOKEN]",
        help="an analyst who may act (mark benign, confirm, edit rules); repeatable",
    )
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (chain)")
    p.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    p.add_argument(
        "--rules",
        metavar="YAML",
        help="allowlist rules file (applied; shown on the page, edited in the file)",
    )
    p.add_argument("--kibana", metavar="URL", help="Kibana base URL, for Discover links")
    p.set_defaults(func=run)


def _token(path: str | None) -> str | None:
    if path:
        return read_token(path, "--token-file")
    return os.environ.get("NETANOMD_UI_TOKEN") or None


def analysts(specs: list[str]) -> dict[str, str | None]:
    """``NAME`` or ``NAME:TOKEN`` -> {name: token or None}."""
    out: dict[str, str | None] = {}
    for spec in specs:
        name, sep, token = spec.partition(":")
        if not name or (sep and not token):
            raise InputError(f"--analyst {spec!r}: expected NAME or NAME:TOKEN")
        out[name] = token or None
    return out


def default_model(db: Path) -> Path | None:
    for name in ("demo-model.npz", "model.npz"):
        if (db.parent / name).exists():
            return db.parent / name
    return None


def run(args: argparse.Namespace) -> int:
    from netanomd.config.validation import is_loopback
    from netanomd.feedback import load_rules_file
    from netanomd.sinks.sqlite import default_db_path, reading_db_path
    from netanomd.ui.app import UiSettings
    from netanomd.ui.auth import Access
    from netanomd.ui.server import Listen, serve

    db = reading_db_path(args.db)
    demo = default_db_path().parent / "demo" / "demo-alerts.db"
    if args.db is None and not db.exists() and demo.exists():
        db = demo  # right after 'netanomd demo'
    if not db.exists():
        raise InputError(f"{db}: no alert database (run 'netanomd demo' first, or give --db)")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InputError("--tls-cert and --tls-key go together")
    token = _token(args.token_file)
    people = analysts(args.analyst)
    made = False
    if not is_loopback(args.host) and token is None and not any(people.values()):
        token, made = secrets.token_urlsafe(24), True
    access = Access(bind=args.host, token=token, analysts=people)
    settings = UiSettings(
        db=db,
        model=Path(args.model) if args.model else default_model(db),
        access=access,
        kibana=args.kibana,
        config_rules=load_rules_file(args.rules) if args.rules else [],
    )
    listen = Listen(args.host, args.port, args.tls_cert, args.tls_key)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"{listen.scheme}://{shown}:{args.port}/"
    print(
        f"netanomd ui: {db} on {url} ({'analyst ' + ', '.join(people) if people else 'read-only'})"
    )
    if made:
        print(f"read-only token (made for this run): open {url}?token={token}")
    serve(settings, listen)
    return 0
