"""``netanomd train``: fit a model on flow files, or on the last days of a Zeek log archive
(``--zeek-archive DIR --days N``, :mod:`netanomd.commands._archive`), and write the artifact.

The model carries its default operating point, learned in the same pass: the flow threshold,
the host-behaviour limits and the incident budget (:mod:`netanomd.model.operating`); the
``--behaviour-*``, ``--incidents-per-day`` and ``--incident-quiet`` flags tune it.

What it prints is for the person deploying the model (:func:`summary`): the baseline it learned
from (flows, originating hosts, the time span first → last flow), the threshold rule in words,
the incident budget and where the model was written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from netanomd.behaviour.detectors import DEFAULT_MARGIN, DEFAULT_QUANTILE
from netanomd.commands._archive import add_window_arguments, archive_days, day_window, where
from netanomd.commands._inputs import read_inputs, stats_line
from netanomd.detectors.registry import UNSUPERVISED, make
from netanomd.errors import InputError
from netanomd.features import FeatureSpec
from netanomd.flow import FlowBatch
from netanomd.model import DEFAULT_THRESHOLD_QUANTILE, Model, default_spec, train
from netanomd.model.operating import DEFAULT_INCIDENTS_PER_DAY, DEFAULT_QUIET, BehaviourLearner
from netanomd.model.robust import DEFAULT_TRIM
from netanomd.sources import ReadStats


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "train", help="fit a detector on flow files and write a model artifact"
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--input",
        "-i",
        nargs="+",
        metavar="FILE",
        help="Zeek conn.log (TSV/JSON, .gz), Suricata EVE JSON or CICFlowMeter CSV",
    )
    src.add_argument(
        "--zeek-archive",
        metavar="DIR",
        help=f"the last --days days of a Zeek log archive: {where('DIR')}",
    )
    add_window_arguments(p, days=7)
    p.add_argument("--model", "-m", required=True, metavar="PATH", help="artifact to write")
    p.add_argument(
        "--threshold-quantile",
        type=float,
        metavar="Q",
        help="threshold = this quantile of the training scores (e.g. "
        f"{DEFAULT_THRESHOLD_QUANTILE}) instead of the incident budget (the default: the lowest "
        "threshold whose training alerts make at most --incidents-per-day incidents a day)",
    )
    p.add_argument(
        "--features",
        choices=("flow+host", "flow"),
        default="flow+host",
        help="per-flow features plus per-originator behaviour over sliding windows (default), "
        "or per-flow only",
    )
    p.add_argument(
        "--vetted",
        action="store_true",
        help="the input is a clean baseline someone checked: fit on every flow. By default the "
        "training traffic may hold attacks, and the detector is fitted on its distinct "
        "behaviours, so that a flood of identical flows does not define normal",
    )
    p.add_argument(
        "--trim",
        type=float,
        default=DEFAULT_TRIM,
        help="also drop this share of the most anomalous training behaviours and refit "
        "(default %(default)s)",
    )
    p.add_argument(
        "--alerts-per-day",
        type=float,
        help="threshold by alert budget at the training data's flow rate, instead of the quantile",
    )
    b = p.add_argument_group("host behaviour and incidents (the operating point)")
    b.add_argument(
        "--behaviour-quantile",
        type=float,
        default=DEFAULT_QUANTILE,
        help="behaviour limits start at this quantile of the training hosts' busiest windows "
        "(default %(default)s; higher: fewer, surer incidents)",
    )
    b.add_argument(
        "--behaviour-margin",
        type=float,
        default=DEFAULT_MARGIN,
        help="... times this margin (default %(default)s; higher: fewer incidents)",
    )
    b.add_argument(
        "--incidents-per-day",
        type=float,
        default=DEFAULT_INCIDENTS_PER_DAY,
        help="incident budget: the flow threshold is the lowest whose training alerts, grouped per "
        "host, make at most this many incidents a day, and 'unusual activity' is raised until "
        "the training window makes at most this many a day (default %(default)s)",
    )
    b.add_argument(
        "--incident-quiet",
        type=float,
        default=DEFAULT_QUIET,
        metavar="SECONDS",
        help="an incident closes after this much flow time without new evidence "
        "(default %(default)s)",
    )
    p.add_argument("--detector", default="iforest", choices=UNSUPERVISED)
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        behaviour = BehaviourLearner(
            quantile=args.behaviour_quantile,
            margin=args.behaviour_margin,
            incidents_per_day=args.incidents_per_day,
            quiet=args.incident_quiet,
        )
    except ValueError as exc:
        raise InputError(f"train: {exc}") from exc
    inputs = args.input or archive_inputs(args)
    stats = ReadStats()
    hosts: set[str] = set()
    model = train(
        _count_hosts(read_inputs(inputs, stats, "reading"), hosts),
        threshold_quantile=args.threshold_quantile,
        alerts_per_day=args.alerts_per_day,
        vetted=args.vetted,
        trim=args.trim,
        spec=FeatureSpec() if args.features == "flow" else default_spec(),
        detector=make(args.detector, args.seed),
        seed=args.seed,
        files=inputs,
        behaviour=behaviour,
    )
    model.save(args.model)
    print(stats_line(stats))
    print(summary(model, len(hosts), args.model), end="")
    return 0


def archive_inputs(args: argparse.Namespace) -> list[str]:
    """The conn logs of the last ``--days`` days of ``--zeek-archive`` (says which days)."""
    first, last = day_window(args.until, args.days, "train")
    days = archive_days(Path(args.zeek_archive), first, last, "train")
    if not days:
        raise InputError(
            f"train: no conn logs from {first} to {last} in {where(args.zeek_archive)}"
        )
    files = [str(p) for _, paths in days for p in paths]
    print(
        f"archive    {len(files)} conn logs of {len(days)} days "
        f"({', '.join(d.isoformat() for d, _ in days)})"
    )
    return files


def _count_hosts(batches: Iterable[FlowBatch], hosts: set[str]) -> Iterator[FlowBatch]:
    """Pass the batches through, collecting the distinct originator addresses into ``hosts``."""
    for batch in batches:
        hosts.update(h for h in pc.unique(batch.column("orig_h")).to_pylist() if h)
        yield batch


def summary(model: Model, hosts: int, path: str) -> str:
    """What ``train`` tells whoever deploys the model, one labelled line per fact."""
    m = model.meta
    t = m.get("training", {})
    rule = m.get("threshold_rule", {})
    sources = ", ".join(f"{k} {v:,}" for k, v in sorted(t.get("sources", {}).items()))
    lines = [
        f"model      {model.model_id} ({model.detector.kind}, {len(model.feature_names)} features)",
        f"baseline   {t.get('rows', 0):,} flows ({sources or 'no source'}) from {hosts:,} "
        f"originating hosts, {_span(t.get('ts_min'), t.get('ts_max'))}",
        f"threshold  {model.threshold:.4f} (rule {rule.get('method', '?')}): "
        f"{threshold_rule(rule)}",
    ]
    op = model.operating
    if op is None:
        lines.append("incidents  none (flow alerts only)")
    else:
        thr = op.thresholds
        lines.append(
            f"incidents  budget {op.incidents_per_day:g} a day; an incident closes after "
            f"{_duration(op.quiet)} without new evidence; behaviour limits at the "
            f"{thr.quantile:g} quantile of the training hosts' busiest windows x {thr.margin:g}"
        )
        named = (op.info or {}).get("named_in_training") or {}
        if named:
            seen = ", ".join(f"{k} ({v} hosts)" for k, v in named.items())
            lines.append(f"           seen in training (check it was expected): {seen}")
    lines.append(f"saved      {os.path.abspath(path)}")
    return "".join(line + "\n" for line in lines)


def threshold_rule(rule: dict[str, Any]) -> str:
    """The model's threshold rule (``meta.threshold_rule``) in words."""
    method = rule.get("method")
    over = "flows" if rule.get("training", {}).get("vetted") else "distinct behaviours"
    if method == "quantile":
        q = float(rule["quantile"])
        return (
            f"the {q:.4g} quantile of the training {over}' scores (about {1 - q:.2%} of "
            "traffic like the baseline alerts)"
        )
    if method == "budget":
        return (
            f"at most {rule['alerts_per_day']:g} flow alerts a day at the baseline's "
            f"{rule['flows_per_day']:,.0f} flows a day (the {rule['quantile']:.4g} quantile of "
            "the training scores)"
        )
    if method == "incident_budget":
        days = float(rule.get("training_days", 0.0))
        words = (
            f"the lowest score whose training alerts make at most {rule['incidents_per_day']:g} "
            f"incidents a day ({rule.get('training_incidents', '?')} incidents in the "
            f"{_duration(days * 86400)} of baseline"
        )
        allowed = float(rule["incidents_per_day"]) * max(days, 1 / 24)
        if int(rule.get("training_incidents", 0)) > allowed:
            words += "; no threshold keeps to it: the top training score is used"
        return words + ")"
    return f"{method or 'unknown rule'}"


def _span(first: float | None, last: float | None) -> str:
    if first is None or last is None:
        return "no flow timestamps"

    def utc(ts: float) -> str:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")

    return f"{utc(first)} → {utc(last)} UTC ({_duration(last - first)})"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
