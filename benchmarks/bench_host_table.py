"""Host-behaviour features as the number of originators grows past the host table.

Scores 200,000 flows (1,000-row batches, one core) from 1,000, 16,000, 20,000 and 1,000,000
distinct originators with the default host table (16,384 slots) and prints flows per
CPU-second and each rate as a ratio of the 1,000-originator one. Eviction is one O(1) step per
new host (an LRU list inside the kernel, features/_host_table.py), so the ratio should stay near 1
(goal: >= 0.8 at 1,000,000 originators).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa
from _common import row

from netanomd.features.host_block import HostFeatures
from netanomd.flow import FlowBatch

ROWS = 200_000


def flows(n: int, originators: int, seed: int = 0) -> FlowBatch:
    rng = np.random.default_rng(seed)
    hosts = rng.integers(0, originators, n)
    return FlowBatch.from_table(
        pa.table(
            {
                "ts": np.sort(rng.uniform(0, 3600, n)),
                "orig_h": [f"10.{(h >> 16) & 255}.{(h >> 8) & 255}.{h & 255}" for h in hosts],
                "resp_h": [f"192.168.0.{x}" for x in rng.integers(1, 255, n)],
                "resp_p": pa.array(rng.integers(1, 1024, n), pa.int32()),
                "conn_state": ["SF"] * n,
                "orig_bytes": rng.integers(0, 1000, n),
                "resp_bytes": rng.integers(0, 1000, n),
            }
        )
    )


def main() -> int:
    os.sched_setaffinity(0, {0})
    HostFeatures().transform(flows(1000, 10))  # compile the kernel first
    base = 0.0
    rates = {}
    for originators in (1_000, 16_000, 20_000, 1_000_000):
        batch = flows(ROWS, originators)
        hf = HostFeatures()
        start = time.process_time()
        for offset in range(0, ROWS, 1000):
            hf.transform(batch.slice(offset, 1000))
        rate = ROWS / (time.process_time() - start)
        base = base or rate
        rates[originators] = rate
        print(
            f"{originators:>9,} originators: {rate:>9,.0f} flows/CPU-s "
            f"({rate / base:.2f}x the 1,000-originator rate), {hf.evictions:,} evictions"
        )
    row(
        "host features, 1,000,000 vs 1,000 distinct originators (host table of 16,384)",
        f"{rates[1_000_000]:,.0f} vs {rates[1_000]:,.0f} flows/CPU-s: "
        f"{rates[1_000_000] / rates[1_000]:.2f}x",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
