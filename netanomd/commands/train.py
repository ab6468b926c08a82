"""``netanomd train``: fit a model on flow files and write the artifact."""

from __future__ import annotations

import argparse
from typing import Any

from netanomd.commands._inputs import read_inputs, stats_line
from netanomd.model import DEFAULT_THRESHOLD_QUANTILE, describe_model, train
from netanomd.sources import ReadStats


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "train", help="fit an Isolation Forest on flow files and write a model artifact"
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
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    stats = ReadStats()
    model = train(
        read_inputs(args.input, stats, "reading"),
        threshold_quantile=args.threshold_quantile,
        seed=args.seed,
        files=args.input,
    )
    model.save(args.model)
    print(stats_line(stats))
    print(describe_model(model), end="")
    print(f"wrote {args.model}")
    return 0
