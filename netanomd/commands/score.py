"""``netanomd score``: score flow files with a model; store the incidents and alerts in SQLite.

The files are one stream (consecutive logs of one sensor) through :meth:`Model.stream`: flow
alerts and the incidents they and host behaviour make. Incidents are printed first (most severe
first), then, with ``--top``, the top flow alerts. The allowlist of the alert database (the
discovery defaults, the rules analysts made on ``netanomd ui``, and ``--rules``) applies as in
the daemon: what a rule covers is counted, not stored.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from netanomd.behaviour.incidents import Incident, severity_label
from netanomd.commands._display import alert_line, when
from netanomd.commands._inputs import read_inputs, stats_line
from netanomd.commands._scored import ScoreRun
from netanomd.errors import InputError
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.sinks import SinkSet
from netanomd.sinks.sqlite import SQLiteSink, default_db_path, query_alerts
from netanomd.sources import ReadStats

if TYPE_CHECKING:  # Elasticsearch's client is imported only when --es-url asks for it
    from netanomd.feedback import Suppressor
    from netanomd.sinks.elasticsearch import ElasticsearchSink


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "score", help="score flow files; store incidents and alerts in SQLite"
    )
    p.add_argument("--model", "-m", required=True, metavar="PATH")
    p.add_argument("--input", "-i", nargs="+", required=True, metavar="FILE")
    p.add_argument("--db", metavar="PATH", help=f"alert database (default {default_db_path()})")
    p.add_argument("--threshold", type=float, help="override the model's stored threshold")
    p.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=1,
        help="processes, one per core, split by originator: the results of one (default 1)",
    )
    p.add_argument(
        "--scores",
        metavar="FILE",
        help="also write every flow's uid, score and label as JSON lines",
    )
    p.add_argument(
        "--top", type=int, default=10, help="flow alerts to print (default 10, 0 = none)"
    )
    p.add_argument(
        "--incidents", type=int, default=20, help="incidents to print (default 20, 0 = none)"
    )
    add_allowlist_arguments(p)
    add_es_arguments(p)
    p.set_defaults(func=run)


def add_es_arguments(p: argparse.ArgumentParser) -> None:
    """The options that also send the alerts to Elasticsearch (read by :func:`es_sink`)."""
    p.add_argument(
        "--es-url",
        nargs="+",
        metavar="URL",
        help="also send alerts to Elasticsearch (API key from NETANOMD_ES_API_KEY, "
        "or --es-user with NETANOMD_ES_PASSWORD)",
    )
    p.add_argument("--es-user", help="Elasticsearch user name")
    p.add_argument("--es-ca-file", help="CA certificate file for Elasticsearch TLS")
    p.add_argument("--es-namespace", default="default", help="data stream namespace")
    p.add_argument(
        "--spool",
        metavar="DIR",
        help="Elasticsearch spool directory (default: next to the alert database)",
    )


class _ScoreWriter:
    """Writes ``{"uid":..,"score":..,"label":..}`` lines for every scored flow."""

    def __init__(self, path: str) -> None:
        self._fh = open(path, "wb")  # noqa: SIM115 - closed in close()

    def write(self, batch: FlowBatch, scores: np.ndarray) -> None:
        uids = batch.column("uid").to_pylist()
        labels = batch.column("label").to_pylist()
        self._fh.write(
            b"".join(
                orjson.dumps({"uid": u, "score": float(s), "label": lab}) + b"\n"
                for u, s, lab in zip(uids, scores.tolist(), labels, strict=True)
            )
        )

    def close(self) -> None:
        self._fh.close()


def score_files(
    model: Model,
    inputs: list[str],
    sinks: SinkSet,
    threshold: float | None = None,
    scores_path: str | None = None,
    suppress: Suppressor | None = None,
) -> ScoreRun:
    """Score the input files as one stream; alerts and incident updates go to ``sinks`` as they
    come, the closed incidents at the end; with ``suppress``, less what its rules cover."""
    run = ScoreRun(ReadStats())
    writer = _ScoreWriter(scores_path) if scores_path else None
    stream = model.stream()
    stream.suppress = suppress
    start = time.perf_counter()
    try:
        for batch in read_inputs(inputs, run.stats, "scoring"):
            scores, alerts, changed = stream.process(batch, threshold)
            sinks.write(alerts)
            sinks.write_incidents(changed)
            run.alerts += len(alerts)
            if writer:
                writer.write(batch, scores)
        run.incidents = stream.finish()
        sinks.write_incidents([*run.incidents, *stream.retracted])
        if suppress is not None:
            run.suppressed = dict(suppress.totals)
    finally:
        if writer:
            writer.close()
        sinks.close(timeout=60)
    run.seconds = time.perf_counter() - start
    return run


def one_heap() -> None:
    """Arrow's buffers from the C heap numpy uses: the memory a block's parse frees then serves
    scoring, instead of each allocator keeping its own high-water mark (Arrow's default,
    mimalloc, holds what it has had; 58 MiB more peak RSS on a 1M-row log)."""
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


def ranked(incidents: Sequence[Incident]) -> list[Incident]:
    """Most severe first, then the most flows."""
    return sorted(incidents, key=lambda i: (-i.severity, -i.flows, i.first_seen))


def incident_line(inc: Incident) -> str:
    """``[high 73] 10.0.2.19 sent ... (scan; 1,809 flows, 2026-...)``."""
    return (
        f"[{severity_label(inc.severity)} {inc.severity}] {inc.title}  "
        f"({inc.behaviour}; {inc.flows:,} flows, {when(inc.first_seen)})"
    )


def print_incidents(incidents: Sequence[Incident], limit: int, indent: str = "  ") -> None:
    shown = ranked(incidents)[:limit] if limit > 0 else []
    for inc in shown:
        print(indent + incident_line(inc))
    if len(incidents) > len(shown):
        print(f"{indent}... and {len(incidents) - len(shown)} more")


def add_allowlist_arguments(p: argparse.ArgumentParser) -> None:
    """``--rules`` and ``--no-allowlist``, for every command that scores into a database."""
    p.add_argument(
        "--rules",
        metavar="FILE",
        help="allowlist rules (YAML), on top of the database's own and the discovery defaults",
    )
    p.add_argument(
        "--no-allowlist",
        action="store_true",
        help="report everything: no allowlist rules, not even the discovery defaults",
    )


def allowlist(db: Path, rules_file: str | None = None) -> Suppressor:
    """The allowlist ``db``'s analysts keep (with the discovery defaults they left on), plus
    the rules of ``rules_file``."""
    from netanomd.feedback import FeedbackStore, Suppressor, load_rules_file

    store = FeedbackStore(db, config_rules=load_rules_file(rules_file) if rules_file else ())
    try:
        return Suppressor(store.rules())
    finally:
        store.close()


def record_suppressed(db: Path, res: ScoreRun) -> None:
    """Add what the allowlist kept out to ``db``'s counts (the page's rules table) and say it."""
    if not res.suppressed:
        return
    from netanomd.feedback import FeedbackStore

    store = FeedbackStore(db)
    try:
        store.add_suppressed(res.suppressed)
    finally:
        store.close()
    alerts = sum(n for (_, kind), n in res.suppressed.items() if kind == "alerts")
    incidents = sum(n for (_, kind), n in res.suppressed.items() if kind == "incidents")
    rules = ", ".join(sorted({rule for rule, _ in res.suppressed}))
    print(
        f"allowlist: {alerts} flow alerts and {incidents} incident{'s' * (incidents != 1)} "
        f"kept out by rules {rules} (--no-allowlist reports them)"
    )


def run(args: argparse.Namespace) -> int:
    if args.jobs < 1 or (args.jobs > 1 and args.scores):
        raise InputError(f"--jobs {args.jobs}: expected 1 or more, and 1 with --scores")
    one_heap()
    model = Model.load(args.model)
    db = Path(args.db) if args.db else default_db_path()
    sinks = SinkSet([SQLiteSink(db)])
    es = es_sink(args, db) if args.es_url else None
    if es is not None:
        sinks.add(es)  # not opened: the command delivers the spool itself when scoring ends
    if args.jobs > 1:  # the jobs' streams run in other processes, without the allowlist
        if not args.no_allowlist:
            print("note: --jobs scores without the allowlist (as --no-allowlist does)")
        from netanomd.commands._jobs import score_jobs

        res: ScoreRun = score_jobs(args.model, args.input, sinks, args.jobs, args.threshold)
    else:
        suppress = None if args.no_allowlist else allowlist(db, args.rules)
        gc.freeze()  # start-up's objects (modules, the model) are never walked by a collection
        res = score_files(model, args.input, sinks, args.threshold, args.scores, suppress)
    report(res, model, db, es, args.threshold, args.incidents, args.top)
    return 0


def report(
    res: ScoreRun,
    model: Model,
    db: Path,
    es: ElasticsearchSink | None,
    threshold: float | None,
    incidents: int,
    top: int,
) -> None:
    """Print what scoring found: delivery, counts, then the incidents and the top flow alerts."""
    if es is not None:
        print(
            f"elasticsearch: {es.sent} alerts sent to {es.index}, {es.duplicates} already there, "
            f"{es.dead_lettered} rejected (see {es.dead_letter})"
            + ("" if es.spool.size() == 0 else f"; the rest stays spooled in {es.spool.dir}")
        )
    rate = res.stats.rows / res.seconds if res.seconds > 0 else 0.0
    print(stats_line(res.stats))
    print(
        f"{len(res.incidents)} incidents, {res.alerts} flow alerts (model {model.model_id}, "
        f"threshold {model.threshold_for(threshold):.4f}) in {res.seconds:.2f}s, "
        f"{rate:,.0f} flows/s; stored in {db}"
    )
    record_suppressed(db, res)
    if incidents and res.incidents:
        print("incidents (most severe first):")
        print_incidents(res.incidents, incidents)
    if top and res.alerts:
        print(f"top {min(top, res.alerts)} flow alerts:")
        for a in query_alerts(db, limit=top):
            print("  " + alert_line(a))


def es_sink(args: argparse.Namespace, db: Path) -> ElasticsearchSink:
    from netanomd.config import Option, load_config
    from netanomd.daemon.wiring import elasticsearch_sink
    from netanomd.es_client import elasticsearch_client

    es = "sinks.elasticsearch"
    options = [
        Option("--es-url", f"{es}.hosts", args.es_url),
        Option("--es-namespace", f"{es}.namespace", args.es_namespace),
        Option("--es-user", f"{es}.username", args.es_user),
        Option("--es-ca-file", f"{es}.ca_file", args.es_ca_file),
    ]
    cfg = load_config(None, options=options).sinks.elasticsearch
    spool = Path(args.spool) if args.spool else db.parent / "es-spool"
    return elasticsearch_sink(elasticsearch_client(cfg), cfg.namespace, spool)
