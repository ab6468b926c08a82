"""Host behaviour windows as a live sensor feeds them: CPU microseconds per flow by batch size.

Replays the bundled baseline capture (a real benign day: 7,124 flows over 17 hours, about 7 a
minute) through :class:`~netanomd.behaviour.windows.HostWindows` in small batches, as a live
sensor hands them over, on one core:

* ``dense``: the capture replayed 28 times over at its own timestamps (every replay after the
  first lies in the past, so its flows all fall in the open window): the per-batch cost;
* ``moved on``: each replay moved on in time past the previous one, so a batch of 100 flows
  spans a dozen minutes and closes a window at each: the per-segment cost (what the live
  benches meet when their replay runs on in time).

Prints CPU microseconds per flow, milliseconds per batch and the windows closed for each.
"""

from __future__ import annotations

import os
import time

import _common  # noqa: F401  (this checkout first on sys.path)
import numpy as np
import pyarrow as pa

from netanomd.behaviour.windows import HostWindows
from netanomd.data import baseline_files
from netanomd.flow import FlowBatch
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches


def replayed(cycles: int, moved: bool) -> FlowBatch:
    """The baseline day ``cycles`` times over; each replay ``moved`` on past the previous."""
    day = FlowBatch.concat(list(read_batches(baseline_files(), ReadStats())))
    ts = day.numeric("ts")
    span = float(np.ceil((ts.max() - ts.min()) / 3600.0) * 3600.0) if moved else 0.0
    at = day.table.schema.get_field_index("ts")
    return FlowBatch.concat(
        [
            FlowBatch.from_table(day.table.set_column(at, "ts", pa.array(ts + c * span)))
            for c in range(cycles)
        ]
    )


def measure(flows: FlowBatch, size: int) -> tuple[float, float, int]:
    """CPU microseconds per flow and milliseconds per batch of ``size``; windows closed."""
    windows = HostWindows()
    batches = [flows.slice(o, size) for o in range(0, len(flows), size)]
    start = time.process_time()
    closed = sum(len(windows.update(b).hosts) for b in batches) + len(windows.flush().hosts)
    cpu = time.process_time() - start
    return 1e6 * cpu / len(flows), 1e3 * cpu / len(batches), closed


def main() -> int:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    HostWindows().update(replayed(1, False).slice(0, 500))  # load the compiled kernels
    for what, cycles, moved, sizes in (
        ("dense", 28, False, (100, 1000)),
        ("moved on", 4, True, (100, 1000)),
    ):
        flows = replayed(cycles, moved)
        for size in sizes:
            per_flow, per_batch, closed = measure(flows, size)
            print(
                f"{what:>8}, {len(flows):,} flows in batches of {size:>5,}: "
                f"{per_flow:6.2f} us/flow, {per_batch:6.3f} ms/batch, {closed:,} windows closed"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
