"""What keeps the daemon's alert latency low (issue 16) without changing what it reports: the
warm-up before the first live batch, the training reservoir fed off the scoring thread, and a
de-duplication table the garbage collector does not walk."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from netanomd.behaviour.incidents import Incident
from netanomd.daemon.dedup import Deduplicator
from netanomd.daemon.pipeline import Pipeline
from netanomd.daemon.sampler import Sampler
from netanomd.data import attack_files
from netanomd.decision import Alert
from netanomd.flow import FlowBatch, FlowRecord
from netanomd.model import Model
from netanomd.model.reservoir import Reservoir
from netanomd.sinks import SinkSet
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches


class _Kept:
    """A sink keeping what it is given, as the SQLite sink would (alerts, incident updates)."""

    name = "memory"

    def __init__(self) -> None:
        self.alerts: list[tuple[str | None, float, str]] = []
        self.incidents: list[tuple[int, str, str | None, tuple[str, ...], bool]] = []

    def open(self) -> None:
        pass

    def write(self, alerts: Sequence[Alert]) -> None:
        self.alerts.extend((a.flow.uid, a.score, a.reason) for a in alerts)

    def write_incidents(self, incidents: Sequence[Incident]) -> None:
        self.incidents.extend(
            (i.id, i.behaviour, i.host, tuple(i.alert_uids), i.closed) for i in incidents
        )

    def flush(self) -> None:
        pass

    def close(self, timeout: float = 30.0) -> bool:
        return True


def _run(model: Model, batch: FlowBatch, warm: bool) -> tuple[_Kept, int]:
    sink = _Kept()
    pipe = Pipeline(model, SinkSet([sink]), batch_size=200)
    warmed = pipe.warm_up(read_batches(attack_files(), ReadStats(), batch_size=256)) if warm else 0
    for off in range(0, len(batch), 100):
        assert pipe.offer(batch.slice(off, 100), "file")
    pipe.stop_intake()
    pipe.run()
    assert pipe.drain(1.0)
    return sink, warmed


def test_warm_up_changes_nothing_the_live_stream_reports(demo: Model, remcos: FlowBatch) -> None:
    cold, _ = _run(demo, remcos, warm=False)
    warm, warmed = _run(demo, remcos, warm=True)
    assert warmed == sum(len(b) for b in read_batches(attack_files(), ReadStats()))
    assert cold.alerts and cold.incidents  # the capture alerts and opens incidents
    assert warm.alerts == cold.alerts
    assert warm.incidents == cold.incidents


def _flows(n: int, source: str) -> FlowBatch:
    return FlowBatch.from_records(
        FlowRecord(
            ts=100.0 + i,
            uid=f"C{source}{i}",
            orig_h="10.0.0.1",
            orig_p=40000 + i % 20000,
            resp_h="10.0.0.2",
            resp_p=443,
            proto="tcp",
            community_id=f"1:{i:08d}=",
            source=source,
        )
        for i in range(n)
    )


def test_the_dedup_table_is_left_out_of_garbage_collections() -> None:
    dedup = Deduplicator(120.0)
    suricata, zeek = _flows(10_000, "suricata"), _flows(10_000, "zeek")
    dedup.apply(suricata.slice(0, 10), 0.0)  # (first calls make what they make once)
    gc.collect()
    before = len(gc.get_objects())
    kept, dropped = dedup.apply(suricata.slice(10), 0.0)
    again, twins = dedup.apply(zeek, 1.0)  # the same connections from the other sensor
    assert (len(kept), dropped, len(again), twins) == (9_990, 0, 0, 10_000)
    del kept, again
    for _ in range(3):  # each pass lets go of one more layer of nested tuples
        gc.collect()
    # 10,000 remembered connections: not one tracked object (or more) each
    assert len(gc.get_objects()) - before < 1_000


def test_the_sampler_adds_every_batch_in_order_and_writes_on_close(
    tmp_path: Path, demo: Model, remcos: FlowBatch
) -> None:
    reservoir = Reservoir(tmp_path / "reservoir", per_day=24_000)
    sampler = Sampler(reservoir, backlog=2)
    stream = demo.stream()
    scored = []
    for off in range(0, len(remcos), 50):
        batch = remcos.slice(off, 50)
        scores, alerts, _ = stream.process(batch)
        scored.append(scores)
        sampler.add(batch, scores, alerts, stream.tracker.open.values())
    assert sampler.settle(30.0)
    assert np.array_equal(reservoir.recent.scores(), np.concatenate(scored))
    assert reservoir.kept + reservoir.excluded == len(remcos) > reservoir.kept > 0
    assert not list((tmp_path / "reservoir").glob("*.parquet"))  # not written yet
    sampler.close()
    assert list((tmp_path / "reservoir").glob("*.parquet"))


def test_refreeze_lets_a_replaced_objects_cycles_be_collected() -> None:
    """What start-up froze stays out of collections; a reload's refreeze frees a replaced
    object's reference cycles (a frozen cycle is otherwise kept for the life of the process)."""
    import weakref

    from netanomd.daemon.service import refreeze

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only a collection frees it
    gone = weakref.ref(a)
    try:
        gc.freeze()
        del a, b
        gc.collect()
        assert gone() is not None  # frozen: out of the collector's reach
        refreeze()
        assert gone() is None
    finally:
        gc.unfreeze()
