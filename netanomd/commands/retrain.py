"""``netanomd retrain``: a candidate model on the last days, promoted only when it is no worse.

Training data, the last ``--days`` days up to ``--until`` (default: today, UTC), from one of:

* the daemon's training reservoir (``--reservoir DIR``, default ``<state_dir>/reservoir``:
  ``YYYY-MM-DD.parquet``, :mod:`netanomd.model.reservoir`), which works for every source;
* a Zeek log archive (``--zeek-archive DIR``: ``DIR/YYYY-MM-DD/conn.*.log.gz``,
  :mod:`netanomd.commands._archive`, as ``netanomd train`` reads it).

Flows an analyst marked benign (:mod:`netanomd.feedback`, in the database below) are added
to the training data, in flow-time order, once (:func:`with_benign`). The candidate is
trained the way the current model was (its features, detector, threshold rule, vetted or
not, behaviour limits and incident budget), then both models score the most recent
``--shadow-days`` of the same traffic as fresh streams (the shadow run). The candidate is
promoted (:mod:`netanomd.model.store`) only if

* it keeps the budget: at most ``max(budget x shadow days, the current model's count)``
  incidents, and at most ``max(0.5% of the shadow flows, the current model's count)`` flow
  alerts, each with :data:`SLACK` (a quarter) on top: a day's counts are small numbers, and
  a candidate fitted on the shadow days alerts on about its quantile's share of them by
  construction; and
* it does not silence an open incident: for every incident still open and not marked benign
  in the daemon's SQLite database (``--db``, default the configuration's
  ``sinks.sqlite.path``) that the current model reports in the shadow run (same host and
  behaviour), or whose flows are in it, the candidate reports the same behaviour of that
  host (flow alerts for an "anomalous flows" incident).

Otherwise the current model stays and the command says why. Either way the candidate is kept
in the store (``netanomd model promote`` can still promote it) and the outcome is recorded in
the store's history. Exit status 0 in both cases; 2 on an error (no data, no current model).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from netanomd.behaviour.incidents import FLOW_ALERTS
from netanomd.commands._archive import add_window_arguments, archive_days, day_window, where
from netanomd.config import DEFAULT_CONFIG_PATH, Config, load_config
from netanomd.decision.thresholds import MAX_TRAINING_ALERT_SHARE
from netanomd.errors import InputError
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.model.store import ModelStore

log = logging.getLogger(__name__)

#: How far (a share) the candidate may exceed the budget or the current model's counts.
SLACK = 1.25


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "retrain", help="train a candidate on recent days; promote it only if it keeps the budget"
    )
    p.add_argument("--config", "-c", metavar="FILE", help=f"default {DEFAULT_CONFIG_PATH}")
    p.add_argument("--store", metavar="DIR", help="model store (default: model.store)")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--reservoir",
        metavar="DIR",
        help="the daemon's training reservoir (default <state_dir>/reservoir)",
    )
    src.add_argument("--zeek-archive", metavar="DIR", help=f"a Zeek log archive: {where('DIR')}")
    add_window_arguments(p, days=7)
    p.add_argument(
        "--shadow-days",
        type=int,
        default=1,
        help="most recent days both models score before deciding (default 1)",
    )
    p.add_argument("--db", metavar="FILE", help="SQLite database with the open incidents")
    p.add_argument(
        "--threshold-quantile",
        type=float,
        metavar="Q",
        help="threshold the candidate at this training quantile instead of the current rule",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dry-run", action="store_true", help="decide and say so, but promote nothing")
    p.set_defaults(func=run)


# -- training data -------------------------------------------------------------------------
def reservoir_days(root: Path, first: dt.date, last: dt.date) -> list[tuple[dt.date, list[Path]]]:
    """The reservoir's day files in ``[first, last]``, oldest first."""
    from netanomd.model.reservoir import day_files

    return [(day, [path]) for day, path in day_files(root) if first <= day <= last]


def read_days(days: list[tuple[dt.date, list[Path]]]) -> Iterator[FlowBatch]:
    from netanomd.commands._inputs import read_inputs
    from netanomd.model.reservoir import read_day
    from netanomd.sources import ReadStats

    for _, paths in days:
        if paths and paths[0].suffix == ".parquet":
            yield from (read_day(p) for p in paths)
        else:
            yield from read_inputs([str(p) for p in paths], ReadStats(), "reading")


def benign_batch(db: Path) -> FlowBatch | None:
    """The flows analysts marked benign in the alert database ``db`` (None when none)."""
    if not db.exists():
        return None
    from netanomd.feedback.store import benign_conn_lines, open_store
    from netanomd.sources import ReadStats
    from netanomd.sources.files import read_batches

    store = open_store(db)
    try:
        lines = list(benign_conn_lines(store))
    finally:
        store.close()
    if not lines:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "benign.conn.log"
        path.write_text("".join(line + "\n" for line in lines))
        batches = list(read_batches([str(path)], ReadStats()))
    return FlowBatch.concat(batches) if batches else None


