"""``netanomd evaluate``: both protocols on labeled data, with a report (HTML + JSON + Markdown).

The headline is what a deployed sensor reports (:mod:`netanomd.evaluation.deployed`): flow- and
incident-level precision, recall and F1 at the model's own operating point, no labels used. The
label-tuned F1 (:mod:`netanomd.evaluation.protocols`) is printed only as the "oracle" column.

Outputs are written to temporary files next to their destination and moved into place only once
every set was evaluated, so a run that fails (a missing ``--suite`` folder, a bad file) leaves
the previous report, ``results.json`` and Markdown summary as they were.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
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
        nargs="+",
        action="extend",
        default=[],
        metavar="NAME=FILE[,FILE]",
        help="labeled Zeek conn logs / IoT-23 CSV / EVE, one set per NAME=FILE[,FILE] "
        "(several may follow one --flows, which may also repeat)",
    )
    p.add_argument("--label-map", metavar="JSON", help="address/CIDR -> label for EVE inputs")
    p.add_argument(
        "--cic",
        nargs="+",
        action="extend",
        default=[],
        metavar="NAME=FILE",
        help="CICFlowMeter CSV with a label column (Label, Labelb 0/1, Attack), one set per "
        "NAME=FILE (several, or repeat)",
    )
    p.add_argument(
        "--nsl-kdd",
        nargs="+",
        action="extend",
        default=[],
        metavar="NAME=TRAIN,TEST",
        help="NSL-KDD train and test files, one set per NAME=TRAIN,TEST (several, or repeat)",
    )
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
        root = Path(args.suite)
        if not root.is_dir():
            raise InputError(
                f"--suite {args.suite}: no such directory ({root.resolve()}); give the shared "
                "data folder (make evaluate: SHARED_DATA=/path/to/shared/data)"
            )
        sets = suite(root)
        for name, paths, loader in sets:
            missing = [str(p) for p in paths if not p.exists()]
            if missing:
                print(f"skipping {name}: missing {', '.join(missing)}", file=sys.stderr)
                continue
            jobs.append((name, loader))
        if not jobs:
            raise InputError(
                f"--suite {args.suite}: none of the {len(sets)} labeled sets is there "
                f"(looked for {sets[0][1][0].relative_to(root)} and the others listed above)"
            )
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
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".evaluate-", dir=out))
    try:
        report.write(staging, entries, pictures, command)
        if args.markdown:
            md = Path(args.markdown)
            md.parent.mkdir(parents=True, exist_ok=True)
            _write_then_move(md, report.markdown(entries, command))
        for f in sorted(staging.iterdir()):
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {out / 'report.html'} and {out / 'results.json'}")
    if args.markdown:
        print(f"wrote {args.markdown}")
    return 0


def _write_then_move(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then move it over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
