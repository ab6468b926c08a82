"""The community-id deduplicator (:mod:`netanomd.daemon.dedup`) against the per-row Python one it
replaced, kept here as the oracle: the same streams (real Zeek and Suricata records of the same
pcaps; randomised mixes of twins in one batch, in the next, out of tolerance, expired, the same
kind repeating, nulls) give the same tables and counts."""

from __future__ import annotations

import random
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from netanomd.daemon.dedup import Deduplicator
from netanomd.flow import FlowBatch
from netanomd.sources.files import open_source

DATA = Path(__file__).parent / "data"
PAIRS = ("ftp_bruteforce", "wikipedia")  # Zeek and Suricata logs of the same pcaps


class _Oracle:
    """The deduplicator as it was (netanomd/daemon/pipeline.py before the table became numpy
    arrays): an OrderedDict of tuples, updated row by row."""

    def __init__(self, window: float, max_entries: int = 1_000_000, tolerance: float = 2.0) -> None:
        self.window = window
        self.max_entries = max_entries
        self.tolerance = tolerance
        #: community_id -> (expiry, [(flow start, source kind, batch number, row), ...]) (a few
        #: per id; the row is where the kept sighting sits in its batch)
        self._seen: OrderedDict[str, tuple[float, tuple[tuple[float, str, int, int], ...]]] = (
            OrderedDict()
        )
        self._batches = 0

    def apply(self, batch: FlowBatch, now: float) -> tuple[FlowBatch, int]:
        """``batch`` without the connections another source kind reported, and how many
        rows were dropped."""
        seen = self._seen
        while seen:
            until = next(iter(seen.values()))[0]
            if until > now and len(seen) <= self.max_entries:
                break
            seen.popitem(last=False)
        self._batches += 1
        this = self._batches
        ids = batch.column("community_id").to_pylist()
        distinct = set(ids)
        distinct.discard(None)
        if not distinct:
            return batch, 0
        starts = batch.numeric("ts", fill=np.nan).tolist()
        sources = batch.column("source").to_pylist()
        # Only an id already seen, or seen twice in the batch, can have a twin: the rows of
        # the others are remembered a run at a time (in row order, as one by one would), the
        # rest looked at one by one.
        twice: set[str] = set()
        if len(distinct) < len(ids) - ids.count(None):
            twice = {c for c, k in Counter(ids).items() if k > 1 and c is not None}
        maybe = (seen.keys() & distinct) | twice
        expiry = now + self.window
        flow_ids: list[int | None] | None = None
        sigs: list[Any] | None = None
        merged = signed = False
        mask = np.ones(len(ids), dtype=bool)
        after = 0  # the first row not looked at
        for i in (
            [*(i for i, cid in enumerate(ids) if cid in maybe), len(ids)] if maybe else [len(ids)]
        ):
            seen.update(
                (ids[r], (expiry, ((starts[r], sources[r] or "", this, r),)))
                for r in range(after, i)
                if ids[r] is not None
            )
            after = i + 1
            if i == len(ids):
                break
            cid, start, kind = ids[i], starts[i], sources[i] or ""
            got = seen.get(cid)
            sightings = got[1] if got is not None else ()
            twin = next(
                (
                    n
                    for n, (t, k, _, _) in enumerate(sightings)
                    if k != kind and abs(t - start) <= self.tolerance
                ),
                None,
            )
            if twin is None:
                seen[cid] = (expiry, (*sightings[-3:], (start, kind, this, i)))
                seen.move_to_end(cid)
                continue
            *_, where, j = sightings[twin]
            if where != this:  # scored in an earlier batch
                mask[i] = False
                continue
            if flow_ids is None or sigs is None:
                flow_ids = batch.column("flow_id").to_pylist()
                sigs = batch.column("signatures").to_pylist()
            keep, drop = (i, j) if kind == "zeek" else (j, i)
            mask[drop] = False
            if flow_ids[keep] is None and flow_ids[drop] is not None:
                flow_ids[keep], merged = flow_ids[drop], True
            if sigs[drop]:  # Suricata's signatures go with its flow id onto the kept record
                sigs[keep], signed = [*(sigs[keep] or []), *sigs[drop]], True
            if keep == i:  # the kept sighting is this row now
                assert got is not None
                kept = (*sightings[:twin], (start, kind, this, i), *sightings[twin + 1 :])
                seen[cid] = (got[0], kept)
        dropped = int((~mask).sum())
        table = batch.table
        if merged:
            index = table.schema.get_field_index("flow_id")
            table = table.set_column(index, "flow_id", pa.array(flow_ids, pa.uint64()))
        if signed:
            index = table.schema.get_field_index("signatures")
            field = table.schema.field(index)
            table = table.set_column(index, field, pa.array(sigs, field.type))
        if dropped:
            table = table.filter(pa.array(mask))
        return (FlowBatch(table) if merged or signed or dropped else batch), dropped


