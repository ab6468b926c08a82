"""The training reservoir's biases, on real captures: an attack raised as an incident only when
its window closed must not stay in the sample its first flows went into, and a restart (or
flows for a day already written) must not tilt an hour's sample towards the later flows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa

from netanomd.behaviour.incidents import Incident
from netanomd.data import attack_files, baseline_files, demo_model
from netanomd.flow import FlowBatch
from netanomd.model.drift import DriftMonitor
from netanomd.model.reservoir import Reservoir, Scored, day_files, read_day
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches


def read_all(paths: list[Path]) -> FlowBatch:
    return FlowBatch.concat(list(read_batches([str(p) for p in paths], ReadStats())))


def stored(root: Path) -> FlowBatch:
    return FlowBatch.concat([read_day(p) for _, p in day_files(root)])


def test_flows_sampled_before_their_incident_opened_are_taken_out(tmp_path: Path) -> None:
    """The RemcosRAT brute force, 50 flows a batch, none alerted (threshold above every score):
    the incident opens when its first window closes, after that window's flows were sampled
    and written (a flush every batch). None of its flows is left in the written days; the
    host's other flows and everyone else's are."""
    remcos = read_all([p for p in attack_files() if "remcos" in p.name])
    stream = demo_model().stream()
    r = Reservoir(tmp_path / "res", per_day=1_000_000, flush_seconds=0.0)
    seen: dict[int, Incident] = {}
    first_open = None
    for i in range(0, len(remcos), 50):
        part = remcos.slice(i, 50)
        scores, alerts, _ = stream.process(part, threshold=2.0)
        assert not alerts
        open_now = list(stream.tracker.open.values())
        if open_now and first_open is None:
            first_open = i
            assert len(stored(tmp_path / "res")) >= 50  # the attack's start is on disk
        r.add(part, scores, alerts, open_now)
        seen.update((inc.id, inc) for inc in open_now)
    r.flush()
    (brute,) = [i for i in seen.values() if i.behaviour == "brute force"]
    assert first_open is not None and first_open > 0
    kept = stored(tmp_path / "res")
    inside = brute.members(remcos)
    assert inside.sum() > 500 and not brute.members(kept).any()
    expected = set(np.asarray(remcos.column("uid").to_pylist(), dtype=object)[~inside].tolist())
    assert set(kept.column("uid").to_pylist()) == expected
    assert r.excluded == int(inside.sum())
    assert brute.host in set(kept.column("orig_h").to_pylist())  # its other traffic stays


def test_a_restart_keeps_sampling_each_hour_uniformly(tmp_path: Path) -> None:
    """Each hour of the benign day: its first 80% of flows sampled by one daemon, the last
    20% by the next one (a restart). With 10 flows kept an hour, about a fifth of the kept
    flows must come after the restart, as if no restart had happened (the day file keeps how
    many flows each hour saw). A restarted sample that forgot it would keep mostly the later
    flows."""
    day = read_all(baseline_files())
    hour = (day.numeric("ts") // 3600).astype(np.int64)
    rank = np.zeros(len(day))
    for h in np.unique(hour):
        rows = np.flatnonzero(hour == h)
        rank[rows] = np.arange(len(rows)) / len(rows)
    early, late = np.flatnonzero(rank < 0.8), np.flatnonzero(rank >= 0.8)
    busy = {h for h, n in Counter(hour.tolist()).items() if n >= 200}
    assert len(busy) >= 5
    later = total = 0
    for seed in range(10):
        root = tmp_path / str(seed)
        before = Reservoir(root, per_day=240, seed=seed)
        before.add(day.take(early), np.zeros(len(early)), [], [])
        before.flush()
        after = Reservoir(root, per_day=240, seed=seed + 100)
        after.add(day.take(late), np.zeros(len(late)), [], [])
        after.flush()
        kept = stored(root)
        in_busy = np.isin((kept.numeric("ts") // 3600).astype(np.int64), list(busy))
        late_uids = set(day.take(late).column("uid").to_pylist())
        uids = np.asarray(kept.column("uid").to_pylist(), dtype=object)[in_busy]
        later += sum(u in late_uids for u in uids.tolist())
        total += len(uids)
    assert total == 10 * 10 * len(busy)
    share = later / total
    assert 0.12 < share < 0.28, share  # a fifth, give or take sampling noise


def test_add_costs_the_rows_it_brings_not_the_rows_the_hour_holds(tmp_path: Path) -> None:
    """The benign day's flows re-timed into one hour: 40,000 seen, 8,000 kept (per_day
    192,000), then 64 batches of 200. Rows touched by an ``add``, counted as the bytes Arrow
    allocates during it over the bytes of one of the batch's rows: fewer than the batch's on
    average (a fifth of its rows is taken), and no batch re-takes what the hour holds (the
    reservoir that concatenated and re-took the hour on every batch touched 8,200 rows each).
    The sample is still exactly the hour's cap."""
    day = read_all(baseline_files())
    hour_start = 1_676_890_800.0  # 2023-02-20 11:00 UTC

    def timed(start: int, n: int) -> FlowBatch:
        table = day.take(np.arange(start, start + n) % len(day)).table
        ts = hour_start + np.arange(start, start + n) * 0.05
        return FlowBatch(table.set_column(table.schema.get_field_index("ts"), "ts", pa.array(ts)))

    held = 8_000
    r = Reservoir(
        tmp_path / "res", per_day=24 * held, flush_seconds=1e9, drift=DriftMonitor(1 << 30)
    )
    for start in range(0, 40_000, 5_000):
        r.add(timed(start, 5_000), np.zeros(5_000), [], [])
    pool = pa.default_memory_pool()
    touched = []
    for i in range(64):
        batch = timed(40_000 + 200 * i, 200)
        row_bytes = batch.table.nbytes / len(batch)
        before = pool.total_bytes_allocated()
        r.add(batch, np.zeros(len(batch)), [], [])
        touched.append((pool.total_bytes_allocated() - before) / row_bytes)
    assert np.mean(touched) < 200 and max(touched) < held / 4, (np.mean(touched), max(touched))
    r.flush()
    assert len(stored(tmp_path / "res")) == held


