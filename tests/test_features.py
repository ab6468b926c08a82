"""Per-flow features on real Zeek rows (values checked by hand against the log lines)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from netanomd.errors import ModelError
from netanomd.features import FeatureSpec, FlowFeatures
from netanomd.features._strings import codes
from netanomd.features.flow_block import PROTOCOLS
from netanomd.flow import FlowBatch, FlowRecord

# remcos-exfil conn.log, first line: a rejected connection to the C&C port.
REJ = FlowRecord(
    ts=1677024003.714845,
    uid="C6SgKom3WB2KEL2ae",
    orig_h="192.168.1.107",
    orig_p=65164,
    resp_h="66.63.168.35",
    resp_p=5888,
    proto="tcp",
    service=None,
    duration=0.037629,
    orig_bytes=0,
    resp_bytes=0,
    conn_state="REJ",
    local_orig=True,
    local_resp=False,
    missed_bytes=0,
    history="Sr",
    orig_pkts=2,
    orig_ip_bytes=104,
    resp_pkts=2,
    resp_ip_bytes=80,
    source="zeek",
    label="Malicious",
)
# ctu-sme-11 benign day: an HTTP fetch.
HTTP = FlowRecord(
    ts=1676851429.981575,
    uid="Cwgb6g4uF7qxeTJit6",
    orig_h="192.168.1.109",
    orig_p=34606,
    resp_h="185.125.190.17",
    resp_p=80,
    proto="tcp",
    service="http",
    duration=0.038607,
    orig_bytes=87,
    resp_bytes=147,
    conn_state="SF",
    local_orig=None,
    local_resp=None,
    missed_bytes=0,
    history="ShADTdtfFa",
    orig_pkts=10,
    orig_ip_bytes=710,
    resp_pkts=8,
    resp_ip_bytes=726,
    source="zeek",
    label="Benign",
)


def feats(*records: FlowRecord) -> dict[str, np.ndarray]:
    block = FlowFeatures()
    X = block.transform(FlowBatch.from_records(records))
    assert X.dtype == np.float32 and X.shape == (len(records), len(block.names))
    return {n: X[:, i] for i, n in enumerate(block.names)}


def test_rejected_connection_features() -> None:
    f = feats(REJ)
    assert f["state_REJ"][0] == 1 and f["state_SF"][0] == 0 and f["state_other"][0] == 0
    assert f["proto_tcp"][0] == 1 and f["proto_other"][0] == 0
    assert f["log_orig_bytes"][0] == 0 and f["log_resp_bytes"][0] == 0
    assert f["log_orig_pkts"][0] == pytest.approx(math.log1p(2))
    assert f["orig_bytes_per_pkt"][0] == pytest.approx(math.log1p(52))
    assert f["hist_oS"][0] == 1 and f["hist_rr"][0] == 1 and f["hist_oA"][0] == 0
    assert f["resp_port_registered"][0] == 1 and f["resp_port_wellknown"][0] == 0
    assert f["no_service"][0] == 1


def test_http_fetch_features() -> None:
    f = feats(HTTP)
    assert f["state_SF"][0] == 1
    assert f["log_duration"][0] == pytest.approx(math.log1p(0.038607), rel=1e-6)
    assert f["bytes_ratio"][0] == pytest.approx(math.log1p(87) - math.log1p(147), rel=1e-5)
    for c in "SADTF":
        assert f[f"hist_o{c}"][0] == 1
    for c in "dtfa":
        assert f[f"hist_r{c}"][0] == 1
    assert f["hist_rs"][0] == 0 and f["no_service"][0] == 0 and f["resp_port_wellknown"][0] == 1


def test_missing_payload_bytes_are_estimated_from_ip_bytes() -> None:
    # Suricata EVE gives IP bytes only; payload = ip_bytes - 40 per packet.
    eve_like = FlowRecord(
        ts=0.0,
        uid="S1",
        orig_h="10.0.0.1",
        orig_p=40000,
        resp_h="10.0.0.2",
        resp_p=53,
        proto="UDP",
        orig_pkts=2,
        orig_ip_bytes=180,
        resp_pkts=0,
        resp_ip_bytes=0,
        source="suricata",
    )
    f = feats(eve_like)
    assert f["log_orig_bytes"][0] == pytest.approx(math.log1p(100))
    assert f["proto_udp"][0] == 1  # proto is matched case-insensitively
    assert f["state_other"][0] == 1  # unset conn_state


def test_empty_batch() -> None:
    X = FlowFeatures().transform(FlowBatch.empty())
    assert X.shape == (0, len(FlowFeatures().names))


def test_spec_state_round_trip_and_mismatch() -> None:
    spec = FeatureSpec()
    state = spec.to_state()
    assert FeatureSpec.from_state(state).names == spec.names
    with pytest.raises(ModelError, match="feature names"):
        FeatureSpec.from_state(state | {"names": state["names"][:-1]})
    with pytest.raises(ModelError, match="version"):
        FeatureSpec.from_state(state | {"version": 999})
    with pytest.raises(ModelError, match="unknown feature block"):
        FeatureSpec.from_state(state | {"blocks": [{"kind": "nope", "state": {}}]})


def test_a_full_host_table_evicts_the_least_recent_hosts() -> None:
    """Past max_hosts originators, the hosts seen longest ago make room, one per new host,
    and a returning evicted host starts a fresh window."""
    import pyarrow as pa

    from netanomd.features.host_block import HostFeatures

    def flows(hosts: list[int], t0: float) -> FlowBatch:
        n = len(hosts)
        return FlowBatch.from_table(
            pa.table(
                {
                    "ts": [t0 + i * 0.001 for i in range(n)],
                    "orig_h": [f"10.0.{h >> 8}.{h & 255}" for h in hosts],
                    "resp_h": ["192.168.0.1"] * n,
                    "resp_p": pa.array([80] * n, pa.int32()),
                    "conn_state": ["SF"] * n,
                }
            )
        )

    hf = HostFeatures(max_hosts=256)
    hf.transform(flows(list(range(256)), 0.0))  # hosts 0..255, in that order
    hf.transform(flows([0, 0], 10.0))  # host 0 is recent again
    hf.transform(flows(list(range(256, 300)), 20.0))  # 44 new hosts into a full table
    assert hf.hosts == 256 and hf.evictions == 44
    tracked = hf.tracked()
    from netanomd.features._strings import hash_strings

    def key(h: int) -> int:
        return int(hash_strings(pa.chunked_array([[f"10.0.{h >> 8}.{h & 255}"]]))[0])

    assert key(0) in tracked  # seen recently: kept
    assert all(key(h) in tracked for h in range(256, 300))  # the batch's own hosts
    assert key(1) not in tracked  # seen longest ago: evicted
    X = hf.transform(flows([1], 30.0))  # an evicted host comes back with a fresh window
    assert X[0, hf.names.index("host_log_conns")] == pytest.approx(np.log1p(1))
    Y = hf.transform(flows([0], 40.0))  # a kept host still has its earlier flows
    assert Y[0, hf.names.index("host_log_conns")] == pytest.approx(np.log1p(4))


def test_distinct_counts_agree_with_numpy_by_pairs_and_by_sorting() -> None:
    """The host kernel counts distinct responders and ports together, by comparing pairs in a
    small window and by sorting in a large one: both give numpy's counts."""
    from netanomd.features.host_block import _PAIRWISE_MAX, _distinct_pair

    rng = np.random.default_rng(7)
    for m in (1, 2, 17, _PAIRWISE_MAX, _PAIRWISE_MAX + 1, 300):
        for high in (3, 50, 1 << 40):
            values = rng.integers(0, high, size=m).astype(np.uint64)
            ports = rng.integers(-1, high % 65536 + 1, size=m)
            got = _distinct_pair(values.copy(), ports.copy(), m)
            assert got == (len(np.unique(values)), len(np.unique(ports)))