def _read(path: Path) -> FlowBatch:
    return FlowBatch.concat(list(open_source(path).batches()))


@pytest.fixture(scope="module")
def pairs() -> tuple[FlowBatch, FlowBatch]:
    """Zeek's and Suricata's records of the same two pcaps."""
    zeek = FlowBatch.concat([_read(DATA / f"zeek/{n}.json.conn.log") for n in PAIRS])
    eve = FlowBatch.concat([_read(DATA / f"eve/{n}.eve.json") for n in PAIRS])
    return zeek, eve


@pytest.fixture(scope="module")
def pool(pairs: tuple[FlowBatch, FlowBatch]) -> FlowBatch:
    """Real records to build streams from, some with Suricata signatures."""
    return FlowBatch.concat([*pairs, _read(DATA / "eve/test6-malicious-signatures.json")])


def _same(a: pa.Table, b: pa.Table) -> bool:
    """The same rows (a NaN start equal to a NaN start, which ``Table.equals`` does not take)."""
    if not a.schema.equals(b.schema) or a.num_rows != b.num_rows:
        return False
    for x, y in zip(a.columns, b.columns, strict=True):
        if pa.types.is_floating(x.type):
            if not pc.is_null(x).equals(pc.is_null(y)):
                return False
            fx, fy = (np.asarray(pc.fill_null(c, 0.0).to_numpy()) for c in (x, y))
            if not np.array_equal(fx, fy, equal_nan=True):
                return False
        elif not x.equals(y):
            return False
    return True


def _both(
    stream: list[tuple[FlowBatch, float]], window: float, max_entries: int, tolerance: float
) -> tuple[list[FlowBatch], list[int]]:
    """Both deduplicators over ``stream`` (batch, now): the same tables, counts and table sizes
    after every batch; what they kept and dropped."""
    new = Deduplicator(window, max_entries, tolerance)
    old = _Oracle(window, max_entries, tolerance)
    kept, dropped = [], []
    for k, (batch, now) in enumerate(stream):
        got, n = new.apply(batch, now)
        want, m = old.apply(batch, now)
        assert n == m, f"batch {k}"
        assert _same(got.table, want.table), f"batch {k}"
        assert len(new) == len(old._seen), f"batch {k}"
        kept.append(got)
        dropped.append(n)
    return kept, dropped


def test_real_zeek_and_suricata_records_of_one_pcap_keep_zeeks_with_the_flow_id(
    pairs: tuple[FlowBatch, FlowBatch],
) -> None:
    zeek, eve = pairs
    mixed = FlowBatch(FlowBatch.concat([eve, zeek]).table.sort_by("ts"))
    twins = set(zeek.column("community_id").to_pylist()) & set(
        eve.column("community_id").to_pylist()
    )
    for size in (7, 16, len(mixed)):
        batches = [(mixed.slice(i, size), i / 100) for i in range(0, len(mixed), size)]
        kept, dropped = _both(batches, 120.0, 1_000_000, 2.0)
        assert sum(dropped) == len(twins) > 0
        out = FlowBatch.concat(kept).table
        assert sorted(out.column("community_id").to_pylist()) == sorted(
            set(mixed.column("community_id").to_pylist())
        )
        if size == len(mixed):  # one batch: Zeek's record kept, with Suricata's flow id
            flow_id = dict(
                zip(
                    *eve.table.select(["community_id", "flow_id"]).to_pydict().values(), strict=True
                )
            )
            zeek_rows = out.filter(pc.equal(out.column("source"), "zeek"))
            for cid, fid in zip(
                *zeek_rows.select(["community_id", "flow_id"]).to_pydict().values(), strict=True
            ):
                assert fid == flow_id.get(cid)
            assert len(zeek_rows) == len(zeek)


def test_suricatas_signatures_move_onto_the_zeek_record(pool: FlowBatch) -> None:
    """Suricata records with signatures and a Zeek twin of each (ids given: the file has none)."""
    eve = pool.slice(len(pool) - 91)
    n = len(eve)
    ids = pa.array([f"1:sig{i}=" for i in range(n)])
    eve_t = eve.table.set_column(
        eve.table.schema.get_field_index("community_id"), "community_id", ids
    )
    zeek_t = eve_t
    for name, value in (("source", pa.array(["zeek"] * n)), ("flow_id", pa.nulls(n, pa.uint64()))):
        zeek_t = zeek_t.set_column(zeek_t.schema.get_field_index(name), name, value)
    sigs = zeek_t.schema.field("signatures")
    zeek_t = zeek_t.set_column(
        zeek_t.schema.get_field_index("signatures"), sigs, pa.nulls(n, sigs.type)
    )
    batch = FlowBatch(pa.concat_tables([eve_t, zeek_t]))
    (out,), (dropped,) = _both([(batch, 0.0)], 120.0, 1_000_000, 2.0)
    assert dropped == n
    assert out.column("source").to_pylist() == ["zeek"] * n
    assert out.column("signatures").to_pylist() == eve.column("signatures").to_pylist()
    assert out.column("flow_id").to_pylist() == eve.column("flow_id").to_pylist()


