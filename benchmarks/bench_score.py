"""Scoring speed: scikit-learn ``score_samples`` vs the flattened-forest evaluator, one core.

Model: 100 trees of 256 samples fitted on the bundled real baseline's features (the real feature
set); rows: the bundled captures' features tiled. Prints rows/s per batch size and single-row
latency. Usage: ``python benchmarks/bench_score.py``.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from _common import row
from sklearn.ensemble import IsolationForest

from netanomd.data import attack_files, baseline_files
from netanomd.detectors.iforest import IsolationForestDetector
from netanomd.features import FeatureSpec
from netanomd.flow import FlowBatch
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches


def rate(fn, X: np.ndarray, batch: int, budget: float = 1.5) -> float:  # type: ignore[no-untyped-def]
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < budget:
        for off in range(0, len(X), batch):
            fn(X[off : off + batch])
            n += min(batch, len(X) - off)
            if time.perf_counter() - start > budget:
                break
    return n / (time.perf_counter() - start)


def main() -> int:
    os.sched_setaffinity(0, {0})
    spec = FeatureSpec()
    X_train = spec.transform(FlowBatch.concat(list(read_batches(baseline_files(), ReadStats()))))
    X_test = spec.transform(FlowBatch.concat(list(read_batches(attack_files(), ReadStats()))))
    X = np.ascontiguousarray(np.tile(np.vstack([X_train, X_test]), (12, 1))[:100_000])
    iso = IsolationForest(n_estimators=100, max_samples=256, random_state=0, n_jobs=1).fit(X_train)
    det = IsolationForestDetector()
    det.load_sklearn(iso, X.shape[1])
    det.score(X[:10])  # compile / load the cached kernel
    print(f"scoring: 100 trees x 256 samples, {X.shape[1]} features, one core; rows/s")
    print(f"  {'batch':>7} {'scikit-learn':>14} {'flattened':>14} {'speed-up':>9}")
    figures = []
    for batch in (1, 100, 1000, 100_000):
        sk = rate(iso.score_samples, X, batch, budget=1.0 if batch > 1 else 0.5)
        fast = rate(det.score, X, batch)
        print(f"  {batch:>7,} {sk:>14,.0f} {fast:>14,.0f} {fast / sk:>8.0f}x")
        figures.append(f"{batch:,}: {sk:,.0f} vs {fast:,.0f} ({fast / sk:.0f}x)")
    row(
        "scoring rows/s by batch size, scikit-learn `score_samples` vs the flattened forest",
        "; ".join(figures),
    )
    lat = []
    for i in range(5000):
        t = time.perf_counter_ns()
        det.score(X[i : i + 1])
        lat.append(time.perf_counter_ns() - t)
    p50, p99 = np.percentile(lat, [50, 99]) / 1000
    print(f"  single row (flattened): median {p50:.1f} us, p99 {p99:.1f} us")
    row("one flow, flattened forest", f"median {p50:.1f} µs, p99 {p99:.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
