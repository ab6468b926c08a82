"""``netanomd demo``: the main job on the embedded default — no Zeek, no Elasticsearch.

Trains on the bundled clean baseline capture (Isolation Forest plus the host behaviour operating
point), scores the bundled captures that contain attacks as one stream, stores incidents and flow
alerts in SQLite and prints the incidents first (title, severity, counts); the flow alerts
underneath only with ``-v`` or ``--top N``.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from netanomd.commands._display import alert_line
from netanomd.commands._inputs import stats_line
from netanomd.commands.score import print_incidents, score_files
from netanomd.data import attack_files, baseline_files, demo_model
from netanomd.sinks import SinkSet
from netanomd.sinks.sqlite import SQLiteSink, default_db_path, query_alerts
from netanomd.sources import ReadStats


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="train on the bundled baseline, score bundled attacks, show the incidents"
    )
    p.add_argument(
        "--workdir",
        metavar="DIR",
        help="where the model and alert database go (default: next to the default alert database)",
    )
    p.add_argument(
        "--top", type=int, default=0, help="also print the top N flow alerts (default none)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="also print the top 15 flow alerts")
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
        f"({model.meta['threshold_rule']['method']}) -> {model_path}"
    )

    print(f"2. scoring captures with attacks: {', '.join(Path(p).name for p in attacks)}")
    res = score_files(model, attacks, SinkSet([SQLiteSink(db)]))
    print(
        f"   {stats_line(res.stats)}; {len(res.incidents)} incidents from {res.alerts} flow "
        f"alerts and host behaviour in {res.seconds:.2f}s -> {db}"
    )
    print("3. incidents (most severe first):")
    print_incidents(res.incidents, 20, indent="   ")
    rows = query_alerts(db)
    labels = Counter((a.label or "unlabeled") for a in rows)
    if rows:
        summary = ", ".join(f"{k} {v}" for k, v in labels.most_common())
        print(f"   ground-truth labels of the alerted flows (not used for scoring): {summary}")
    top = args.top or (15 if args.verbose else 0)
    if top:
        print(f"4. top {min(top, len(rows))} flow alerts (score, time, flow, why):")
        for a in rows[:top]:
            print("   " + alert_line(a))
    print(f"\nlist the flow alerts with: netanomd alerts --db {db}")
    return 0
