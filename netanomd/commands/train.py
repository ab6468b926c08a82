"""``netanomd train``: fit a model on flow files and write the artifact."""

from __future__ import annotations

import argparse
from typing import Any

from netanomd.commands._inputs import read_inputs, stats_line
from netanomd.detectors.registry import UNSUPERVISED, make
from netanomd.features import FeatureSpec
from netanomd.model import DEFAULT_THRESHOLD_QUANTILE, default_spec, describe_model, train
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
        default=DEFAULT_THRESHOLD_QUANTILE,
        help="threshold = this quantile of the training scores (default %(default)s)",
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
    p.add_argument("--detector", default="iforest", choices=UNSUPERVISED)
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
    )
    model.save(args.model)
    print(stats_line(stats))
    print(describe_model(model), end="")
    print(f"wrote {args.model}")
    return 0
