"""Plain-language reasons (netanomd.behaviour.reasons) on real flows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netanomd.behaviour import reasons
from netanomd.behaviour.measure import load
from netanomd.data import baseline_files

DATA = Path(__file__).parent / "data"


def _said(path: Path) -> dict[str, str]:
    said = {}
    for r in load(path).records():
        said[r.uid] = reasons.describe_flow(
            r.proto, r.conn_state, r.history, r.orig_pkts, r.resp_pkts
        )
    return said


def test_conn_states_in_words() -> None:
    batch = load(DATA / "behaviour/zeek-traces-nmap-vsn.conn.log")
    said = _said(DATA / "behaviour/zeek-traces-nmap-vsn.conn.log")
    for r in batch.records():
        if r.conn_state == "S0" and r.history == "S":
            assert said[r.uid] == "lone SYN, no reply"
        if r.conn_state == "REJ":
            assert said[r.uid] == "rejected"
        if r.conn_state == "RSTO":
            assert said[r.uid] == "originator aborted (reset)"
    assert {"lone SYN, no reply", "rejected"} <= set(said.values())


def test_one_udp_packet_no_answer() -> None:
    day = baseline_files()[0]
    said = _said(day)
    batch = load(day)
    lone = [
        r.uid for r in batch.records() if r.proto == "udp" and r.resp_pkts == 0 and r.orig_pkts == 1
    ]
    assert lone
    assert {said[u] for u in lone} == {"one UDP packet, no answer"}


def test_icmp_types_are_named_never_ports() -> None:
    batch = load(DATA / "behaviour/slips-test12-icmp-portscan.conn.log")
    r = next(batch.records())
    assert r.proto == "icmp" and r.orig_p == 8
    assert reasons.service_name(r.proto, r.orig_p) == "ICMP echo request (ping)"
    assert reasons.icmp_type(3) == "destination unreachable"
    assert reasons.icmp_type(200) == "type 200"


def test_services_and_numbers_in_words() -> None:
    assert reasons.service_name("tcp", 22) == "SSH (22/tcp)"
    assert reasons.service_name("udp", 67) == "DHCP (67/udp)"
    assert reasons.service_name("tcp", 64999) == "64999/tcp"
    assert reasons.training_share(0.0) == "never seen in training"
    assert reasons.training_share(0.25) == "25.00% of training"
    assert reasons.share(0, 10) == "none"
    assert reasons.share(10, 10) == "all"
    assert reasons.share(3, 1809) == "3 of 1,809"
    assert reasons.duration(40) == "40 s"
    assert reasons.duration(300) == "5 min"
    assert reasons.duration(9000) == "2.5 h"
    assert reasons.amount(4_200_000) == "4.2 MB"
    assert reasons.plural(1, "host") == "1 host"
    assert reasons.plural(1809, "host") == "1,809 hosts"


def test_host_context_counts_new_destinations() -> None:
    assert reasons.host_context(np.array([412, 1]), 3600.0).tolist() == [
        "host's 412th new destination this hour",
        "host's 1st new destination this hour",
    ]
    assert reasons.host_context(np.array([12]), 600.0)[0] == (
        "host's 12th new destination in 10 minutes"
    )
    assert reasons.failed_attempts(np.array([3]), 600.0)[0] == (
        "3rd unanswered attempt at this peer and port in 10 minutes"
    )
    assert reasons.ordinal(22) == "22nd" and reasons.ordinal(113) == "113th"
    assert reasons.ordinal(1412) == "1,412th" and reasons.ordinal(11) == "11th"
