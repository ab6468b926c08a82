"""``netanomd train``: fit a model on flow files and write the artifact.

The model carries its default operating point, learned in the same pass: the flow threshold,
the host-behaviour limits and the incident budget (:mod:`netanomd.model.operating`); the
``--behaviour-*``, ``--incidents-per-day`` and ``--incident-quiet`` flags tune it.
"""

from __future__ import annotations

import argparse
from typing import Any

from netanomd.behaviour.detectors import DEFAULT_MARGIN, DEFAULT_QUANTILE
from netanomd.commands._inputs import read_inputs, stats_line
from netanomd.detectors.registry import UNSUPERVISED, make
from netanomd.errors import InputError
from netanomd.features import FeatureSpec
from netanomd.model import DEFAULT_THRESHOLD_QUANTILE, default_spec, describe_model, train
from netanomd.model.operating import DEFAULT_INCIDENTS_PER_DAY, DEFAULT_QUIET, BehaviourLearner
from netanomd.model.robust import DEFAULT_TRIM
from netanomd.sources import ReadStats


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "train", help="fit a detector on flow files and write a model artifact"
    )
    p.add_argument(
        "--input",
        "-i",
        nargs="+",
        required=True,
        metavar="FILE",
        help="Zeek conn.log (TSV/JSON, .gz), Suricata EVE JSON or CICFlowMeter CSV",
    )
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
    stats = ReadStats()
    model = train(
        read_inputs(args.input, stats, "reading"),
        threshold_quantile=args.threshold_quantile,
        alerts_per_day=args.alerts_per_day,
        vetted=args.vetted,
        trim=args.trim,
        spec=FeatureSpec() if args.features == "flow" else default_spec(),
        detector=make(args.detector, args.seed),
        seed=args.seed,
        files=args.input,
        behaviour=behaviour,
    )
    model.save(args.model)
    print(stats_line(stats))
    print(describe_model(model), end="")
    print(f"wrote {args.model}")
    return 0
