"""Host windows (netanomd.behaviour.windows) on real captures: counts, batch = live, bounds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from netanomd.behaviour import _kernels as _k
from netanomd.behaviour.table import Table
from netanomd.behaviour.windows import (
    MULTICAST,
    NO_REPLY_DESTS,
    PAIR_COLUMNS,
    WINDOW_COLUMNS,
    Closed,
    HostWindows,
    probe_mask,
    sample_lists,
    unanswered_mask,
)
from netanomd.data import baseline_files
from netanomd.features._strings import string_views
from netanomd.flow import FlowBatch
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches

DATA = Path(__file__).parent / "data" / "behaviour"


def load(path: Path) -> FlowBatch:
    batch = FlowBatch.concat(list(read_batches([path], ReadStats())))
    end = batch.numeric("ts") + np.maximum(batch.numeric("duration"), 0.0)
    return batch.take(np.argsort(end, kind="stable"))


def frame(table: Table) -> pd.DataFrame:
    """A table as a frame to query (sample uids as one list per row)."""
    cols = {c: sample_lists(v) if (v := table[c]).ndim == 2 else v for c in table.columns}
    return pd.DataFrame(cols, columns=list(table.columns))


@dataclass
class Frames:
    """Closed windows as frames, to query in tests."""

    hosts: pd.DataFrame
    pairs: pd.DataFrame


def windows_of(batch: FlowBatch, step: int | None = None, **kw: int) -> tuple[Frames, HostWindows]:
    w = HostWindows(**kw)  # type: ignore[arg-type]
    size = step or max(len(batch), 1)
    parts = [w.update(batch.slice(o, size)) for o in range(0, len(batch), size)]
    parts.append(w.flush())
    closed = Closed.concat(parts)
    assert closed.hosts.columns == WINDOW_COLUMNS and closed.pairs.columns == PAIR_COLUMNS
    return Frames(frame(closed.hosts), frame(closed.pairs)), w


@pytest.fixture(scope="module")
def day() -> FlowBatch:
    return load(baseline_files()[0])


def test_nmap_window_counts_match_the_flows() -> None:
    batch = load(DATA / "zeek-traces-nmap-vsn.conn.log")
    closed, _ = windows_of(batch)
    df = batch.table.to_pandas()
    scanner = df["orig_h"].value_counts().index[0]
    mine = df[df["orig_h"] == scanner]
    probes = probe_mask(batch)[df["orig_h"].to_numpy() == scanner]
    unans = unanswered_mask(batch)[df["orig_h"].to_numpy() == scanner]
    row = closed.hosts[(closed.hosts["host"] == scanner) & (closed.hosts["scale"] == 60.0)]
    assert len(row) == 1  # the 2-second scan fits one minute
    r = row.iloc[0]
    assert r["role"] == "orig"
    assert r["flows"] == len(mine)
    assert r["unanswered"] == unans.sum() > 0
    assert r["probes"] == probes.sum() > 0
    assert r["peers"] == pytest.approx(mine["resp_h"].nunique(), rel=0.05)
    assert r["ports"] == pytest.approx(mine["resp_p"].nunique(), rel=0.05)
    pm = mine[probes]
    assert r["probe_peers"] == pytest.approx(pm["resp_h"].nunique(), rel=0.05)
    assert r["probe_targets"] == pytest.approx(
        len(set(zip(pm["resp_h"], pm["resp_p"], strict=True))), rel=0.1
    )
    assert r["bytes_out"] == mine["orig_bytes"].fillna(0).sum()
    assert r["first_ts"] == mine["ts"].min()
    assert set(r["uids"]) <= set(mine["uid"])
    assert len(r["uids"]) == 5
    # Every scale sees the same flows; the responders see the scanner as their peer.
    assert sorted(closed.hosts[closed.hosts["host"] == scanner]["scale"]) == [60.0, 600.0, 3600.0]
    resp = closed.hosts[(closed.hosts["role"] == "resp") & (closed.hosts["scale"] == 3600.0)]
    assert resp["flows"].sum() == len(df)
    svc = closed.hosts[(closed.hosts["role"] == "service") & (closed.hosts["scale"] == 3600.0)]
    assert set(svc["host"]) == {f"{p}/{q}" for p, q in zip(df["proto"], df["resp_p"], strict=True)}


def test_pairs_count_repeats_and_regularity() -> None:
    batch = load(Path(__file__).parent / "data" / "zeek" / "ssh_sshguess.tsv.conn.log")
    closed, _ = windows_of(batch)
    df = batch.table.to_pandas()
    pairs = closed.pairs[(closed.pairs["role"] == "orig") & (closed.pairs["scale"] == 600.0)]
    assert list(pairs.columns) == list(PAIR_COLUMNS)
    top = pairs.sort_values("flows").iloc[-1]
    expect = df.groupby(["orig_h", "resp_h", "resp_p"]).size().max()
    assert (top["port"], top["flows"]) == (22, expect)
    # Gaps are between flow ends: the order a sensor receives flows in.
    mine = df[(df["resp_h"] == top["peer"]) & (df["resp_p"] == 22)]
    ends = np.sort((mine["ts"] + mine["duration"].fillna(0.0)).to_numpy())
    assert top["period"] == pytest.approx(np.diff(ends).mean())
    cv = np.diff(ends).std() / np.diff(ends).mean()
    assert top["regularity"] == pytest.approx(1.0 / (1.0 + cv))


def test_batch_and_live_give_the_same_windows(day: FlowBatch) -> None:
    whole, _ = windows_of(day)
    live, _ = windows_of(day, step=257)
    cols = [c for c in WINDOW_COLUMNS if c not in ("uids", "community_ids")]
    key = ["scale", "role", "host", "start"]
    a = whole.hosts[cols].sort_values(key).reset_index(drop=True)
    b = live.hosts[cols].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) > 1000
    pk = ["scale", "role", "host", "peer", "port", "proto", "start"]
    pd.testing.assert_frame_equal(
        whole.pairs.sort_values(pk).reset_index(drop=True),
        live.pairs.sort_values(pk).reset_index(drop=True),
    )


def test_new_peers_count_first_contacts_only(day: FlowBatch) -> None:
    closed, _ = windows_of(day)
    hw = closed.hosts[(closed.hosts["role"] == "orig") & (closed.hosts["scale"] == 60.0)]
    df = day.table.to_pandas()
    first = df.drop_duplicates(["orig_h", "resp_h"])
    assert hw["new_peers"].sum() == pytest.approx(len(first), rel=0.01)  # Bloom: rare false "seen"
    assert (hw["new_peers"] <= hw["peers"] + 1e-9).all()


def test_memory_is_bounded_and_eviction_keeps_working(day: FlowBatch) -> None:
    closed, w = windows_of(day, step=500, max_hosts=64, max_pairs=50)
    assert w.hosts <= 64
    assert w.evictions > 0
    assert closed.hosts["flows"].sum() > 0
    for sc in (60.0, 600.0, 3600.0):
        per_window = closed.pairs[closed.pairs["scale"] == sc].groupby("start").size()
        assert per_window.max() <= 50


def test_hosts_keep_their_own_windows_when_slots_are_freed_within_a_batch(
    day: FlowBatch,
) -> None:
    """A table of 48 slots fed a dozen flows at a time frees slots inside batches: a host's
    window never counts another host's flows (each originator's minute holds at most the flows
    it ended in that minute, most of them exactly those; a window dropped to free its slot
    loses its flows, it takes none)."""
    closed, w = windows_of(day, step=12, max_hosts=48)
    assert w.evictions > 100
    assert w.hosts <= 48
    df = day.table.to_pandas()
    end = day.numeric("ts") + np.maximum(day.numeric("duration"), 0.0)  # in order: the clock
    df["start"] = np.floor(end / 60.0) * 60.0
    exact = df.groupby(["orig_h", "start"]).size().rename("exact")
    rows = closed.hosts[(closed.hosts["role"] == "orig") & (closed.hosts["scale"] == 60.0)]
    got = rows.join(exact, on=["host", "start"])
    assert len(got) > 500
    assert (got["flows"] <= got["exact"]).all()
    assert (got["flows"] == got["exact"]).mean() > 0.9


def test_late_flows_count_in_the_open_window() -> None:
    batch = load(DATA / "zeek-traces-ftp_bruteforce.conn.log")
    reversed_order = batch.take(np.arange(len(batch))[::-1])
    closed, _ = windows_of(reversed_order)
    orig = closed.hosts[(closed.hosts["role"] == "orig") & (closed.hosts["scale"] == 3600.0)]
    assert orig["flows"].sum() == len(batch)


def test_bad_input_is_named() -> None:
    batch = load(DATA / "zeek-traces-nmap-vsn.conn.log")
    ts = batch.table.column("ts").to_pylist()
    ts[3] = None
    bad = FlowBatch(batch.table.set_column(0, "ts", pa.array(ts, pa.float64())))
    uid = batch.table.column("uid")[3].as_py()
    with pytest.raises(ValueError, match=f"flow 3 .*{uid}.* no ts"):
        HostWindows().update(bad)
    with pytest.raises(ValueError, match="multiple of the smallest"):
        HostWindows((60.0, 90.0))
    with pytest.raises(ValueError, match="positive scales"):
        HostWindows((0.0,))


def test_pairs_count_attempts_not_zeek_records() -> None:
    """IoT-23 44-1: the bot's SYNs to its C&C are retransmitted on one source port and Zeek logs
    each retransmission as a record of its own (S0, S0, S0, then SF). A pair counts attempts:
    one per source port here, judged by its last record."""
    batch = load(Path(__file__).parent / "data" / "zeek" / "iot23-44-1.csv")
    closed, _ = windows_of(batch, step=50)
    df = batch.table.to_pandas()
    cc = df[(df["resp_h"] == "46.101.251.172") & (df["resp_p"] == 80) & (df["proto"] == "tcp")]
    per_port = cc.groupby("orig_p")
    assert per_port.size().max() >= 3 and len(cc) > per_port.ngroups  # retransmissions exist
    pr = closed.pairs[
        (closed.pairs["role"] == "orig")
        & (closed.pairs["peer"] == "46.101.251.172")
        & (closed.pairs["scale"] == 3600.0)
    ]
    assert pr["flows"].sum() == per_port.ngroups
    last = cc.sort_values("ts").groupby("orig_p")["conn_state"].last()
    assert pr["unanswered"].sum() == (last == "S0").sum()


def test_new_targets_count_only_first_contacts() -> None:
    """The nmap capture probed twice: the second pass reaches no target the host had not
    contacted before, so its probes are no new targets (a scan explores; a retry does not)."""
    batch = load(DATA / "zeek-traces-nmap-vsn.conn.log")
    again = batch.table.set_column(
        batch.table.schema.get_field_index("ts"),
        "ts",
        pa.compute.add(batch.column("ts"), 7200.0),
    )
    closed, _ = windows_of(FlowBatch.concat([batch, FlowBatch(again)]))
    df = batch.table.to_pandas()
    scanner = df["orig_h"].value_counts().index[0]
    rows = closed.hosts[
        (closed.hosts["host"] == scanner)
        & (closed.hosts["role"] == "orig")
        & (closed.hosts["scale"] == 60.0)
    ].sort_values("start")
    first, second = rows.iloc[0], rows.iloc[1]
    probes = df[probe_mask(batch) & (df["orig_h"] == scanner).to_numpy()]
    assert first["new_targets"] == len(set(zip(probes["resp_h"], probes["resp_p"], strict=True)))
    assert second["probes"] == first["probes"] > 0
    assert second["new_targets"] == 0


def test_destination_kinds_are_the_documented_patterns(day: FlowBatch) -> None:
    """The kernel that tells multicast groups and the broadcast address apart gives what the
    regular expressions MULTICAST and NO_REPLY_DESTS say, on every responder of a real day and
    on near misses."""
    near = ["224.0.0.251", "239.255.255.250", "223.1.1.1", "240.0.0.1", "22.4.0.1", "2240.1"]
    near += ["ff02::fb", "FF0e::1", "fF1a:", "ffx2::1", "ff02", "f", "", "255.255.255.255"]
    near += ["255.255.255.2550", " 255.255.255.255", "fe80::1", "2001:db8::1"]
    values = pa.array([*set(day.column("resp_h").to_pylist()) - {None}, *near], pa.string())
    offsets, data, _ = string_views(values)
    kinds = np.asarray(_k.dest_kinds(offsets, data))
    multicast, no_reply = re.compile(MULTICAST), re.compile(NO_REPLY_DESTS)
    want = [
        1 if multicast.search(v) else 2 if no_reply.search(v) else 0 for v in values.to_pylist()
    ]
    assert kinds.tolist() == want
    assert {0, 1, 2} <= set(want)