def test_the_kernel_sort_orders_few_and_many_values_as_numpy() -> None:
    from netanomd.features.host_block import _PAIRWISE_MAX, _sort

    rng = np.random.default_rng(3)
    for m in (0, 1, 4, _PAIRWISE_MAX, _PAIRWISE_MAX + 1, 500):
        values = rng.normal(size=m + 5)
        expect = np.concatenate([np.sort(values[:m]), values[m:]])
        _sort(values, m)
        assert np.array_equal(values, expect)


def _numpy_flow_features(batch: FlowBatch) -> np.ndarray:
    """The flow block as whole-column numpy operations: the formulation the models were
    trained with, kept here as the oracle for the compiled kernels."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from netanomd.features.flow_block import CONN_STATES, HISTORY_ORIG, HISTORY_RESP, PROTOCOLS

    def num(name: str) -> np.ndarray:
        col = pc.cast(batch.column(name), pa.float64())
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)

    def one_hot(col: pa.ChunkedArray, values: tuple[str, ...]) -> list[np.ndarray]:
        idx = pc.index_in(col, value_set=pa.array(values, type=pa.string()))
        codes = np.asarray(pc.fill_null(idx, -1).to_numpy(zero_copy_only=False))
        hot = [(codes == i).astype(np.float64) for i in range(len(values))]
        return [*hot, 1.0 - np.sum(hot, axis=0)]

    n = len(batch)
    dur = np.maximum(np.nan_to_num(num("duration"), nan=0.0), 0.0)
    opk, rpk = np.nan_to_num(num("orig_pkts"), nan=0.0), np.nan_to_num(num("resp_pkts"), nan=0.0)
    ob, rb, oip, rip = (
        num("orig_bytes"),
        num("resp_bytes"),
        num("orig_ip_bytes"),
        num("resp_ip_bytes"),
    )
    ob = np.where(np.isnan(ob), np.maximum(np.nan_to_num(oip) - 40 * opk, 0.0), ob)
    rb = np.where(np.isnan(rb), np.maximum(np.nan_to_num(rip) - 40 * rpk, 0.0), rb)
    oip, rip = (
        np.where(np.isnan(oip), ob + 40 * opk, oip),
        np.where(np.isnan(rip), rb + 40 * rpk, rip),
    )
    ob, rb = np.maximum(ob, 0.0), np.maximum(rb, 0.0)
    rp, op = num("resp_p"), num("orig_p")
    hist = pc.fill_null(batch.column("history"), "")
    cols = [
        np.log1p(dur), np.log1p(ob), np.log1p(rb), np.log1p(opk), np.log1p(rpk), np.log1p(oip),
        np.log1p(rip), np.log1p(ob) - np.log1p(rb),
        np.log1p(np.divide(oip, opk, out=np.zeros(n), where=opk > 0)),
        np.log1p(np.divide(rip, rpk, out=np.zeros(n), where=rpk > 0)),
        np.log1p((opk + rpk) / np.maximum(dur, 1e-3)),
        np.nan_to_num(num("missed_bytes")) > 0,
        np.asarray(batch.column("service").is_null().to_numpy(zero_copy_only=False)),
        rp < 1024, (rp >= 1024) & (rp < 49152), (rp >= 49152) | np.isnan(rp), op < 1024,
        *one_hot(pc.utf8_lower(batch.column("proto")), PROTOCOLS),
        *one_hot(batch.column("conn_state"), CONN_STATES),
        *(
            np.asarray(pc.match_substring(hist, ch).to_numpy(zero_copy_only=False))
            for ch in HISTORY_ORIG + HISTORY_RESP + "^"
        ),
    ]  # fmt: skip
    return np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=1).astype(np.float32)


def test_flow_block_is_bit_identical_to_its_numpy_formulation_on_real_captures() -> None:
    """Every bundled capture, and rows with what real logs seldom have (no byte counts,
    infinite or negative durations, upper-case protocols, nulls everywhere): the compiled
    block gives exactly the numpy formulation's float32 bits, in a column slice too."""
    import pyarrow as pa

    from netanomd.data import attack_files, baseline_files
    from netanomd.sources import ReadStats
    from netanomd.sources.files import read_batches

    files = [*baseline_files(), *attack_files()]
    batches = list(read_batches(files, ReadStats()))
    odd = pa.table(
        {
            "duration": [None, float("inf"), -1.0, 0.0, 2e-4],
            "orig_bytes": pa.array([None, 5, None, 0, 7], pa.int64()),
            "orig_ip_bytes": pa.array([400, None, None, 10, 1 << 40], pa.int64()),
            "orig_pkts": pa.array([3, None, 1, 0, 2], pa.int64()),
            "resp_pkts": pa.array([None, 2, 0, 5, 1], pa.int64()),
            "resp_ip_bytes": pa.array([None, 100, 0, None, 9], pa.int64()),
            "missed_bytes": pa.array([None, 1, 0, 3, None], pa.int64()),
            "proto": ["TCP", None, "Udp", "sctp", "icmp"],
            "conn_state": ["SF", None, "weird", "S0", "OTH"],
            "history": [None, "", "ShADad^", "ü^Fr", "SSSS"],
            "resp_p": pa.array([None, 0, 1023, 1024, 49152], pa.int32()),
            "orig_p": pa.array([None, 1023, 1024, 0, 65535], pa.int32()),
            "service": [None, "dns", "", None, "http"],
        }
    )
    batches.append(FlowBatch.from_table(odd))
    assert sum(len(b) for b in batches) > 5_000
    block = FlowFeatures()
    for batch in batches:
        expect = _numpy_flow_features(batch)
        assert np.array_equal(block.transform(batch).view(np.uint32), expect.view(np.uint32))
        wide = np.full((len(batch), len(block.names) + 3), -7.0, dtype=np.float32)
        block.transform_into(batch, wide[:, 2:-1])
        assert np.array_equal(wide[:, 2:-1].view(np.uint32), expect.view(np.uint32))
        assert (wide[:, :2] == -7.0).all() and (wide[:, -1] == -7.0).all()