#: Community ids for the random streams: short, long (beyond the table's first key width),
#: empty, and ids that differ only in their last byte or length.
_IDS = [
    "1:abc=",
    "1:abd=",
    "1:abc",
    "",
    "1:" + "x" * 70,
    "1:" + "x" * 69 + "y",
    "1:mmmmmmmmmmmmmmmmmmmmmmmmmmmm",
    *(f"1:{i:026d}=" for i in range(40)),
]


_KINDS = ["zeek", "suricata", "zeek", "suricata", None, "", "file"]


def _random_stream(rng: random.Random, pool: FlowBatch) -> list[tuple[FlowBatch, float]]:
    ids = rng.sample(_IDS, rng.randint(2, len(_IDS)))
    stream, now, t0 = [], 0.0, 1.7e9
    for _ in range(rng.randint(1, 30)):
        n = rng.choice([0, 1, 2, 5, 20, 60])
        t = pool.table.take(pa.array([rng.randrange(len(pool)) for _ in range(n)], pa.int64()))
        cols: dict[str, Any] = {
            "community_id": pa.array(
                [None if rng.random() < 0.1 else rng.choice(ids) for _ in range(n)], pa.string()
            ),
            "source": pa.array(
                [rng.choice(_KINDS) for _ in range(n)],
                pa.string(),
            ),
            "ts": pa.array(
                [
                    None if rng.random() < 0.03 else
                    float("nan") if rng.random() < 0.03 else
                    t0 + rng.choice([0.0, 0.5, 1.9, 2.0, 2.1, 5.0, 100.0])
                    for _ in range(n)
                ],
                pa.float64(),
            ),
            "flow_id": pa.array(
                [None if rng.random() < 0.5 else rng.randrange(1 << 60) for _ in range(n)],
                pa.uint64(),
            ),
        }  # fmt: skip
        for name, col in cols.items():
            t = t.set_column(t.schema.get_field_index(name), name, col)
        if rng.random() < 0.3 and n > 3:  # arrow's slices: offsets into shared buffers
            t = t.slice(1, n - 2)
        stream.append((FlowBatch(t), now))
        now += rng.choice([0.0, 0.1, 1.0, 30.0, 59.9, 60.0, 200.0, -1.0])
        t0 += rng.choice([0.0, 0.0, 1.0, 3.0])
    return stream


@pytest.mark.parametrize("seed", range(60))
def test_random_streams_give_what_the_per_row_deduplicator_gave(seed: int, pool: FlowBatch) -> None:
    rng = random.Random(seed)
    stream = _random_stream(rng, pool)
    _, dropped = _both(stream, 60.0, rng.choice([1, 3, 10, 1_000_000]), rng.choice([0.0, 2.0]))
    if seed == 0:
        assert sum(dropped) > 0


def test_many_ids_grow_the_table_and_the_oldest_go_first(pool: FlowBatch) -> None:
    """Beyond the first allocation (and its key width), evicted by count and by window."""
    row = pool.table.slice(0, 1)
    stream = []
    for b in range(12):
        n = 1_000
        t = pa.concat_tables([row] * n)
        width = 30 if b < 6 else 90
        ids = [f"1:{b * 700 + i:0{width}d}" for i in range(n)]
        kinds = ["zeek" if b % 2 else "suricata"] * n
        for name, col in (("community_id", pa.array(ids)), ("source", pa.array(kinds))):
            t = t.set_column(t.schema.get_field_index(name), name, col)
        stream.append((FlowBatch(t), 10.0 * b))
    _, dropped = _both(stream, 45.0, 2_500, 2.0)
    assert 0 < sum(dropped) < 12_000


def test_a_repeated_id_from_one_sensor_is_a_new_connection(pool: FlowBatch) -> None:
    t = pool.table.slice(0, 3)
    t = t.set_column(
        t.schema.get_field_index("community_id"), "community_id", pa.array(["1:a="] * 3)
    )
    t = t.set_column(t.schema.get_field_index("source"), "source", pa.array(["zeek"] * 3))
    dedup = Deduplicator(60.0)
    assert [dedup.apply(FlowBatch(t), 0.0)[1] for _ in range(2)] == [0, 0]
    assert len(dedup) == 1
