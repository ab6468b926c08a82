"""The scoring loop's batch sizes (issue 16): a backlog is scored in larger batches (up to
``backlog_batch_size``) and reports exactly what ``batch_size`` batches report; without a
backlog a batch is what arrived within ``batch_timeout``, as before."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from netanomd.behaviour.incidents import FLOW_ALERTS, Incident
from netanomd.daemon.pipeline import Pipeline
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.sinks import SinkSet
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches
from tests.test_latency import _Kept


class _Grouped(_Kept):
    """Also keeps each incident update as tests/test_stream.py compares the grouping."""

    def __init__(self) -> None:
        super().__init__()
        self.grouped: list[tuple[object, ...]] = []

    def write_incidents(self, incidents: Sequence[Incident]) -> None:
        super().write_incidents(incidents)
        self.grouped.extend(
            (
                i.id,
                i.behaviour,
                i.role,
                i.host,
                i.detail,
                i.flows,
                i.severity,
                i.first_seen,
                i.last_seen,
                i.closed,
            )
            for i in incidents
        )


def _queued_then_run(
    model: Model, batch: FlowBatch, offer: int, backlog_batch_size: int
) -> tuple[list[int], _Grouped]:
    """Offer all of ``batch`` in pieces of ``offer`` flows, then run the loop (batch_size
    1,000): the batch sizes scored and what the sink got."""
    model.reset()
    sink = _Grouped()
    sizes: list[int] = []
    pipe = Pipeline(
        model,
        SinkSet([sink]),
        batch_size=1000,
        backlog_batch_size=backlog_batch_size,
        on_batch=lambda b, *_: sizes.append(len(b)),
    )
    for off in range(0, len(batch), offer):
        assert pipe.offer(batch.slice(off, offer), "file")
    pipe.stop_intake()
    pipe.run()
    assert pipe.drain(1.0)
    return sizes, sink


def _named(sink: _Grouped) -> list[tuple[object, ...]]:
    """The named incidents (scan, brute force...) as last written (one is written again each
    time a batch changes it), sorted: the incidents' numbers follow the order they opened in,
    and "anomalous flows" incidents that a named one later takes over come and go with the
    batch boundaries (they are retracted)."""
    last = {i[0]: i[1:] for i in sink.grouped}
    return sorted((i for i in last.values() if i[0] != FLOW_ALERTS), key=repr)


def test_a_backlog_is_scored_in_larger_batches_that_report_the_same(
    demo: Model, data_dir: Path
) -> None:
    """CTU-50 008 in the order a sensor logs it (by flow end), queued 500 flows at a time
    before the loop runs: the same alerts and incidents in batches of up to 4,000 as in
    batches of 1,000 (the grouping does not depend on the batch size: tests/test_stream.py)."""
    flows = FlowBatch.concat(
        list(read_batches([str(data_dir / "behaviour/ctu50-008.conn.log.labeled.gz")], ReadStats()))
    )
    end = flows.numeric("ts") + np.maximum(flows.numeric("duration"), 0.0)
    flows = flows.take(np.argsort(end, kind="stable"))
    n = len(flows)
    big, big_sink = _queued_then_run(demo, flows, 500, 4000)
    small, small_sink = _queued_then_run(demo, flows, 500, 1000)
    # all waiting: 4,000, then the rest (more than batch_size still waiting)
    assert 5000 < n < 8000 and big == [4000, n - 4000]
    assert sum(big) == sum(small) == n and max(small) == 1000 and len(small) == -(-n // 1000)
    assert small_sink.alerts and small_sink.incidents
    assert big_sink.alerts == small_sink.alerts
    assert {"brute force", "vertical scan"} <= {i[0] for i in _named(small_sink)}
    assert _named(big_sink) == _named(small_sink)
    # batch_size waiting is no backlog: one batch of batch_size
    assert _queued_then_run(demo, flows.slice(0, 1000), 500, 4000)[0] == [1000]


def test_without_a_backlog_a_batch_is_what_arrived(demo: Model, remcos: FlowBatch) -> None:
    """Flows offered 50 at a time, each scored before the next arrives: every batch is those
    50 (taken after batch_timeout), however large backlog_batch_size is."""
    sizes: list[int] = []
    pipe = Pipeline(
        demo,
        SinkSet([_Kept()]),
        batch_size=100,
        backlog_batch_size=8192,
        batch_timeout=0.01,
        on_batch=lambda b, *_: sizes.append(len(b)),
    )
    loop = threading.Thread(target=pipe.run)
    loop.start()
    try:
        for off in range(0, 750, 50):
            assert pipe.offer(remcos.slice(off, 50), "file")
            deadline = time.monotonic() + 30
            while pipe.stats.scored < off + 50 and time.monotonic() < deadline:
                time.sleep(0.002)
    finally:
        pipe.stop_intake()
        loop.join(30)
    assert sizes == [50] * 15
