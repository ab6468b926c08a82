"""Learned thresholds and named detections (netanomd.behaviour.detectors, .pipeline) on real
captures: trained on the first half of the bundled benign day, as a sensor would be."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from netanomd.behaviour.detectors import (
    DETECTION_COLUMNS,
    FEATURES,
    FLOORS,
    Thresholds,
    anomaly_scores,
    beacon_hash,
    detect,
    fit,
    floors_at,
)
from netanomd.behaviour.incidents import Incident, covered
from netanomd.behaviour.measure import halves, load, run
from netanomd.behaviour.pipeline import BehaviourPipeline, learn
from netanomd.behaviour.table import Table
from netanomd.behaviour.windows import ROLES, Closed, HostWindows, sample_lists
from netanomd.data import attack_files, baseline_files
from netanomd.flow import FlowBatch

DATA = Path(__file__).parent / "data"


def frame(table: Table) -> pd.DataFrame:
    """A table as a frame to query (sample uids as one list per row)."""
    cols = {c: sample_lists(v) if (v := table[c]).ndim == 2 else v for c in table.columns}
    return pd.DataFrame(cols, columns=list(table.columns))


@pytest.fixture(scope="module")
def split() -> tuple[object, object]:
    return halves(load(baseline_files()[0]))


@pytest.fixture(scope="module")
def thresholds(split: tuple[object, object]) -> Thresholds:
    return learn([split[0]])  # type: ignore[list-item]


def incidents_for(path: Path, thr: Thresholds) -> tuple[list[Incident], object]:
    batch = load(path)
    return run(BehaviourPipeline(thr), batch), batch


def test_limits_are_learned_from_training_above_floors(
    split: tuple, thresholds: Thresholds
) -> None:
    thr = thresholds
    assert thr.host.shape == (3, len(ROLES), len(FEATURES))
    for si, sc in enumerate(thr.scales):
        assert np.all(thr.host[si] >= floors_at(sc) - 1e-9)
    # The busy workstation's flows per minute set the originators' limit, not a constant.
    w = HostWindows()
    closed = Closed.concat([w.update(split[0]), w.flush()])
    hosts = frame(closed.hosts)
    orig = hosts[(hosts["role"] == "orig") & (hosts["scale"] == 60.0)]
    learned = thr.host_limit(60.0, "orig", "flows")
    assert learned != FLOORS["flows"]
    expect = orig.groupby("host")["flows"].max().quantile(thr.quantile) * thr.margin
    assert learned == pytest.approx(max(expect, FLOORS["flows"]))
    # Per-service brute-force limits: HTTPS was busy in training, SSH never used.
    assert thr.pair_limit(60.0, "orig", "tcp", 443) > thr.pair_limit(60.0, "orig", "tcp", 22)
    assert thr.pair_limit(60.0, "orig", "tcp", 22) == 10.0


def test_thresholds_round_trip_through_npz_without_pickle(
    tmp_path: Path, split: tuple, thresholds: Thresholds
) -> None:
    path = tmp_path / "behaviour.npz"
    np.savez(path, **thresholds.to_arrays())
    with np.load(path, allow_pickle=False) as npz:
        back = Thresholds.from_arrays(dict(npz))
    w = HostWindows()
    closed = Closed.concat([w.update(split[1]), w.flush()])
    a, b = detect(closed, thresholds), detect(closed, back)
    assert a.columns == b.columns == DETECTION_COLUMNS
    for c in DETECTION_COLUMNS:
        assert np.array_equal(a[c], b[c]), c
    assert np.array_equal(back.known_limits, thresholds.known_limits)
    arrays = thresholds.to_arrays()
    arrays["features"] = np.array(["flows"])
    with pytest.raises(ValueError, match="retrain"):
        Thresholds.from_arrays(arrays)


def test_benign_second_half_gives_at_most_three_incidents(
    split: tuple, thresholds: Thresholds
) -> None:
    incs = run(BehaviourPipeline(thresholds), split[1])  # type: ignore[arg-type]
    assert len(incs) <= 3, [i.title for i in incs]


@pytest.mark.parametrize(
    ("capture", "attacker", "behaviours"),
    [
        ("behaviour/slips-malicious-ssh-bruteforce.conn.log", "147.32.80.40", {"brute force"}),
        ("behaviour/zeek-traces-ftp_bruteforce.conn.log", "192.168.56.1", {"brute force"}),
        ("zeek/ssh_sshguess.tsv.conn.log", "192.168.56.1", {"brute force"}),
        ("behaviour/slips-test12-icmp-portscan.conn.log", "192.168.1.109", {"horizontal scan"}),
        ("behaviour/zeek-traces-nmap-vsn.conn.log", "192.168.1.71", {"horizontal scan"}),
    ],
)
def test_attacker_gets_a_named_incident_holding_its_flows(
    capture: str, attacker: str, behaviours: set[str], thresholds: Thresholds
) -> None:
    incs, batch = incidents_for(DATA / capture, thresholds)
    about = [i for i in incs if i.host == attacker and i.role == "orig"]
    assert {i.behaviour for i in about} == behaviours
    mine = np.asarray(batch.column("orig_h").to_pylist()) == attacker  # type: ignore[attr-defined]
    share = (covered(about, batch) & mine).sum() / mine.sum()  # type: ignore[arg-type]
    assert share >= 0.9
    assert all(i.severity >= 47 for i in about)  # a scan or brute force is never "low"


def test_spoofed_dhcp_flood_is_one_service_incident(thresholds: Thresholds) -> None:
    incs, batch = incidents_for(DATA / "behaviour/zeek-traces-dhcp_dhcp_flood.conn.log", thresholds)
    assert [(i.role, i.host, i.behaviour) for i in incs] == [("service", "udp/67", "UDP flood")]
    assert incs[0].members(batch).all()  # type: ignore[arg-type]
    assert "250 sources" in incs[0].title


def test_contaminated_training_still_finds_inbound_attacks() -> None:
    """CTU-50 008: the exposed host is scanned and brute-forced from the Internet all day;
    learning on the capture's own first half (attacks included, labels unseen) must not
    teach that this is normal."""
    train, test = halves(load(DATA / "behaviour/ctu50-008.conn.log.labeled.gz"))
    windows = HostWindows()
    thr = learn([train], windows=windows)
    incs = run(BehaviourPipeline(thr, windows=windows), test)
    inside = covered(incs, test)
    label = np.asarray(test.column("label").fill_null("").to_pylist())
    mal, ben = label == "Malicious", label == "Benign"
    assert mal.sum() > 1000 and ben.sum() > 500
    assert (inside & mal).sum() / mal.sum() >= 0.8
    assert (inside & ben).sum() / ben.sum() <= 0.02
    assert "inbound scan" in {i.behaviour for i in incs}


def test_fit_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="quantile"):
        fit(Closed.empty(), (60.0,), quantile=0.0)


@pytest.mark.parametrize("name", ["remcos-exfil", "njrat-001"])
def test_rat_c2_retries_are_one_incident_per_peer_service(
    name: str, thresholds: Thresholds
) -> None:
    """RemcosRAT and NjRAT keep reconnecting to their C&C: one incident for that peer and
    service (not one per behaviour seen in a window), holding the C&C flows and no benign one."""
    path = next(p for p in attack_files() if p.name.startswith(name))
    batch = load(path)
    incs = run(BehaviourPipeline(thresholds), batch)
    label = np.asarray(batch.column("label").fill_null("").to_pylist())
    mal, ben = label == "Malicious", label == "Benign"
    inside = covered(incs, batch)
    assert (inside & mal).sum() / mal.sum() >= 0.9
    assert not (inside & ben).any()
    pairs = [(i.host, i.peer, i.port) for i in incs]
    assert len(pairs) == len(set(pairs)) == 1
    assert incs[0].severity >= 47


def test_anomaly_score_is_actual_over_learned_limit(split: tuple, thresholds: Thresholds) -> None:
    w = HostWindows()
    closed = Closed.concat([w.update(split[1]), w.flush()])
    table = closed.hosts.take(closed.hosts["role"] != "service")
    score, feature, value, limit = anomaly_scores(table, thresholds)
    hosts = frame(table)
    assert np.allclose(score, value / limit)
    i = int(score.argmax())
    assert value[i] == hosts.loc[i, feature[i]]
    assert (
        limit[i]
        == thresholds.limits(
            hosts["scale"].to_numpy()[[i]],
            hosts["role"].to_numpy()[[i]],
            hosts["host"].to_numpy()[[i]],
            str(feature[i]),
            own=True,
        )[0]
    )
    # The second half of the benign day stays under anomaly_factor (no "unusual activity").
    assert score.max() < thresholds.anomaly_factor


def test_rat_c2_refused_all_along_is_found_when_training_held_it() -> None:
    """RemcosRAT, trained on its own first half (C&C retries included, labels unseen): the
    learned brute-force limit for its port is its own rate, yet 30 refused attempts a minute to
    one peer are "repeated failed connections" in the second half."""
    path = next(p for p in attack_files() if p.name.startswith("remcos-exfil"))
    train, test = halves(load(path))
    windows = HostWindows()
    thr = learn([train], windows=windows)
    incs = run(BehaviourPipeline(thr, windows=windows), test)
    label = np.asarray(test.column("label").fill_null("").to_pylist())
    mal = label == "Malicious"
    (cc,) = [i for i in incs if i.family == "failed connections"]
    assert (cc.peer, cc.port) == ("66.63.168.35", 5888)
    assert (covered([cc], test) & mal).sum() / mal.sum() >= 0.9
    assert 40 <= cc.severity < 70  # C&C-like failures: medium


def test_probing_known_targets_again_is_no_new_scan(thresholds: Thresholds) -> None:
    """Nmap over the same hosts and ports twice, two hours apart: the first pass explores and is
    a scan; the second reaches no target the host had not contacted and opens no scan (a client
    retrying the servers it knows, unanswered, is no scan either)."""
    batch = load(DATA / "behaviour/zeek-traces-nmap-vsn.conn.log")
    later = batch.table.set_column(
        batch.table.schema.get_field_index("ts"), "ts", pc.add(batch.column("ts"), 7200.0)
    )
    incs = run(BehaviourPipeline(thresholds), FlowBatch.concat([batch, FlowBatch(later)]))
    scans = [i for i in incs if i.family == "scan"]
    assert [i.host for i in scans] == ["192.168.1.71"]
    assert scans[0].last_seen < float(batch.numeric("ts").max()) + 60.0


def test_a_new_device_keeping_time_with_the_pool_is_no_beacon(
    split: tuple, thresholds: Thresholds
) -> None:
    """Training saw NTP used regularly with a pool of servers; a device never seen in training
    (the same NTP traffic from a new address) beacons to them as clocks do: no incident. Without
    the pool knowledge, each server would be a "beaconing" incident."""
    train = split[0]
    ntp = np.asarray(
        pc.and_(
            pc.equal(train.column("resp_p"), 123), pc.equal(train.column("orig_h"), "192.168.1.109")
        ).fill_null(False)
    )
    flows = train.take(np.flatnonzero(ntp))
    device = FlowBatch(
        flows.table.set_column(
            flows.table.schema.get_field_index("orig_h"),
            "orig_h",
            pa.array(["10.99.0.7"] * len(flows)),
        )
    )
    one = {"role": ["orig"], "host": ["-"], "proto": ["udp"], "port": [123]}
    pool = beacon_hash(Table({k: np.array(v, dtype=object) for k, v in one.items()}), any_host=True)
    assert np.isin(pool, thresholds.known_beacons).all()
    assert run(BehaviourPipeline(thresholds), device) == []
    forgot = replace(
        thresholds, known_beacons=thresholds.known_beacons[~np.isin(thresholds.known_beacons, pool)]
    )
    assert {i.behaviour for i in run(BehaviourPipeline(forgot), device)} == {"beaconing"}