def test_string_hashes_treat_null_as_empty_and_ignore_chunking() -> None:
    import pyarrow as pa

    from netanomd.features._strings import hash_strings

    values = ["10.0.0.1", None, "", "fe80::1", "10.0.0.1", "ü"]
    chunked = pa.chunked_array([values[:2], values[2:]])
    whole = hash_strings(pa.array(values))
    assert np.array_equal(hash_strings(chunked), whole)
    assert np.array_equal(hash_strings(pa.array(values).slice(2)), whole[2:])
    assert whole[1] == whole[2] and whole[0] == whole[4]
    assert len(set(whole[[0, 2, 3, 5]].tolist())) == 4


def test_the_host_table_is_a_least_recently_used_cache_under_churn() -> None:
    """Thousands of hosts through a small table: the same hosts stay as in a reference LRU
    (an OrderedDict), a tracked host keeps its slot, and one host is evicted per new host
    once the table is full; keys that collide in the index survive deletions around them."""
    from collections import OrderedDict

    from netanomd.features._host_table import HostTable, slot_for

    rng = np.random.default_rng(11)
    table = HostTable(37)
    ref: OrderedDict[int, int] = OrderedDict()
    evicted = 0
    universe = rng.integers(0, 1 << 63, size=120, dtype=np.uint64)
    universe[:8] = np.arange(8, dtype=np.uint64) << np.uint64(40)  # alike low bits
    for step, key in enumerate(rng.choice(universe, size=20_000)):
        slot, fresh = slot_for(
            np.uint64(key), table.keys, table.index, table.prev, table.next, table.meta
        )
        k = int(key)
        assert fresh == (k not in ref)
        if k in ref:
            assert ref[k] == slot
            ref.move_to_end(k)
        else:
            if len(ref) == 37:
                ref.popitem(last=False)
                evicted += 1
            ref[k] = slot
        if step % 997 == 0:
            assert table.tracked() == set(ref)
    assert table.tracked() == set(ref) and table.hosts == 37
    assert table.evictions == evicted > 1000


