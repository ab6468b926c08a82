"""Feature extraction speed: FlowBatch -> float32 matrix, one core, with the feature spec of
the model ``netanomd train`` makes (per-flow and host features).

Builds 1,000,000 rows by repeating the bundled real baseline capture and times the spec's
``transform`` in batches of 65,536 rows (the readers' batch size), a fresh stream each pass,
in CPU time (the process is single-threaded: a busy machine does not change the figure).
"""

from __future__ import annotations

import os
import time

import numpy as np
from _common import ensure_model, row

from netanomd.data import baseline_files
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.sources.files import open_source


def main() -> int:
    os.sched_setaffinity(0, {0})
    base = FlowBatch.concat(list(open_source(str(baseline_files()[0])).batches()))
    reps = -(-1_000_000 // len(base))
    big = FlowBatch.concat([base] * reps).slice(0, 1_000_000)
    big = FlowBatch(big.table.combine_chunks())
    model_spec = Model.load(ensure_model()).spec
    batch = 65_536
    model_spec.fresh().transform(big.slice(0, 1000))  # warm up
    best = np.inf
    for _ in range(3):
        spec = model_spec.fresh()
        start = time.process_time()
        for off in range(0, len(big), batch):
            spec.transform(big.slice(off, batch))
        best = min(best, time.process_time() - start)
    n = len(big)
    print(
        f"features: {len(spec.names)} columns, {n:,} rows in batches of {batch:,}: "
        f"{n / best:,.0f} rows/CPU-s (best of 3, one core)"
    )
    row(
        f"feature extraction ({len(spec.names)} columns, the trained model's spec)",
        f"{n / best:,.0f} rows/CPU-s",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
