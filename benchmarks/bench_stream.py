"""The per-batch cost of the stream: :meth:`netanomd.model.Stream.process` at batch sizes 50, 200,
1000 and 5000 (issue 16, live latency and throughput).

The daemon's scoring thread hands the stream whatever arrived within ``batch_timeout_ms``, so at
10k flows/s a 20 ms timeout means batches of ~200 flows: a fixed cost per batch caps the live
rate and adds to every alert's latency. This prints, per batch size, the CPU milliseconds per
batch (median over full batches) and flows per CPU-second, and a least-squares fit of
``ms = fixed + per_flow * size`` over the sizes.

Two clocks: the captures' own flow times (sparse: a 200-flow batch of a 17-hour capture spans
half an hour, so it closes dozens of 1-minute windows and the cost is mostly per window), and
the same flows re-timed to arrive at 10,000 flows/s as on a busy live link (``--rate``: times
and durations compressed by one factor per file, order kept; a window closes every 600,000
flows, so the cost is the per-batch one).

Flows: real Zeek conn logs (the bundled baseline and attack captures, and the
``../shared/data/zeek-conn`` logs where present, or ``--input``), each file one stream in arrival
order. Model: what ``netanomd train`` makes on the bundled baseline (trained once into
``benchmarks/out/``), so host behaviour and incidents run as they do live.

``--ref REV`` also runs the same measurement on the code of git revision ``REV`` (a temporary
``git worktree``), interleaved size by size with the working tree's, each in its own process, and
prints the ratio: before and after from one run. Usage:
``python benchmarks/bench_stream.py [--ref REV] [--sizes 50,200,1000,5000] [--input FILE ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
#: ``../shared/data`` beside the checkout (or beside the directory of worktrees it is in).
SHARED = (
    next(
        (d for d in (ROOT.parent / "shared", ROOT.parent.parent / "shared") if d.exists()),
        ROOT.parent / "shared",
    )
    / "data"
    / "zeek-conn"
)
SHARED_LOGS = (
    "ctu-sme-11-benign-day/conn.log.labeled",
    "ctu50-008/conn.log.labeled",
    "iot23/CTU-IoT-Malware-Capture-34-1.conn.log.labeled",
    "portscan-002-json/conn.log",
)
#: Flows each batch size is measured on at least (the inputs are replayed, later in time).
MIN_FLOWS = 40_000
MIN_BATCHES = 30


def default_inputs() -> list[Path]:
    from netanomd.data import attack_files, baseline_files

    shared = [SHARED / p for p in SHARED_LOGS if (SHARED / p).exists()]
    return [*baseline_files(), *attack_files(), *shared]


def ensure_model() -> Path:
    """The model ``netanomd train`` makes on the bundled baseline (trained once)."""
    model = OUT / "bench-model.npz"
    if not model.exists():
        from netanomd.data import baseline_files

        OUT.mkdir(parents=True, exist_ok=True)
        files = [str(p) for p in baseline_files()]
        subprocess.run(
            [sys.executable, "-m", "netanomd", "train", "--model", str(model), "--input", *files],
            check=True,
            stdout=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
    return model


def retime(fb: Any, rate: float) -> Any:
    """``fb`` (a FlowBatch) with its times and durations compressed so that its flows arrive at
    ``rate`` per second on average (order kept)."""
    import pyarrow as pa

    from netanomd.flow import FlowBatch

    ts = fb.numeric("ts")
    t0 = float(np.min(ts))
    span = float(np.max(ts)) - t0
    k = (len(fb) / rate) / span if span > 0 else 1.0
    table = fb.table
    for name, values in (("ts", t0 + (ts - t0) * k), ("duration", fb.numeric("duration") * k)):
        i = table.schema.get_field_index(name)
        valid = np.asarray(table.column(name).is_valid())
        table = table.set_column(i, name, pa.array(values, pa.float64(), mask=~valid))
    return FlowBatch(table)


def measure(model_path: str, inputs: list[str], size: int, rate: float) -> dict[str, Any]:
    """CPU seconds of every full batch of ``size`` flows through fresh streams, one per input
    file (re-timed to ``rate`` flows/s unless 0), the files replayed (a stream per file per
    pass) until MIN_FLOWS flows."""
    from netanomd.flow import FlowBatch
    from netanomd.model import Model
    from netanomd.sources import ReadStats
    from netanomd.sources.files import read_batches

    model = Model.load(model_path)
    files = [FlowBatch.concat(list(read_batches([p], ReadStats()))) for p in inputs]
    if rate:
        files = [retime(fb, rate) for fb in files]
    # warm up (numba, caches) outside the measurement: a few batches, so that the kernels of a
    # window's known pairs run (and compile, in a fresh checkout) too
    warm = model.stream()
    for a in range(0, min(4 * size, len(files[0])), size):
        warm.process(files[0].slice(a, size))
    times: list[float] = []
    alerts = incidents = flows = 0
    while flows < max(MIN_FLOWS, MIN_BATCHES * size):
        for fb in files:
            stream = model.stream()
            for a in range(0, len(fb) - size + 1, size):
                batch = fb.slice(a, size)
                t0 = time.process_time()
                _, al, inc = stream.process(batch)
                times.append(time.process_time() - t0)
                alerts += len(al)
                incidents += len(inc)
                flows += size
    return {
        "size": size,
        "batches": len(times),
        "flows": flows,
        "ms": 1000 * float(np.median(times)),
        "cpu": float(np.sum(times)),
        "alerts": alerts,
        "incidents": incidents,
    }


def child(tree: Path, model: Path, inputs: list[str], size: int, rate: float) -> dict[str, Any]:
    """:func:`measure` on the code in ``tree``, in a process of its own."""
    env = dict(os.environ, PYTHONPATH=str(tree), NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    args = [sys.executable, __file__, "--child", str(size), "--model", str(model)]
    args += ["--rate", str(rate)]
    done = subprocess.run(
        [*args, "--input", *inputs], env=env, check=True, capture_output=True, text=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def fit(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """(fixed ms per batch, ms per flow) by least squares over the sizes."""
    sizes = np.array([r["size"] for r in rows], dtype=float)
    ms = np.array([r["ms"] for r in rows])
    per_flow, fixed = np.polyfit(sizes, ms, 1)
    return float(fixed), float(per_flow)


def run(
    trees: dict[str, Path],
    model: Path,
    inputs: list[str],
    sizes: list[int],
    rate: float,
    ref: str | None,
) -> None:
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for size in sizes:  # interleaved: each size on every tree before the next size
        for name, tree in trees.items():
            r = child(tree, model, inputs, size, rate)
            results[name].append(r)
            print(
                f"  {name:>12}  batch {size:>5}: {r['ms']:8.2f} ms per batch, "
                f"{r['flows'] / r['cpu']:>9,.0f} flows per CPU-second "
                f"({r['batches']} batches; {r['alerts']} alerts, "
                f"{r['incidents']} incident updates)",
                flush=True,
            )
        if ref:
            old, new = results[ref][-1], results["this tree"][-1]
            print(f"  {'':>12}  batch {size:>5}: {old['ms'] / new['ms']:.2f}x less CPU per batch")
    for name, rows in results.items():
        fixed, per_flow = fit(rows)
        print(f"  {name}: fixed {fixed:.2f} ms per batch + {1000 * per_flow:.2f} µs per flow")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ref", help="git revision to compare with (measured in the same run)")
    ap.add_argument("--sizes", default="50,200,1000,5000")
    ap.add_argument("--input", nargs="+", help="Zeek conn logs (default: bundled + shared)")
    ap.add_argument("--model", help="model file (default: netanomd train on the baseline)")
    ap.add_argument("--rate", type=float, help="only this clock: flows/s, 0 = capture times")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.model, args.input, args.child, args.rate or 0.0)))
        return 0
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    sys.path.insert(0, str(ROOT))
    inputs = args.input or [str(p) for p in default_inputs()]
    model = Path(args.model) if args.model else ensure_model()
    sizes = [int(s) for s in args.sizes.split(",")]
    trees = {"this tree": ROOT}
    with tempfile.TemporaryDirectory() as tmp:
        if args.ref:
            ref = Path(tmp) / "ref"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(ref), args.ref],
                check=True,
                capture_output=True,
            )
            trees = {args.ref: ref, **trees}
        try:
            print(f"Stream.process, {len(inputs)} conn logs, model {model.name}, CPU per batch")
            rates = [args.rate] if args.rate is not None else [10_000.0, 0.0]
            for rate in rates:
                clock = f"re-timed to {rate:,.0f} flows/s" if rate else "capture times"
                print(f"{clock}:")
                run(trees, model, inputs, sizes, rate, args.ref)

        finally:
            if args.ref:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(ref)],
                    check=False,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
