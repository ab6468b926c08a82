"""``netanomd metrics``: anomalies in a host's or container's metrics, from Prometheus or a CSV.

Reads the series (:mod:`netanomd.telemetry.series`; ``--series default`` is node-exporter's
CPU, memory, network throughput, errors and drops, and the sensor's own health) over a window
from a Prometheus server's ``query_range`` API, or a CSV file of the first seed's shape
(timestamp, container, cpu, memory, throughput, latency); builds one feature row per
(instance, step); fits the detector on the baseline (the first part of the window, or a
``--baseline`` range) and scores the rest (:mod:`netanomd.telemetry.scoring`), or scores the
whole window with a model fitted before (``--model``, saved with ``--save-model``); stores the
anomalies as incidents in the alert database (and Elasticsearch with ``--es-url``) and prints
them as a table, each with its reason in words.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from netanomd.behaviour.incidents import severity_label
from netanomd.commands._display import when
from netanomd.commands.alerts import print_table
from netanomd.commands.score import add_es_arguments, es_sink
from netanomd.errors import InputError
from netanomd.sinks import SinkSet
from netanomd.sinks.sqlite import SQLiteSink, default_db_path
from netanomd.store.read import duration, parse_since
from netanomd.telemetry import modelfile
from netanomd.telemetry.incidents import MetricIncident, incidents_of
from netanomd.telemetry.rows import build_rows
from netanomd.telemetry.scoring import DEFAULT_QUANTILE, MIN_DEVIATION, MetricModel, MetricRun
from netanomd.telemetry.series import Series

#: Options that only a Prometheus window has -> their argparse names.
_PROMETHEUS_ONLY = {
    "--start": "start",
    "--end": "end",
    "--step": "step",
    "--rate-window": "rate_window",
}
#: Steps without an anomaly that end an incident (unless --quiet says otherwise).
QUIET_STEPS = 5


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "metrics",
        help="find anomalies in host and sensor metrics (Prometheus or CSV); store incidents",
        description=(
            "Read metrics per instance (or container) from Prometheus (query_range) or a CSV "
            "file, fit the detector on a baseline period, score the rest, and store what is "
            "unusual as incidents with a reason in words and the numbers as evidence."
        ),
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prometheus", metavar="URL", help="Prometheus base URL (http://host:9090)")
    src.add_argument(
        "--csv",
        metavar="FILE",
        help="CSV with timestamp, container and numeric columns (cpu, memory, ...)",
    )
    p.add_argument(
        "--series",
        default="default",
        metavar="FILE",
        help="series to read from Prometheus: 'default' (node-exporter and netanomd) or a YAML "
        "file (docs/metrics.md)",
    )
    p.add_argument("--start", metavar="WHEN", help="ISO, epoch, or an age (default 6h)")
    p.add_argument("--end", metavar="WHEN", help="ISO, epoch, or an age (default now)")
    p.add_argument("--step", metavar="DUR", help="Prometheus step (default 60s)")
    p.add_argument(
        "--rate-window",
        metavar="DUR",
        help="window of rate() in the series' queries (default 4 steps, at least 4s)",
    )
    p.add_argument(
        "--baseline",
        default="50%",
        metavar="SPAN",
        help="the normal period: a share of the window's start (50%%, the default; 100%% with "
        "--save-model) or START..END (ISO, epoch or ages)",
    )
    p.add_argument(
        "--detector", default="iforest", help="unsupervised detector kind (default iforest)"
    )
    p.add_argument(
        "--model",
        metavar="PATH",
        help="score the whole window with a metrics model saved before (--save-model) instead "
        "of fitting one on --baseline",
    )
    p.add_argument(
        "--save-model", metavar="PATH", help="save the model fitted on the baseline to PATH"
    )
    p.add_argument(
        "--quantile",
        type=float,
        default=DEFAULT_QUANTILE,
        help=f"threshold: this quantile of the baseline's scores (default {DEFAULT_QUANTILE})",
    )
    p.add_argument(
        "--min-deviation",
        type=float,
        default=MIN_DEVIATION,
        help=f"spreads from its usual value that make a series unusual (default {MIN_DEVIATION:g})",
    )
    p.add_argument(
        "--quiet",
        metavar="DUR",
        help=f"a gap that ends an incident (default {QUIET_STEPS} steps)",
    )
    p.add_argument("--db", metavar="PATH", help=f"alert database (default {default_db_path()})")
    p.add_argument(
        "--incidents", type=int, default=20, help="incidents to print (default 20, 0 = none)"
    )
    add_es_arguments(p)
    p.set_defaults(func=run)


def baseline_mask(ts: np.ndarray, spec: str) -> np.ndarray:
    """The rows of the baseline: ``"50%"`` (the first half of the window's time span) or
    ``"START..END"``."""
    spec = spec.strip()
    if ".." in spec:
        lo_text, _, hi_text = spec.partition("..")
        lo = parse_since(lo_text, "--baseline") if lo_text else -np.inf
        hi = parse_since(hi_text, "--baseline") if hi_text else np.inf
        if not lo < hi:
            raise InputError(f"--baseline {spec!r}: its start is not before its end")
        return np.asarray((ts >= lo) & (ts <= hi))
    text = spec.removesuffix("%")
    try:
        share = float(text) / (100.0 if spec.endswith("%") else 1.0)
    except ValueError:
        share = -1.0
    if not 0.0 < share <= 1.0:
        raise InputError(f"--baseline {spec!r}: expected a share such as 50% or START..END")
    t0, t1 = float(ts.min()), float(ts.max())
    return np.asarray(ts <= t0 + share * (t1 - t0))


def _read(
    args: argparse.Namespace, model: MetricModel | None
) -> tuple[pd.DataFrame, tuple[Series, ...], float, str]:
    """Samples, series (the model's when there is one), step and where they came from."""
    if args.csv:
        from netanomd.telemetry.csvfile import read_csv

        given = [o for o, v in _PROMETHEUS_ONLY.items() if getattr(args, v) is not None]
        if args.series != "default":
            given.insert(0, "--series")
        if given:
            raise InputError(f"{', '.join(given)}: for --prometheus; a CSV file is read whole")
        samples, series = read_csv(args.csv)
        series = model.series if model is not None else series
        steps = np.diff(np.unique(samples["ts"].to_numpy()))
        step = float(np.median(steps)) if steps.size else 1.0
        return samples, series, step, args.csv
    from netanomd.telemetry.prometheus import PrometheusClient, fetch
    from netanomd.telemetry.series import load_series

    if model is not None and args.series != "default":
        raise InputError("--series and --model: the model's series are the ones it scores")
    series = model.series if model is not None else load_series(args.series)
    step = duration(args.step or "60s", "--step")
    end = parse_since(args.end, "--end") if args.end else time.time()
    start = parse_since(args.start or "6h", "--start")
    if not start < end:
        raise InputError(f"--start {args.start} is not before --end ({when(end)})")
    window = f"{duration(args.rate_window, '--rate-window'):g}s" if args.rate_window else None
    client = PrometheusClient(args.prometheus)
    return fetch(client, series, start, end, step, window), series, step, args.prometheus


def run(args: argparse.Namespace) -> int:
    model = modelfile.load(args.model) if args.model else None
    samples, series, step, origin = _read(args, model)
    rows = build_rows(samples, series, keep_all=model is not None)
    entities = sorted(set(rows.entity.tolist()))
    print(
        f"read {len(rows.series)} series for {len(entities)} "
        f"{'entity' if len(entities) == 1 else 'entities'} ({', '.join(entities[:5])}"
        f"{', ...' if len(entities) > 5 else ''}) from {origin}: {len(rows):,} rows, "
        f"{when(float(rows.ts.min()))} to {when(float(rows.ts.max()))} UTC, step {step:g}s"
        + (f"; no samples for {', '.join(rows.absent)}" if rows.absent else "")
    )
    if model is None:
        base = baseline_mask(rows.ts, args.baseline)
        if base.all() and not args.save_model:
            raise InputError(
                "the baseline covers the whole window: nothing is left to score (to fit a "
                "model for later windows, give --save-model)"
            )
        model = MetricModel.fit(
            rows,
            base,
            kind=args.detector,
            quantile=args.quantile,
            min_deviation=args.min_deviation,
        )
        res = model.score(rows, ~base)
    else:
        res = model.score(rows, np.ones(len(rows), dtype=bool))
    if args.save_model:
        modelfile.save(model, args.save_model)
        print(f"metrics model saved to {args.save_model}")
    quiet = duration(args.quiet, "--quiet") if args.quiet else QUIET_STEPS * step
    incidents = incidents_of(res.anomalies, step, quiet, float(rows.ts.max()))
    db = Path(args.db) if args.db else default_db_path()
    sqlite = SQLiteSink(db)
    sinks = SinkSet([sqlite])
    es = es_sink(args, db) if args.es_url else None
    if es is not None:
        sinks.add(es)
    failed = [s.name for s in sinks.write_incidents(incidents)]
    sinks.close(timeout=60)
    _report(model, res, incidents, db, args.incidents, sqlite, failed)
    if es is not None and "elasticsearch" not in failed:
        left = es.spool.size()
        print(
            f"elasticsearch: incidents sent to {es.incident_index}"
            + (f"; {left:,} bytes stay spooled in {es.spool.dir}" if left else "")
        )
    return 1 if failed else 0


def _report(
    model: MetricModel,
    res: MetricRun,
    incidents: list[MetricIncident],
    db: Path,
    limit: int,
    sqlite: SQLiteSink,
    failed: list[str],
) -> None:
    base = res.baseline
    hourly = "per hour of day" if model.baseline.hourly else "overall"
    info = model.info
    print(
        f"{res.kind} fitted on {info['rows']:,} baseline rows ({when(info['start'])} to "
        f"{when(info['end'])}), threshold {res.threshold:.4f}; usual values {hourly}"
    )
    extra = []
    if res.beyond:
        extra.append(f"{res.beyond} beyond the baseline's range under the threshold")
    if res.unexplained:
        extra.append(f"{res.unexplained} past the threshold with no series unusual")
    if res.unknown:
        extra.append(f"{res.unknown} of entities absent from the baseline, not compared")
    stored = f"stored in {db}" if "sqlite" not in failed else f"not stored in {db}"
    if failed:
        stored += f" (failed: {', '.join(failed)}; see the log)"
    print(
        f"scored {int((~base).sum()):,} rows: {len(res.anomalies)} anomalous"
        + (f" ({'; '.join(extra)})" if extra else "")
        + f"; {len(incidents)} incident{'s' if len(incidents) != 1 else ''} {stored}"
    )
    shown = incidents[:limit] if limit > 0 else []
    print_table(
        ["FIRST SEEN (UTC)", "LAST SEEN", "SEVERITY", "INSTANCE", "STEPS", "ID"],
        [
            [
                when(i.first_seen),
                when(i.last_seen)[-8:],
                f"{severity_label(i.severity)} {i.severity}",
                i.host,
                str(i.detections),
                sqlite.ids(i)[:12],
            ]
            for i in shown
        ],
        right={4},
        last="REASON",
        tail=[i.title for i in shown],
    )
    if len(incidents) > len(shown) and shown:
        print(
            f"... and {len(incidents) - len(shown)} more (netanomd incidents --behaviour "
            "'metric anomaly')"
        )
