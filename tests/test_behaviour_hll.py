"""HyperLogLog distinct counts (netanomd.behaviour.hll) against exact counts on real addresses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from netanomd.behaviour.hll import HllTable, split_hash
from netanomd.behaviour.windows import hash_strings
from netanomd.data import baseline_files
from netanomd.flow import FlowBatch
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches


@pytest.fixture(scope="module")
def day() -> FlowBatch:
    return FlowBatch.concat(list(read_batches(baseline_files(), ReadStats())))


def _values(batch: FlowBatch, name: str) -> np.ndarray:
    return np.asarray(batch.column(name).fill_null("").to_numpy(zero_copy_only=False), object)


def test_estimates_match_exact_distinct_counts(day: FlowBatch) -> None:
    # One sketch per hour of the day: distinct responders contacted, as the windows count them.
    hours = ((day.numeric("ts") - day.numeric("ts").min()) // 3600).astype(np.int64)
    resp = _values(day, "resp_h")
    table = HllTable(int(hours.max()) + 1)
    table.add(hours, hash_strings(pa.array(resp, pa.string())))
    est = table.estimate(np.arange(int(hours.max()) + 1))
    exact = np.array([len(set(resp[hours == h])) for h in range(int(hours.max()) + 1)])
    busy = exact > 0
    assert exact.max() > 100  # the check covers the raw HLL range, not only linear counting
    rel = np.abs(est[busy] - exact[busy]) / exact[busy]
    assert rel.max() < 0.25
    assert np.median(rel) < 0.06
    assert np.all(est[~busy] == 0)


def test_merge_is_the_union(day: FlowBatch) -> None:
    resp = hash_strings(day.column("resp_h"))
    half = len(resp) // 2
    a, b, both = HllTable(1), HllTable(1), HllTable(1)
    a.add(np.zeros(half, np.int64), resp[:half])
    b.add(np.zeros(len(resp) - half, np.int64), resp[half:])
    both.add(np.zeros(len(resp), np.int64), resp)
    a.merge_into(np.array([0]), b, np.array([0]))
    assert np.array_equal(a.registers, both.registers)
    with pytest.raises(ValueError, match="p=6"):
        a.merge_into(np.array([0]), HllTable(1, p=6), np.array([0]))


def test_rank_is_position_of_first_one_bit() -> None:
    p = 7
    hashes = np.array([1 << (63 - p), 1 << (62 - p), 1, 0], dtype=np.uint64)
    idx, rank = split_hash(hashes, p)
    assert idx.tolist() == [0, 0, 0, 0]
    assert rank.tolist() == [1, 2, 64 - p, 64 - p + 1]


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="4 <= p <= 16"):
        HllTable(4, p=3)


def test_address_hash_is_the_one_saved_models_know(day: FlowBatch) -> None:
    """Host windows hash addresses (and known beacons, saved with the thresholds) as pandas'
    ``hash_array`` always did, without pandas: every address of the day, and services, beacon
    keys and non-ASCII text, hash the same."""
    values = np.concatenate([_values(day, "orig_h"), _values(day, "resp_h")])
    values = np.concatenate([np.unique(values), ["", "udp/67", "orig|*|udp/123", "hôte ∆"]])
    ours = hash_strings(pa.array(values.tolist(), pa.string()))
    assert len(values) > 400
    assert np.array_equal(ours, pd.util.hash_array(values.astype(object), categorize=False))
    chunked = pa.chunked_array([values[:7].tolist(), values[7:].tolist()], pa.string())
    assert np.array_equal(hash_strings(chunked), ours)


@pytest.mark.parametrize("p", [4, 7, 10])
def test_estimates_are_the_floats_numpy_adds_up(day: FlowBatch, p: int) -> None:
    """The compiled estimate adds a sketch's ``2 ** -register`` in the order ``np.sum`` does, so
    every estimate (and every reason and threshold made from one) is the float it was: sketches
    of the day's responders per hour, and sketches with ranks far apart, where the order of the
    additions changes the sum's last bits."""
    hours = ((day.numeric("ts") - day.numeric("ts").min()) // 3600).astype(np.int64)
    rows = int(hours.max()) + 1
    table = HllTable(rows + 1000, p)
    table.add(hours, hash_strings(day.column("resp_h")))
    rng = np.random.default_rng(p)
    wide = rng.integers(0, 64 - p + 2, (1000, 1 << p)).astype(np.uint8)
    wide[rng.random(wide.shape) < 0.5] = 1
    table.registers[rows:] = wide
    reg = table.registers.astype(np.int64)
    m = float(1 << p)
    raw = 0.7213 / (1.0 + 1.079 / m) * m * m / np.sum(np.ldexp(1.0, -reg), axis=1)
    zeros = np.sum(reg == 0, axis=1)
    linear = m * np.log(m / np.maximum(zeros, 1))
    want = np.where((raw <= 2.5 * m) & (zeros > 0), linear, raw)
    got = table.estimate(np.arange(rows + 1000))
    assert np.array_equal(got, want)
    sequential = np.array([sum(np.ldexp(1.0, -r).tolist()) for r in reg[rows:]])
    assert (sequential != np.sum(np.ldexp(1.0, -reg[rows:]), axis=1)).any()  # order matters