def with_benign(batches: Iterable[FlowBatch], benign: FlowBatch | None) -> Iterator[FlowBatch]:
    """The training batches with the flows marked benign merged in by flow time: each joins
    the end of the batch whose time span holds it (the training stream's windows see it when
    it happened, not all at once at the end; the batch's own order is kept), those before a
    batch's span come as a batch of their own before it, and a flow the training data holds
    too (a Zeek archive has every flow) is there once."""
    if benign is None or not len(benign):
        yield from batches
        return
    benign = benign.take(np.argsort(benign.numeric("ts", fill=-np.inf), kind="stable"))
    times = benign.numeric("ts", fill=-np.inf)
    marked = pa.array([u for u in benign.column("uid").to_pylist() if u], pa.string())
    done = 0
    for batch in batches:
        dup = np.asarray(pc.fill_null(pc.is_in(batch.column("uid"), marked), False))
        if dup.any():
            batch = batch.take(np.flatnonzero(~dup))
        ts = batch.numeric("ts", fill=np.nan)
        if np.isfinite(ts).any():
            before = int(np.searchsorted(times, np.nanmin(ts), side="left"))
            if before > done:
                yield benign.slice(done, before - done)
                done = before
            upto = int(np.searchsorted(times, np.nanmax(ts), side="right"))
            if upto > done:
                batch = FlowBatch.concat([batch, benign.slice(done, upto - done)])
                done = upto
        if len(batch):
            yield batch
    if done < len(benign):
        yield benign.slice(done)


# -- the candidate ---------------------------------------------------------------------------
def train_like(
    current: Model, batches: Iterable[FlowBatch], files: list[str], args: argparse.Namespace
) -> Model:
    """A candidate trained the way ``current`` was."""
    from netanomd.detectors.registry import make
    from netanomd.features import FeatureSpec
    from netanomd.model import default_spec, train
    from netanomd.model.operating import BehaviourLearner

    rule = current.meta.get("threshold_rule", {})
    op = current.operating
    behaviour = (
        BehaviourLearner(
            quantile=op.thresholds.quantile,
            margin=op.thresholds.margin,
            incidents_per_day=op.incidents_per_day,
            quiet=op.quiet,
        )
        if op is not None
        else None
    )
    quantile = args.threshold_quantile
    if quantile is None and rule.get("method") == "quantile":
        quantile = float(rule["quantile"])
    alerts_per_day = (
        float(rule["alerts_per_day"])
        if quantile is None and rule.get("method") == "budget"
        else None
    )
    training = rule.get("training", {})
    return train(
        batches,
        spec=default_spec() if len(current.spec.blocks) > 1 else FeatureSpec(),
        detector=make(current.detector.kind, args.seed),
        threshold_quantile=quantile,
        alerts_per_day=alerts_per_day,
        vetted=bool(training.get("vetted", False)),
        seed=args.seed,
        files=files,
        behaviour=behaviour,
    )


# -- the shadow run --------------------------------------------------------------------------


@dataclass
class Shadow:
    """What one model reports on the shadow traffic."""

    model_id: str
    flows: int = 0
    alerts: int = 0
    incidents: int = 0
    #: (host, behaviour) of every incident, and (host, "anomalous flows") of every alert's
    #: originator and responder.
    reported: set[tuple[str, str]] = field(default_factory=set)


def shadow(model: Model, batches: Iterable[FlowBatch]) -> Shadow:
    """Score ``batches`` as a fresh stream: counts, and what it reports about which host."""
    out = Shadow(model.model_id)
    stream = model.stream()
    for batch in batches:
        _, alerts, _ = stream.process(batch)
        out.flows += len(batch)
        out.alerts += len(alerts)
        for a in alerts:
            out.reported.update((h, FLOW_ALERTS) for h in (a.flow.orig_h, a.flow.resp_h) if h)
    incidents = stream.finish()
    out.incidents = len(incidents)
    out.reported.update((i.host, i.behaviour) for i in incidents)
    return out


@dataclass(frozen=True)
class OpenIncident:
    incident_id: str
    host: str
    behaviour: str
    title: str
    uids: frozenset[str]


def open_incidents(db: Path) -> list[OpenIncident]:
    """Incidents the daemon's database still has open, less those an analyst marked benign
    (none when there is no database)."""
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute(
                "SELECT i.incident_id, i.host, i.behaviour, i.title, "
                "(SELECT json_group_array(uid) FROM incident_flows f "
                " WHERE f.incident_id = i.incident_id) "
                "FROM incidents i WHERE i.closed = 0"
            ).fetchall()
            judged = con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'feedback_actions'"
            ).fetchone()
            benign = {t for (t,) in con.execute(_BENIGN_VERDICTS).fetchall()} if judged else set()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise InputError(f"retrain: {db}: cannot read its open incidents ({exc})") from exc
    return [
        OpenIncident(i, h, b, t, frozenset(json.loads(u or "[]")))
        for i, h, b, t, u in rows
        if i not in benign
    ]