def test_host_distinct_counts_are_the_windows_on_a_real_capture(remcos: FlowBatch) -> None:
    """The kernel keeps each ring's distinct responders and ports as flows replace the oldest,
    and uses them when the whole ring is in the window: the counts equal numpy's over each
    flow's window (its originator's last ``depth`` flows within ``window`` seconds), for rings
    wholly in the window and for those partly out of it."""
    from netanomd.features._strings import hash_strings
    from netanomd.features.host_block import HostFeatures

    hf = HostFeatures(window=20.0, depth=8)
    X = np.concatenate([hf.transform(remcos.slice(o, 100)) for o in range(0, len(remcos), 100)])
    ts = remcos.numeric("ts", fill=np.nan)
    orig = hash_strings(remcos.column("orig_h")).tolist()
    dst = hash_strings(remcos.column("resp_h"))
    port = remcos.numeric("resp_p", fill=-1, dtype=np.int32)
    recent: dict[int, list[int]] = {}
    whole = 0
    for r, h in enumerate(orig):
        ring = recent.setdefault(h, [])
        ring.append(r)
        del ring[: -hf.depth]
        win = [i for i in ring if abs(ts[i] - ts[r]) <= hf.window]
        whole += len(win) == len(ring)
        assert X[r, hf.names.index("host_log_dsts")] == np.float32(np.log1p(len(set(dst[win]))))
        assert X[r, hf.names.index("host_log_ports")] == np.float32(np.log1p(len(set(port[win]))))
    assert 0 < whole < len(remcos)  # both ways of counting were taken


