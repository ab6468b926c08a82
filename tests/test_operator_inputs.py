"""Inputs an operator brings (issue 17 points 3, 4 and 16), on real data in tests/data (see
SOURCE.txt): one address spelling whichever sensor wrote it, Suricata's own signature alerts
attached to their flows, and CICFlowMeter CSVs in the spellings people have."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from netanomd.flow import FlowBatch, FlowRecord, canonical_address
from netanomd.sources.files import open_source

DATA = Path(__file__).parent / "data"
#: Suricata 7.0.10 and Zeek 8.2.2 on the same pcap (zeek-traces/wikipedia.pcap), both with
#: community-id on: Suricata spells IPv6 addresses out in full, Zeek compresses them.
EVE_WIKIPEDIA = DATA / "eve/wikipedia-flows.suricata.json"
ZEEK_WIKIPEDIA = DATA / "zeek/wikipedia.json.conn.log"


def read(path: Path, batch_size: int = 65_536) -> FlowBatch:
    return FlowBatch.concat(list(open_source(path, batch_size=batch_size).batches()))


# -- point 3: one spelling of an IPv6 address --------------------------------------------------
def test_suricata_and_zeek_spell_the_same_connection_alike() -> None:
    raw = EVE_WIKIPEDIA.read_text()
    assert "ff02:0000:0000:0000:0000:0000:0000:00fb" in raw  # what Suricata writes
    eve, zeek = read(EVE_WIKIPEDIA), read(ZEEK_WIKIPEDIA)

    def by_cid(b: FlowBatch) -> dict[str, frozenset[str]]:
        # As sets: for one connection the sensors disagree on who originated it.
        return {
            r.community_id: frozenset((r.orig_h, r.resp_h)) for r in b.records() if r.community_id
        }

    e, z = by_cid(eve), by_cid(zeek)
    assert len(e) == len(z) == 34 and e.keys() == z.keys()
    v6 = {cid for cid, hosts in z.items() if any(":" in h for h in hosts)}
    assert len(v6) == 3  # mDNS to ff02::fb and LLMNR to ff02::1:3
    assert all(e[cid] == z[cid] for cid in e), "the same connection must carry one spelling"
    assert frozenset(("fe80::217:f2ff:fed7:cf65", "ff02::fb")) in e.values()


def test_canonical_form_in_every_batch_constructor() -> None:
    spelled = "FE80:0000:0000:0000:0217:F2FF:FED7:CF65"
    rec = FlowRecord(
        ts=1.0, uid="u", orig_h=spelled, orig_p=1, resp_h="10.0.0.1", resp_p=2, proto="udp"
    )
    assert FlowBatch.from_records([rec]).record(0).orig_h == "fe80::217:f2ff:fed7:cf65"
    table = pa.table({"orig_h": [spelled, "10.0.0.1", None, "not:an:address"]})
    b = FlowBatch.from_table(table)
    assert b.column("orig_h").to_pylist() == [
        "fe80::217:f2ff:fed7:cf65",
        "10.0.0.1",
        None,
        "not:an:address",  # not an address: left as written
    ]
    assert canonical_address("::FFFF:192.0.2.1") == "::ffff:192.0.2.1"
