"""The reservoir's feeder thread (netanomd.daemon.sampler): batches queued while it is busy are
added in one call, in their order, and give the sample one call each gives."""

from __future__ import annotations

import time
from pathlib import Path

from netanomd.daemon.sampler import GATHER_ROWS, Sampler
from netanomd.data import attack_files
from netanomd.model.reservoir import Reservoir
from tests.test_reservoir import _scored_parts, stored


def test_batches_queued_while_the_thread_is_busy_are_added_together(tmp_path: Path) -> None:
    parts = _scored_parts([p for p in attack_files() if "remcos" in p.name], 50)
    alone = Reservoir(tmp_path / "alone", per_day=2400, seed=5)
    for p in parts:
        alone.add(*p)
    alone.flush()
    fed = Reservoir(tmp_path / "fed", per_day=2400, seed=5)
    sampler = Sampler(fed, backlog=len(parts))
    with fed._lock:  # the thread's first add waits here: the others queue up meanwhile
        sampler.add(*parts[0])
        deadline = time.monotonic() + 10
        while not sampler._busy and time.monotonic() < deadline:
            time.sleep(0.001)
        for p in parts[1:]:
            sampler.add(*p)
    assert sampler.settle(30.0)
    assert sampler.adds == 2  # the first batch, then all the others at once
    sampler.close()
    assert (fed.kept, fed.excluded) == (alone.kept, alone.excluded) and fed.excluded > 0
    assert stored(tmp_path / "fed").table.equals(stored(tmp_path / "alone").table)


def test_small_batches_are_gathered_into_one_add(tmp_path: Path) -> None:
    """Micro-batches handed in within ``linger`` are added in one call once someone needs the
    sample (a drift pass, the analyst page: ``settle``), and give the sample one add each
    gives."""
    parts = _scored_parts([p for p in attack_files() if "remcos" in p.name], 50)
    assert sum(len(p.batch) for p in parts) < GATHER_ROWS
    alone = Reservoir(tmp_path / "alone", per_day=2400, seed=5)
    for p in parts:
        alone.add(*p)
    alone.flush()
    fed = Reservoir(tmp_path / "fed", per_day=2400, seed=5)
    sampler = Sampler(fed, backlog=4 * len(parts), linger=60.0)
    for p in parts:
        sampler.add(*p)
    time.sleep(0.2)
    assert sampler.adds == 0  # fewer flows than GATHER_ROWS, younger than linger: waiting
    assert sampler.settle(30.0)
    assert sampler.adds == 1
    sampler.close()
    assert (fed.kept, fed.excluded) == (alone.kept, alone.excluded) and fed.excluded > 0
    assert stored(tmp_path / "fed").table.equals(stored(tmp_path / "alone").table)
