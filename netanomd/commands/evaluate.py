"""``netanomd evaluate``: both protocols on labeled data, with a report (HTML + JSON + Markdown).

The headline is what a deployed sensor reports (:mod:`netanomd.evaluation.deployed`): flow- and
incident-level precision, recall and F1 at the model's own operating point, no labels used. The
label-tuned F1 (:mod:`netanomd.evaluation.protocols`) is printed only as the "oracle" column.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from netanomd.detectors.registry import UNSUPERVISED, make
from netanomd.errors import InputError
from netanomd.evaluation.data import (
    LabeledData,
    load_cicflowmeter,
    load_flows,
    load_label_map,
    load_nsl_kdd,
)
from netanomd.evaluation.deployed import Deployed, run_deployed
from netanomd.evaluation.protocols import PROTOCOLS, Result, run_protocol, split
from netanomd.evaluation.suite import suite


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "evaluate", help="measure detection on labeled data (clean and contaminated protocols)"
    )
    p.add_argument("--suite", metavar="DIR", help="every labeled set in a shared data folder")
    p.add_argument(
        "--flows",
        action="append",
        default=[],
        metavar="NAME=FILE[,FILE]",
        help="labeled Zeek conn logs / IoT-23 CSV / EVE (repeatable)",
    )
    p.add_argument("--label-map", metavar="JSON", help="address/CIDR -> label for EVE inputs")
    p.add_argument(
        "--cic",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="CICFlowMeter CSV with Label (repeatable)",
    )
    p.add_argument("--nsl-kdd", action="append", default=[], metavar="NAME=TRAIN,TEST")
    p.add_argument(
        "--detector",
        default="iforest",
        choices=UNSUPERVISED,
        help="netanomd's detector (default iforest)",
    )
    p.add_argument(
        "--out",
        default="evaluation",
        metavar="DIR",
        help="report.html and results.json go here (default ./evaluation)",
    )
    p.add_argument("--markdown", metavar="FILE", help="also write the Markdown summary here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        metavar="N",
        help="also rerun both models with seeds seed+1 .. seed+N-1 and report the mean and "
        "spread of ROC-AUC and PR-AUC (the tables and pictures are the first run's)",
    )
    p.set_defaults(func=run)


def _named(spec: str, what: str) -> tuple[str, list[str]]:
    name, sep, files = spec.partition("=")
    if not sep or not name or not files:
        raise InputError(f"--{what} {spec!r}: expected NAME=FILE[,FILE]")
    return name, files.split(",")


def run(args: argparse.Namespace) -> int:
    # matplotlib only here: every other command (the daemon above all) starts without it.
    from netanomd.evaluation import report

    jobs: list[tuple[str, Any]] = []
    if args.suite:
        for name, paths, loader in suite(Path(args.suite)):
            missing = [str(p) for p in paths if not p.exists()]
            if missing:
                print(f"skipping {name}: missing {', '.join(missing)}", file=sys.stderr)
                continue
            jobs.append((name, loader))
    label_map = load_label_map(args.label_map) if args.label_map else None
    for spec in args.flows:
        name, files = _named(spec, "flows")
        jobs.append((name, lambda n=name, f=files: load_flows(n, f, label_map)))
    for spec in args.cic:
        name, files = _named(spec, "cic")
        jobs.append((name, lambda n=name, f=files: load_cicflowmeter(n, f[0])))
    for spec in args.nsl_kdd:
        name, files = _named(spec, "nsl-kdd")
        if len(files) != 2:
            raise InputError(f"--nsl-kdd {spec!r}: expected NAME=TRAIN,TEST")
        jobs.append((name, lambda n=name, f=files: load_nsl_kdd(n, f[0], f[1])))
    if not jobs:
        raise InputError("nothing to evaluate: give --suite, --flows, --cic or --nsl-kdd")
    command = "netanomd " + " ".join(sys.argv[1:]) if sys.argv[1:] else "netanomd evaluate"
    entries, pictures = [], {}
    for name, loader in jobs:
        start = time.perf_counter()
        data: LabeledData = loader()
        results = []
        sp = split(data, args.seed)
        X_test = data.test_X if data.test_X is not None else data.X[sp.test]
        deployed: list[Deployed] = []
        for proto in PROTOCOLS:
            res = run_protocol(data, proto, lambda: make(args.detector, args.seed), seed=args.seed)
            if args.repeats > 1:
                _repeat(data, proto, res, args)
            results += res
            pictures[f"{name}/{proto}"] = report.figures(res, X_test)
            dep = run_deployed(data, proto, args.seed)
            dep.oracle_f1 = next((r.f1 for r in res if r.model == "netanomd"), None)
            deployed.append(dep)
        entries.append(report.entry(data, sp.how, results, deployed))
        ours = {r.protocol: r for r in results if r.model == "netanomd"}
        print(
            f"{name}: "
            + "; ".join(_headline(d) for d in deployed)
            + f" ({time.perf_counter() - start:.1f}s)\n  ranking: "
            + "; ".join(
                f"{p} ROC-AUC {_f(r.roc_auc)} PR-AUC {_f(r.pr_auc)}"
                if r.status == "ok"
                else f"{p} {r.status}"
                for p, r in ours.items()
            ),
            flush=True,
        )
    out = Path(args.out)
    report.write(out, entries, pictures, command)
    print(f"wrote {out / 'report.html'} and {out / 'results.json'}")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(report.markdown(entries, command))
        print(f"wrote {args.markdown}")
    return 0


def _repeat(data: LabeledData, proto: str, first: list[Result], args: argparse.Namespace) -> None:
    """Rerun ``proto`` with the next ``repeats - 1`` seeds; record every run's AUCs."""
    for r in first:
        r.runs = {"roc_auc": [r.roc_auc], "pr_auc": [r.pr_auc]}
    for seed in range(args.seed + 1, args.seed + args.repeats):
        again = run_protocol(
            data, proto, partial(make, args.detector, seed), seed=seed, importance=False
        )
        for r, a in zip(first, again, strict=True):
            r.runs["roc_auc"].append(a.roc_auc)
            r.runs["pr_auc"].append(a.pr_auc)


def _headline(d: Deployed) -> str:
    """One protocol at the deployed operating point, the oracle F1 last."""
    if d.status != "ok":
        return f"{d.protocol} {d.status}"
    f, i = d.flow, d.incident
    return (
        f"{d.protocol} flows P {_f(f['precision'])} R {_f(f['recall'])} F1 {_f(f['f1'])}, "
        f"incidents P {_f(i['precision'])} R {_f(i['recall'])} F1 {_f(i['f1'])} "
        f"({d.incidents} incidents, {d.false_incidents} false), oracle F1 {_f(d.oracle_f1)}"
    )


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"
