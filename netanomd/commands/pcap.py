"""``netanomd pcap``: from captures to incidents in one command.

Each capture (pcap or pcapng, checked by its first bytes before anything runs) is read by a
sensor netanomd runs itself — Zeek with the package and Community ID logging when Zeek is
installed, else Suricata 7 — into a flow log; the logs are then scored as one stream through
:func:`netanomd.commands.score.score_files` with the given model or one trained on the bundled
clean baseline, and reported as ``netanomd score`` reports (incidents first; flow alerts with
``-v``). The sensor's logs are kept with ``--keep-logs DIR``, one directory per capture.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from netanomd.commands.score import (
    add_allowlist_arguments,
    add_es_arguments,
    allowlist,
    es_sink,
    report,
    score_files,
)
from netanomd.model import Model
from netanomd.sensors import Sensor, find_sensor
from netanomd.sensors.capture import capture_format
from netanomd.sinks import SinkSet
from netanomd.sinks.sqlite import SQLiteSink, default_db_path

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "pcap", help="run Zeek or Suricata on captures, score their flows, show the incidents"
    )
    p.add_argument("captures", nargs="+", metavar="FILE", help="pcap or pcapng files")
    p.add_argument(
        "--model",
        "-m",
        metavar="PATH",
        help="model artifact (default: train one on the bundled clean baseline, ~10 s)",
    )
    p.add_argument("--db", metavar="PATH", help=f"alert database (default {default_db_path()})")
    p.add_argument(
        "--keep-logs",
        metavar="DIR",
        help="keep the sensor's logs in DIR, one directory per capture (default: discarded)",
    )
    p.add_argument("--threshold", type=float, help="override the model's stored flow threshold")
    p.add_argument(
        "--incidents", type=int, default=20, help="incidents to print (default 20, 0 = none)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="also print the top 15 flow alerts")
    add_allowlist_arguments(p)
    add_es_arguments(p)
    p.set_defaults(func=run)


class _Progress:
    """How far the sensor is through a capture: a bar on a terminal, else a log line every
    ``every`` seconds (so that a long capture shows it is moving)."""

    def __init__(self, name: str, every: float = 10.0) -> None:
        self.name, self.every = name, every
        self._bar: Any = None
        self._last = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if sys.stderr.isatty():
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(
                    desc=self.name, total=total, unit="B", unit_scale=True, leave=False
                )
            self._bar.update(done - self._bar.n)
        elif time.monotonic() - self._last >= self.every and done < total:
            self._last = time.monotonic()
            log.info("%s: %d%% (%s of %s bytes)", self.name, 100 * done // total, done, total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def log_dirs(captures: list[Path], root: Path) -> list[Path]:
    """One directory under ``root`` per capture, named after it (numbered when names repeat)."""
    seen: dict[str, int] = {}
    dirs = []
    for cap in captures:
        n = seen[cap.stem] = seen.get(cap.stem, 0) + 1
        dirs.append(root / (cap.stem if n == 1 else f"{cap.stem}-{n}"))
    return dirs


def read_captures(sensor: Sensor, captures: list[Path], root: Path) -> list[Path]:
    """Run the sensor on each capture into its directory under ``root``; the flow logs."""
    logs = []
    for i, (cap, out) in enumerate(zip(captures, log_dirs(captures, root), strict=True), 1):
        progress = _Progress(f"{sensor.name} {cap.name}")
        start = time.perf_counter()
        try:
            flow_log = sensor.read(cap, out, progress)
        finally:
            progress.close()
        print(
            f"{i}/{len(captures)} {sensor.name} read {cap} ({cap.stat().st_size:,} bytes) in "
            f"{time.perf_counter() - start:.1f}s"
        )
        logs.append(flow_log)
    return logs


def run(args: argparse.Namespace) -> int:
    captures = [Path(c) for c in args.captures]
    for cap in captures:
        capture_format(cap)  # every file checked before the sensor runs on any
    sensor = find_sensor()
    db = Path(args.db) if args.db else default_db_path()
    if args.model:
        model = Model.load(args.model)
    else:
        from netanomd.data import demo_model

        print("no --model: training on the bundled clean baseline (as 'netanomd demo' does)")
        model = demo_model()
    with tempfile.TemporaryDirectory(prefix="netanomd-pcap-") as tmp:
        root = Path(args.keep_logs) if args.keep_logs else Path(tmp)
        logs = read_captures(sensor, captures, root)
        sinks = SinkSet([SQLiteSink(db)])
        es = es_sink(args, db) if args.es_url else None
        if es is not None:
            sinks.add(es)  # not opened: the command delivers the spool itself when scoring ends
        suppress = None if args.no_allowlist else allowlist(db, args.rules)
        res = score_files(model, [str(p) for p in logs], sinks, args.threshold, None, suppress)
    report(res, model, db, es, args.threshold, args.incidents, 15 if args.verbose else 0)
    if args.keep_logs:
        print(f"{sensor.name} logs kept in {root}/ (one directory per capture)")
    return 0
