"""``netanomd demo``: the main job on the embedded default — no Zeek, no Elasticsearch.

Trains an Isolation Forest on the bundled clean baseline capture, scores the bundled captures
that contain attacks, stores the alerts in SQLite and prints the top anomalies with a reason.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from netanomd.commands._display import alert_line
from netanomd.commands._inputs import stats_line
from netanomd.commands.score import score_files
from netanomd.data import attack_files, baseline_files, demo_model
from netanomd.model import DEFAULT_THRESHOLD_QUANTILE
from netanomd.sinks import SinkSet
from netanomd.sinks.sqlite import SQLiteSink, default_db_path, query_alerts
from netanomd.sources import ReadStats


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="train on the bundled baseline, score bundled attacks, show top anomalies"
    )
    p.add_argument(
        "--workdir",
        metavar="DIR",
        help="where the model and alert database go (default: next to the default alert database)",
    )
    p.add_argument("--top", type=int, default=15, help="anomalies to print (default 15)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    work = Path(args.workdir) if args.workdir else default_db_path().parent / "demo"
    work.mkdir(parents=True, exist_ok=True)
    model_path, db = work / "demo-model.npz", work / "demo-alerts.db"
    db.unlink(missing_ok=True)
    base = [str(p) for p in baseline_files()]
    attacks = [str(p) for p in attack_files()]

    print(f"1. training on the clean baseline: {', '.join(Path(p).name for p in base)}")
    stats = ReadStats()
    model = demo_model(stats=stats)
    model.save(model_path)
    print(f"   {stats_line(stats)}")
    print(
        f"   model {model.model_id}, threshold {model.threshold:.4f} "
        f"(training-score quantile {DEFAULT_THRESHOLD_QUANTILE}) -> {model_path}"
    )

    print(f"2. scoring captures with attacks: {', '.join(Path(p).name for p in attacks)}")
    stats, n_alerts, secs = score_files(model, attacks, SinkSet([SQLiteSink(db)]))
    print(f"   {stats_line(stats)}; {n_alerts} alerts in {secs:.2f}s -> {db}")

    rows = query_alerts(db)
    labels = Counter((a.label or "unlabeled") for a in rows)
    if rows:
        summary = ", ".join(f"{k} {v}" for k, v in labels.most_common())
        print(f"   ground-truth labels of the alerted flows (not used for scoring): {summary}")
    print(f"3. top {min(args.top, len(rows))} anomalies (score, time, flow, why):")
    for a in rows[: args.top]:
        print("   " + alert_line(a))
    print(f"\nlist them again with: netanomd alerts --db {db}")
    return 0