def _scored_parts(paths: list[Path], step: int) -> list[Scored]:
    """A capture scored ``step`` flows at a time by the demo model: each part with its alerts
    and the incidents open when it was scored."""
    flows = read_all(paths)
    model = demo_model()
    model.reset()
    stream = model.stream()
    parts = []
    for i in range(0, len(flows), step):
        part = flows.slice(i, step)
        scores, alerts, _ = stream.process(part)
        parts.append(Scored(part, scores, alerts, list(stream.tracker.open.values())))
    return parts


def test_batches_added_together_keep_what_one_at_a_time_keeps(tmp_path: Path) -> None:
    """Scored batches added four at a time (as the sampler thread does when it is behind) give
    the very sample that adding them one by one gives with the same seed: each batch's alerts
    and open incidents leave out its own flows, every hour holds at most its share, and the
    draws are the same ones in the same order."""
    remcos = [p for p in attack_files() if "remcos" in p.name]
    parts = _scored_parts(baseline_files(), 500) + _scored_parts(remcos, 50)
    assert any(p.alerts for p in parts) and any(p.open_incidents for p in parts)
    one = Reservoir(tmp_path / "one", per_day=240, seed=3, flush_seconds=1e9)
    for p in parts:
        one.add(*p)
    together = Reservoir(tmp_path / "together", per_day=240, seed=3, flush_seconds=1e9)
    for i in range(0, len(parts), 4):
        together.add_all(parts[i : i + 4])
    one.flush()
    together.flush()
    assert (together.kept, together.excluded) == (one.kept, one.excluded)
    assert one.excluded >= sum(len(p.alerts) for p in parts) > 0
    kept = stored(tmp_path / "together")
    assert kept.table.equals(stored(tmp_path / "one").table)
    per_hour = Counter((kept.numeric("ts") // 3600).astype(np.int64).tolist())
    assert len(per_hour) > 5 and max(per_hour.values()) == 10  # per_day / 24
    alerted = {a.flow.uid for p in parts for a in p.alerts}
    assert not alerted & set(kept.column("uid").to_pylist())