def test_one_compiled_version_of_each_kernel_whatever_the_batch() -> None:
    """After a model's first batch, a live batch with nulls where the last had none, or of
    several chunks, gives the feature kernels the same types: no compile (or load from numba's
    cache) on the scoring thread while the batch's alerts wait."""
    from netanomd.data import baseline_files
    from netanomd.features import HostFeatures, _strings, flow_block, host_block
    from netanomd.sources import ReadStats
    from netanomd.sources.files import read_batches

    flows = FlowBatch.concat(list(read_batches(baseline_files()[:1], ReadStats())))
    spec = FeatureSpec([FlowFeatures(), HostFeatures()])
    kernels = (
        flow_block._quantities,
        flow_block._columns,
        host_block._host_kernel,
        _strings._hash_kernel,
    )
    spec.transform(flows.slice(0, 10))
    compiled = [len(k.signatures) for k in kernels]
    kinds = set()
    for size in (1, 3, 50, 1000):
        for at in range(0, min(len(flows), 20_000), 7 * size):
            one = flows.slice(at, size)
            two = FlowBatch.concat([one, flows.slice(at + 2 * size, size)])
            for b in (one, two):
                kinds.add((b.column("duration").null_count > 0, b.table.column(0).num_chunks))
                spec.transform(b)
    assert len(kinds) == 4  # nulls or not, one chunk or two
    assert [len(k.signatures) for k in kernels] == compiled


def test_the_flow_block_reads_only_the_columns_it_declares() -> None:
    """The drift sample keeps only :attr:`FlowFeatures.reads` (and the time): the block's
    matrix is the same with every other column null."""
    import pyarrow as pa

    from netanomd.data import attack_files
    from netanomd.sources import ReadStats
    from netanomd.sources.files import read_batches

    batch = FlowBatch.concat(list(read_batches(attack_files(), ReadStats())))
    table = batch.table
    slim = pa.Table.from_arrays(
        [
            table.column(f.name) if f.name in FlowFeatures.reads else pa.nulls(len(batch), f.type)
            for f in table.schema
        ],
        schema=table.schema,
    )
    full = FlowFeatures().transform(batch)
    assert full.any(axis=0).sum() > 20  # (most columns are set somewhere)
    assert np.array_equal(FlowFeatures().transform(FlowBatch(slim)), full)


def test_codes_match_arrow_lower_casing_and_lookup() -> None:
    """``codes`` gives what Arrow's Unicode lower-casing and ``index_in`` give, on values
    that are upper case, non-ASCII look-alikes (Kelvin sign, dotted and dotless i), empty or
    null; a null gets the code asked for."""
    values = ["tcp", "TCP", "Udp", "icmp", "ICMP6", "", None, "tcP\u0130", "\u212acp", "\u0131cmp"]
    col = pa.chunked_array([values[:4], values[4:]], pa.string())
    expected = pc.fill_null(pc.index_in(pc.utf8_lower(col), pa.array(PROTOCOLS)), -1)
    assert codes(col, PROTOCOLS, fold=True).tolist() == expected.to_pylist()
    states = pa.array(["S0", "s0", None, "OTH", "SF"])
    assert codes(states, ("S0", "OTH"), null=7).tolist() == [0, -1, 7, 1, -1]
