"""Incidents (netanomd.behaviour.incidents): grouping, updates, quiet close, titles, severity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from netanomd.behaviour.detectors import Thresholds
from netanomd.behaviour.incidents import BEHAVIOURS, IncidentTracker, severity_label, severity_of
from netanomd.behaviour.measure import halves, load, run
from netanomd.behaviour.pipeline import BehaviourPipeline, learn
from netanomd.data import baseline_files

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def thresholds() -> Thresholds:
    return learn([halves(load(baseline_files()[0]))[0]])


def test_incident_updates_while_it_lasts_then_closes_after_quiet(thresholds: Thresholds) -> None:
    batch = load(DATA / "behaviour/slips-malicious-ssh-bruteforce.conn.log")
    tracker = IncidentTracker(quiet=600.0)
    pipe = BehaviourPipeline(thresholds, tracker=tracker)
    for off in range(0, len(batch), 7):  # a live stream, a few flows at a time
        pipe.process(batch.slice(off, 7))
    changed = pipe.flush()
    assert len(tracker.open) == 1 and not tracker.closed
    inc = next(iter(tracker.open.values()))
    assert inc in changed
    assert inc.detections == 3  # the same brute force seen in 1-min, 10-min and 1-h windows
    assert inc.flows == len(batch)
    ts = batch.numeric("ts")
    assert inc.first_seen == pytest.approx(ts.min())
    assert inc.last_seen <= (ts + batch.numeric("duration")).max() + 1e-6
    # Quiet for 600 s past the widest window that saw it (the hourly one may still report it).
    assert tracker.tick(inc.last_seen + 600.0 + 3599.0) == []
    assert tracker.tick(inc.last_seen + 600.0 + 3601.0) == [inc]
    assert inc.closed and tracker.closed == [inc] and not tracker.open
    with pytest.raises(ValueError, match="quiet"):
        IncidentTracker(quiet=0)


def test_titles_speak_an_analysts_language(thresholds: Thresholds) -> None:
    icmp = run(
        BehaviourPipeline(thresholds), load(DATA / "behaviour/slips-test12-icmp-portscan.conn.log")
    )
    assert [i.title for i in icmp] == ["192.168.1.109 pinged 18 hosts in 2 s; 7 of 18 unanswered"]
    nmap = run(
        BehaviourPipeline(thresholds), load(DATA / "behaviour/zeek-traces-nmap-vsn.conn.log")
    )
    (scan,) = nmap
    assert scan.title.startswith("192.168.1.71 sent lone SYNs to 7 hosts on 3 ports in 2 s;")
    ssh = run(BehaviourPipeline(thresholds), load(DATA / "zeek/ssh_sshguess.tsv.conn.log"))
    (brute,) = ssh
    assert brute.title.startswith(
        "192.168.56.1 opened 15 connections to SSH (22/tcp) on 192.168.56.103 in 6"
    )
    assert "(all unanswered; learned limit 10 per " in brute.title
    # Numbers stay as data beside the sentence.
    assert brute.evidence["flows"] == 15 and brute.evidence["unanswered"] == 15
    assert brute.top_peers == {"192.168.56.103": 15}
    d = orjson.loads(orjson.dumps(brute.to_dict()))
    assert d["behaviour"] == "brute force" and d["severity_label"] == "high"
    assert set(d["uids"]) <= set(
        load(DATA / "zeek/ssh_sshguess.tsv.conn.log").column("uid").to_pylist()
    )
    assert d["community_ids"] and all(c.startswith("1:") for c in d["community_ids"])


def test_severity_is_calibrated() -> None:
    assert severity_label(21) == "low"
    assert severity_label(47) == "medium"
    assert severity_label(73) == "high"
    assert severity_label(93) == "critical"
    # A confirmed scan of thousands of targets is high whatever its learned limit; C&C-like
    # failed connections at least medium; severity only grows with the evidence.
    assert severity_label(severity_of("horizontal scan", 1.0, 1809.0)) == "high"
    assert severity_label(severity_of("scan", 1.0, 20.0)) == "medium"
    assert severity_label(severity_of("repeated failed connections", 1.0)) == "medium"
    assert severity_label(severity_of("brute force", 1.0)) == "high"
    assert severity_label(severity_of("unusual activity", 1.0)) == "low"
    for behaviour in BEHAVIOURS:
        by_score = [severity_of(behaviour, s, 10.0) for s in np.geomspace(0.5, 1e4, 40)]
        by_fanout = [severity_of(behaviour, 1.0, t) for t in np.geomspace(1.0, 1e6, 40)]
        for seq in (by_score, by_fanout):
            assert seq == sorted(seq) and max(seq) <= 99


def test_flow_alerts_group_per_originator() -> None:
    batch = load(DATA / "behaviour/zeek-traces-nmap-vsn.conn.log")
    picked = batch.take(np.arange(0, len(batch), 2))
    scores = np.linspace(0.6, 0.9, len(picked))
    tracker = IncidentTracker()
    tracker.add_flow_alerts(picked, scores, now=float(picked.numeric("ts").max()))
    (inc,) = tracker.open.values()
    assert inc.behaviour == "anomalous flows" and inc.host == "192.168.1.71"
    assert inc.flows == len(picked)
    assert inc.score == pytest.approx(0.9)
    assert inc.uids == picked.column("uid").to_pylist()[:10]
    assert inc.members(picked).all()
    assert tracker.add_flow_alerts(batch.slice(0, 0), np.zeros(0), now=0.0) == []


def test_one_scanner_is_not_an_incident_per_target(thresholds: Thresholds) -> None:
    """Nmap over three networks: the scanner's incident holds the scan; its targets and its
    per-port retries do not each become incidents."""
    batch = load(DATA / "behaviour/portscan-002.conn.log.gz")
    incs = run(BehaviourPipeline(thresholds), batch)
    assert {i.host for i in incs} == {"172.16.1.11"}
    (scan,) = incs  # its retries of one port count attempts, not records: no brute force
    assert scan.family == "scan"
    assert severity_label(scan.severity) == "high"  # thousands of targets
    mine = np.asarray(batch.column("orig_h").to_pylist()) == "172.16.1.11"
    assert (scan.members(batch) & mine).sum() / mine.sum() >= 0.9