#: Incidents whose latest verdict (netanomd.feedback) is benign.
_BENIGN_VERDICTS = """
SELECT target FROM feedback_actions a
WHERE action = 'benign' AND id = (
    SELECT MAX(id) FROM feedback_actions b
    WHERE b.target = a.target AND b.action IN ('benign', 'confirm')
)
"""


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reasons: list[str]


def decide(
    current: Shadow,
    candidate: Shadow,
    budget_per_day: float,
    days: int,
    incidents: list[OpenIncident],
    shadow_uids: set[str],
) -> Verdict:
    """Promote only if the candidate keeps the budget and silences no open incident."""
    reasons = []
    inc_limit = SLACK * max(budget_per_day * days, current.incidents)
    if candidate.incidents > inc_limit:
        reasons.append(
            f"the candidate raised {candidate.incidents} incidents in {days} shadow day(s), "
            f"over the budget of {inc_limit:.4g} (current model: {current.incidents})"
        )
    alert_limit = SLACK * max(MAX_TRAINING_ALERT_SHARE * candidate.flows, current.alerts)
    if candidate.alerts > alert_limit:
        reasons.append(
            f"the candidate raised {candidate.alerts} flow alerts on {candidate.flows} shadow "
            f"flows, over {alert_limit:.4g} (current model: {current.alerts})"
        )
    for inc in incidents:
        key = (inc.host, inc.behaviour)
        seen = key in current.reported or bool(inc.uids & shadow_uids)
        if seen and key not in candidate.reported:
            reasons.append(
                f"the candidate would silence open incident {inc.incident_id[:12]} "
                f"({inc.title}): it reports no {inc.behaviour} of {inc.host}"
            )
    return Verdict(not reasons, reasons)


# -- the command -----------------------------------------------------------------------------
def _config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = str(DEFAULT_CONFIG_PATH)
    return load_config(path)


def current_model(store: ModelStore, cfg: Config) -> Model:
    """The store's current model; a store with none adopts the configured model file."""
    if store.current_id() is None:
        path = Path(cfg.model.path)
        if path == store.pointer or not path.exists():
            raise InputError(
                f"retrain: {store.root} has no current model and {path} does not exist; "
                "train one and `netanomd model promote` it first"
            )
        store.promote(store.add_file(path), f"adopted {path}")
    return store.load_current()


def run(args: argparse.Namespace) -> int:
    cfg = _config(args)
    store = ModelStore(args.store or cfg.model.store)
    if args.shadow_days < 1:
        raise InputError(f"retrain: --shadow-days {args.shadow_days} must be at least 1")
    first, last = day_window(args.until, args.days, "retrain")
    if args.zeek_archive:
        days = archive_days(Path(args.zeek_archive), first, last, "retrain")
        layout = where(args.zeek_archive)
    else:
        root = Path(args.reservoir or Path(cfg.state_dir) / "reservoir")
        days = reservoir_days(root, first, last)
        layout = f"{root}/YYYY-MM-DD.parquet"
    if not days:
        raise InputError(f"retrain: no traffic from {first} to {last} in {layout}")
    current = current_model(store, cfg)
    db = Path(args.db or cfg.sinks.sqlite.path)
    files = [str(p) for _, paths in days for p in paths]
    benign = benign_batch(db)
    batches = with_benign(read_days(days), benign)
    if benign is not None:
        files.append(f"{db} (flows marked benign)")
    t0 = time.monotonic()
    candidate = train_like(current, batches, files, args)
    recent = days[-args.shadow_days :]
    print(
        f"trained    {candidate.model_id} on {candidate.meta['training']['rows']:,} flows "
        f"({days[0][0]} to {days[-1][0]}, {len(days)} days"
        + (f", {len(benign)} marked benign" if benign is not None else "")
        + f") in {time.monotonic() - t0:.0f}s"
    )
    store.add(candidate)
    shadow_batches = list(read_days(recent))
    cur = shadow(current, shadow_batches)
    cand = shadow(candidate, shadow_batches)
    uids = {u for b in shadow_batches for u in b.column("uid").to_pylist() if u}
    op = current.operating
    budget = op.incidents_per_day if op is not None else float("inf")
    verdict = decide(cur, cand, budget, len(recent), open_incidents(db), uids)
    print(
        f"shadow     {cand.flows:,} flows of {recent[0][0]}..{recent[-1][0]}: current "
        f"{cur.alerts} alerts / {cur.incidents} incidents, candidate {cand.alerts} / "
        f"{cand.incidents}"
    )
    if not verdict.promote:
        why = "; ".join(verdict.reasons)
        store.record("refused", candidate.model_id, why)
        print(f"kept       {current.model_id}: {why}")
        return 0
    if args.dry_run:
        print(f"would promote {candidate.model_id} (dry run)")
        return 0
    store.promote(candidate.model_id, f"retrained on {days[0][0]}..{days[-1][0]}")
    print(f"promoted   {candidate.model_id} (was {current.model_id})")
    return 0
