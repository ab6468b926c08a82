"""``netanomd model list|show|add|promote|rollback``: the versioned model store.

The store (:mod:`netanomd.model.store`) is ``--store`` or the configuration's ``model.store``.
A daemon whose ``model.path`` is ``<store>/current`` picks a promotion or rollback up within
``model.reload_check_seconds`` (or at once on ``systemctl reload netanomd``), without a
restart.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any

from netanomd.config import DEFAULT_CONFIG_PATH, load_config
from netanomd.model.store import ModelStore


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "model", help="the versioned model store: list, show, add, promote, roll back"
    )
    p.add_argument(
        "--store",
        metavar="DIR",
        help="the store's directory (default: the configuration's model.store)",
    )
    p.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help=f"configuration to take model.store from (default {DEFAULT_CONFIG_PATH})",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="every stored model, newest last; * marks the current one")
    show = actions.add_parser("show", help="one model: training window, threshold, history")
    show.add_argument("id", nargs="?", help="model id or a unique part of it (default: current)")
    add = actions.add_parser("add", help="check a model artifact and keep it in the store")
    add.add_argument("file")
    promote = actions.add_parser("promote", help="make a stored model (or a file) current")
    promote.add_argument("id", help="model id, a unique part of it, or an artifact file")
    promote.add_argument("--reason", default="", help="recorded in the store's history")
    rollback = actions.add_parser("rollback", help="make the previously current model current")
    rollback.add_argument("--reason", default="", help="recorded in the store's history")
    p.set_defaults(func=run)


def store_of(args: argparse.Namespace) -> ModelStore:
    """The store ``--store`` names, else the configuration's ``model.store``."""
    if args.store:
        return ModelStore(args.store)
    path = args.config
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = str(DEFAULT_CONFIG_PATH)
    return ModelStore(load_config(path).model.store)


def run(args: argparse.Namespace) -> int:
    store = store_of(args)
    if args.action == "list":
        return _list(store)
    if args.action == "show":
        return _show(store, args.id)
    if args.action == "add":
        print(f"added {store.add_file(args.file)}")
        return 0
    if args.action == "promote":
        wanted = args.id
        if wanted.endswith(".npz") or "/" in wanted:
            wanted = store.add_file(wanted)
        before = store.current_id()
        now = store.promote(wanted, args.reason)
        print(f"current: {now} (was {before or 'none'})")
        return 0
    before = store.current_id()
    now = store.rollback(args.reason)
    print(f"current: {now} (rolled back from {before})")
    return 0


def _list(store: ModelStore) -> int:
    models = store.stored()
    if not models:
        print(f"no models in {store.models}")
        return 0
    for m in models:
        mark = "*" if m.current else " "
        print(f"{mark} {m.model_id}  trained {m.created_at or '?'}")
    return 0


def _show(store: ModelStore, wanted: str | None) -> int:
    from netanomd.commands.train import _span, threshold_rule
    from netanomd.model.drift import model_age, summary_of

    model_id = store.resolve(wanted) if wanted else store.current_id()
    if model_id is None:
        print(f"no current model in {store.root}")
        return 1
    model = store.load(model_id)
    meta = model.meta
    t = meta.get("training", {})
    age = model_age(meta, time.time())
    lines = [
        f"model      {model.model_id}{' (current)' if model_id == store.current_id() else ''}",
        f"file       {store.path_of(model_id)}",
        f"trained    {model.created_at}"
        + (f" ({age / 86400:.1f} days ago)" if age is not None else ""),
        f"detector   {model.detector.kind}, {len(model.feature_names)} features",
        f"window     {t.get('rows', 0):,} flows, {_span(t.get('ts_min'), t.get('ts_max'))}",
        f"threshold  {model.threshold:.4f}: {threshold_rule(meta.get('threshold_rule', {}))}",
        "drift      "
        + ("training window stored" if summary_of(meta) else "no training window (older model)"),
    ]
    for entry in store.history():
        if entry.get("model") == model_id:
            when = dt.datetime.fromtimestamp(float(entry["ts"]), dt.UTC)
            why = f": {entry['reason']}" if entry.get("reason") else ""
            lines.append(f"history    {when:%Y-%m-%d %H:%M:%S} UTC {entry['action']}{why}")
    print("\n".join(lines))
    return 0
