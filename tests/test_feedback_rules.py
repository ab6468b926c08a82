"""Allowlist rules matched a batch at a time (:meth:`RuleSet.flow_rules`) say what one flow at a
time (:meth:`RuleSet.flow_rule`) says, row by row, on real captures: the default discovery
rules and rules naming each flow field (networks, ports, protocol, Zeek's service list); an
expired rule matches nothing; the suppressor counts per rule what the rules dropped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netanomd.data import attack_files, baseline_files
from netanomd.feedback import DEFAULT_RULES, RuleSet, Suppressor, rule_from_dict
from netanomd.flow import FlowBatch
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches


@pytest.fixture(scope="module")
def flows(data_dir: Path) -> FlowBatch:
    paths = [
        *baseline_files(),
        *attack_files(),
        data_dir / "zeek" / "ftp_bruteforce.json.conn.log",
        data_dir / "eve" / "wikipedia.eve.json",
    ]
    return FlowBatch.concat(list(read_batches(paths, ReadStats())))


def rules() -> RuleSet:
    own = [
        {"name": "old", "host": "192.168.0.0/16", "proto": "tcp", "expires": 50.0},
        {"name": "lan-dns", "host": "192.168.0.0/16", "service": "dns"},
        {"name": "to-ntp", "proto": "udp", "port": "123"},
        {"name": "web-peer", "peer": "0.0.0.0/0", "port": "80,443", "proto": "tcp"},
        {"name": "ftp", "service": "ftp"},
        {"name": "v6", "host": "::/0"},
    ]
    return RuleSet([*DEFAULT_RULES, *(rule_from_dict(r, r["name"]) for r in own)])


def test_batch_matching_agrees_with_one_flow_at_a_time(flows: FlowBatch) -> None:
    rs = rules()
    for now in (0.0, 100.0):  # "old" is active, then expired
        active, which = rs.flow_rules(now, flows)
        one = [
            rs.flow_rule(now, r.orig_h, r.resp_h, r.resp_p, r.proto, r.service)
            for r in flows.records()
        ]
        got = [active[k].name if k >= 0 else None for k in which.tolist()]
        assert got == [r.name if r is not None else None for r in one]
        hits = {name for name in got if name}
        # while it lasts, "old" comes first for the LAN's TCP flows
        want = {"mdns", "lan-dns", "old"} if now < 50.0 else {"mdns", "lan-dns", "web-peer", "ftp"}
        assert want <= hits and ("old" in hits) == (now < 50.0), hits


def test_suppressor_drops_and_counts_per_rule(flows: FlowBatch) -> None:
    rows = np.arange(0, len(flows), 3)
    sup = Suppressor(rules(), clock=lambda: 100.0)
    keep = sup.flows(flows, rows)
    active, which = rules().flow_rules(100.0, flows.take(rows))
    assert keep.tolist() == (which < 0).tolist()
    assert sup.last == {
        int(r): active[k].name for r, k in zip(rows.tolist(), which.tolist(), strict=True) if k >= 0
    }
    assert sum(n for (_, what), n in sup.counts.items() if what == "alerts") == (~keep).sum() > 0
    assert sup.flows(flows, rows[:0]).size == 0 and sup.last == {}
