"""Inputs an operator brings (issue 17 points 3, 4 and 16), on real data in tests/data (see
SOURCE.txt): one address spelling whichever sensor wrote it, Suricata's own signature alerts
attached to their flows, and CICFlowMeter CSVs in the spellings people have."""

from __future__ import annotations

import csv
import json
import logging
import socket
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from netanomd.behaviour.incidents import IncidentTracker
from netanomd.behaviour.signed import SignedFlows
from netanomd.commands._display import alert_line
from netanomd.daemon.pipeline import Pipeline
from netanomd.ecs import INTEGRATION_TYPES, ObserverInfo, alert_document, template_mappings
from netanomd.errors import InputError
from netanomd.evaluation.data import load_cicflowmeter
from netanomd.flow import FlowBatch, FlowRecord, canonical_address
from netanomd.model import Model
from netanomd.sinks import SinkSet
from netanomd.sinks.sqlite import SQLiteSink, query_alerts
from netanomd.sources import ReadStats
from netanomd.sources.cicflowmeter import CicFlowMeterSource
from netanomd.sources.files import open_source
from netanomd.sources.suricata_alerts import UNMATCHED, SignatureJoin
from netanomd.sources.suricata_socket import EveSocket
from tests.waiting import wait

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
    # The byte search that skips IPv4-only columns: an IPv6 address in a later chunk, and in a
    # slice whose buffer also holds text outside it, is still put in canonical form.
    sliced = pa.array(["FF02:0000:0000:0000:0000:0000:0000:00FB", "10.0.0.2"]).slice(0, 1)
    chunked = pa.table({"orig_h": pa.chunked_array([pa.array(["10.0.0.1"]), sliced])})
    got = FlowBatch.from_table(chunked).column("orig_h").to_pylist()
    assert got == ["10.0.0.1", "ff02::fb"]


# -- point 4: Suricata's own alerts on their flows -----------------------------------------------
SIGNED = DATA / "eve/test6-malicious-signatures.json"
SEVERE_FLOW = 328594778239040  # two severity-1 signatures (ET WEB_SERVER WGET ..., ET EXPLOIT ...)


def expected_signatures(lines: list[bytes]) -> tuple[dict[int, set[int]], int]:
    """From the EVE lines themselves: flow_id -> signature ids of its alert events, for flows
    with a flow event; and how many alert events have no flow event."""
    events = [json.loads(x) for x in lines if x.strip()]
    flows = {e["flow_id"] for e in events if e["event_type"] == "flow"}
    out: dict[int, set[int]] = {}
    orphans = 0
    for e in events:
        if e["event_type"] != "alert":
            continue
        if e["flow_id"] in flows:
            out.setdefault(e["flow_id"], set()).add(e["alert"]["signature_id"])
        else:
            orphans += 1
    return out, orphans


def signatures_by_flow(batch: FlowBatch) -> dict[int, set[int]]:
    return {
        r.flow_id: {s.signature_id for s in r.signatures}
        for r in batch.records()
        if r.signatures and r.flow_id is not None
    }


@pytest.mark.parametrize("batch_size", [65_536, 7])
def test_file_reader_attaches_alerts_to_their_flows(batch_size: int) -> None:
    lines = SIGNED.read_bytes().splitlines()
    want, orphans = expected_signatures(lines)
    assert len(want) == 35 and orphans == 12
    src = open_source(SIGNED, batch_size=batch_size)
    batch = FlowBatch.concat(list(src.batches()))
    assert signatures_by_flow(batch) == want
    assert src.stats.skipped == {UNMATCHED: orphans}  # alerts are no longer "skipped"
    severe = next(r for r in batch.records() if r.flow_id == SEVERE_FLOW)
    assert severe.signatures is not None
    assert {(s.signature_id, s.severity, s.category) for s in severe.signatures} == {
        (2019309, 1, "Attempted Administrator Privilege Gain"),
        (2020899, 1, "Attempted Administrator Privilege Gain"),
    }


def test_order_within_a_block_does_not_matter(tmp_path: Path) -> None:
    lines = SIGNED.read_bytes().splitlines()
    want, _ = expected_signatures(lines)
    backwards = tmp_path / "eve.json"  # every alert now comes after its flow event
    backwards.write_bytes(b"\n".join(reversed(lines)) + b"\n")
    assert signatures_by_flow(read(backwards)) == want  # one block: joined all the same
    src = open_source(backwards, batch_size=1)  # each line its own block: too late
    assert signatures_by_flow(FlowBatch.concat(list(src.batches()))) == {}
    assert src.stats.skipped[UNMATCHED] == sum(b'"event_type":"alert"' in x for x in lines)


def test_waiting_alerts_are_bounded_in_number_and_time() -> None:
    alerts = [json.loads(x) for x in SIGNED.read_bytes().splitlines() if b'"alert"' in x]
    stats = ReadStats()
    now = [0.0]
    join = SignatureJoin(stats, max_flows=5, max_age=60.0, clock=lambda: now[0])
    for ev in alerts:
        join.add(ev)
        assert len(join) <= 5
    flows = {ev["flow_id"] for ev in alerts}
    assert len(join) == 5 and stats.skipped[UNMATCHED] == len(alerts) - sum(
        1 for ev in alerts if ev["flow_id"] in set(join._waiting)
    )
    now[0] = 61.0
    join.add(alerts[0])  # time passes: everything older than a minute goes
    assert len(join) == 1 and stats.skipped[UNMATCHED] == len(alerts)
    assert len(flows) > 5
    with pytest.raises(ValueError, match=r"alert\.signature_id"):
        join.add({**alerts[0], "alert": {**alerts[0]["alert"], "signature_id": "x"}})


def test_bad_alert_event_is_a_bad_line(tmp_path: Path) -> None:
    lines = SIGNED.read_bytes().splitlines()
    i = next(i for i, x in enumerate(lines) if b'"event_type":"alert"' in x)
    ev = json.loads(lines[i])
    ev["alert"]["severity"] = "high"
    lines[i] = json.dumps(ev).encode()
    path = tmp_path / "eve.json"
    path.write_bytes(b"\n".join(lines) + b"\n")
    src = open_source(path)
    list(src.batches())
    assert src.stats.malformed == 1
    assert f"{path}:{i + 1}: bad alert event" in src.stats.problems[0]
    assert "alert.severity" in src.stats.problems[0]


def test_an_anomaly_alert_names_the_signatures_in_reason_and_ecs(demo: Model) -> None:
    demo.reset()
    _, alerts = demo.run(read(SIGNED), threshold=0.0)  # every flow alerts
    a = next(x for x in alerts if x.flow.flow_id == SEVERE_FLOW)
    assert a.reason.endswith(
        "Suricata signatures: ET WEB_SERVER WGET Command Specifying Output in HTTP Headers "
        "(sid 2019309, severity 1); ET EXPLOIT D-Link Devices Home Network Administration "
        "Protocol Command Execution (sid 2020899, severity 1)"
    )
    doc = alert_document(a, ObserverInfo("s", "h"))
    eve = doc["suricata"]["eve"]
    assert eve["alert"]["signature_id"] == [2019309, 2020899]
    assert eve["alert"]["category"] == "Attempted Administrator Privilege Gain"
    assert doc["event"]["severity"] >= 73  # a severity-1 signature: at least high
    assert doc["netanomd"]["signatures"][0]["severity"] == 1
    assert "Suricata signatures" in doc["event"]["reason"]
    assert doc["rule"]["name"].startswith("anomalous flow")  # rule.* stays netanomd's
    mapped = template_mappings()["properties"]["suricata"]["properties"]["eve"]["properties"]
    assert mapped["alert"]["properties"]["signature_id"]["type"] == "long"
    assert {f"suricata.eve.alert.{k}" for k in ("signature", "signature_id", "category")} <= set(
        INTEGRATION_TYPES
    )
    plain = next(x for x in alerts if not x.flow.signatures)
    assert "Suricata" not in plain.reason
    assert "suricata" not in alert_document(plain, ObserverInfo("s", "h")).get("suricata", {}).get(
        "eve", {}
    ).get("alert", {})


def test_a_severity_one_signature_makes_its_incident_high(demo: Model) -> None:
    demo.reset()
    batch = read(SIGNED)
    stream = demo.stream()
    stream.process(batch, threshold=0.0)
    incidents = stream.finish()
    severe = next(r for r in batch.records() if r.flow_id == SEVERE_FLOW)
    holding = [i for i in incidents if i.members(batch.take([_row(batch, SEVERE_FLOW)])).any()]
    assert holding and all(i.severity >= 73 for i in holding)
    mine = next(i for i in holding if i.host == severe.orig_h)
    assert mine.behaviour == "anomalous flows" and mine.signature_floor == 73
    # the same incidents without Suricata's alerts: low
    demo.reset()
    bare = FlowBatch(
        batch.table.set_column(
            batch.table.schema.get_field_index("signatures"),
            "signatures",
            pa.nulls(len(batch), batch.table.schema.field("signatures").type),
        )
    )
    again = demo.stream()
    again.process(bare, threshold=0.0)
    same = next(i for i in again.finish() if i.host == severe.orig_h)
    assert same.behaviour == "anomalous flows" and same.severity < 73


def _row(batch: FlowBatch, flow_id: int) -> int:
    return int(batch.column("flow_id").to_pylist().index(flow_id))


def test_an_incident_opened_after_the_signed_flow_is_raised_too() -> None:
    batch = read(SIGNED)
    severe = batch.take([_row(batch, SEVERE_FLOW)])
    tracker = IncidentTracker()
    signed = SignedFlows(quiet=tracker.quiet)
    assert signed.process(severe, tracker, []) == []  # no incident holds it yet
    assert len(signed) == 1
    # a later batch opens an incident holding it (here: the flow alerts, as a detector would)
    opened = tracker.add_flow_alerts(severe, np.array([0.7]), float(severe.numeric("ts")[0]))
    assert [inc.severity for inc in opened] == [21]
    assert signed.process(FlowBatch.empty(), tracker, opened) == opened
    assert opened[0].severity == 73


@pytest.mark.parametrize("kind", ["dgram", "stream"])
def test_live_eve_socket_attaches_alerts(tmp_path: Path, demo: Model, kind: str) -> None:
    demo.reset()
    sqlite = SQLiteSink(tmp_path / "alerts.db")
    pipeline = Pipeline(demo, SinkSet([sqlite]), batch_size=100, batch_timeout=0.01, threshold=0.0)
    path = tmp_path / "eve.sock"
    src = EveSocket(path, kind, pipeline.emitter("eve", block=False), batch_wait=0.01)
    threads = [threading.Thread(target=t, daemon=True) for t in (pipeline.run, src.run)]
    for t in threads:
        t.start()
    assert src.ready.wait(5)
    lines = SIGNED.read_bytes().splitlines()
    flows = sum(b'"event_type":"flow"' in x for x in lines)
    if kind == "dgram":  # one record per datagram, as Suricata's unix_dgram output
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as c:
            for x in lines:
                c.sendto(x + b"\n", str(path))
    else:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(str(path))
            c.sendall(b"\n".join(lines) + b"\n")
    wait(lambda: pipeline.stats.scored == flows, 10, "every flow scored")
    src.stop()
    assert pipeline.drain(10)
    pipeline.stop()
    for t in threads:
        t.join(10)
    rows = query_alerts(tmp_path / "alerts.db")
    stored = {a.uid: a.reason for a in rows}
    assert len(stored) == flows
    assert "(sid 2019309, severity 1)" in stored[f"S{SEVERE_FLOW}"]
    want, _ = expected_signatures(lines)
    said = {uid for uid, reason in stored.items() if "Suricata signature" in reason}
    assert said == {f"S{f}" for f in want}
    # ... and kept as data beside the sentence (the analyst page lists them per incident)
    kept = {a.uid: a.signatures for a in rows if a.signatures}
    assert set(kept) == said
    severe = kept[f"S{SEVERE_FLOW}"]
    assert (
        severe is not None
        and {2019309: 1}.items() <= {s["signature_id"]: s["severity"] for s in severe}.items()
    )


# -- point 16: CICFlowMeter CSVs as people have them ---------------------------------------------
#: CIC-IDS2017 "1%"-style derivative: CICFlowMeter columns only and a 0/1 ``Labelb``; no
#: addresses, ports or time (tests/data/SOURCE.txt).
LABELB = DATA / "cic/cicids2017-sample-labelb.csv"
PORTSCAN = DATA / "cic/portscan-head50.csv"  # CIC-IDS2017 GeneratedLabelledFlows, all columns

#: The same columns in the spellings of the other producers.
SPELLINGS: dict[str, dict[str, str]] = {
    # MachineLearningCVE / TrafficLabelling CSVs: names after a comma start with a space
    "cic-ids2017 spaces": {},
    # CSE-CIC-IDS2018 / CICFlowMeter-V3
    "cicflowmeter 3": {
        "Source IP": "Src IP",
        "Source Port": "Src Port",
        "Destination IP": "Dst IP",
        "Destination Port": "Dst Port",
        "Total Fwd Packets": "Tot Fwd Pkts",
        "Total Backward Packets": "Tot Bwd Pkts",
        "Total Length of Fwd Packets": "TotLen Fwd Pkts",
        "Total Length of Bwd Packets": "TotLen Bwd Pkts",
    },
    # CICFlowMeter 4 (the Java tool's current header)
    "cicflowmeter 4": {
        "Source IP": "Src IP",
        "Source Port": "Src Port",
        "Destination IP": "Dst IP",
        "Destination Port": "Dst Port",
        "Total Fwd Packets": "Total Fwd Packet",
        "Total Backward Packets": "Total Bwd packets",
        "Total Length of Fwd Packets": "Total Length of Fwd Packet",
        "Total Length of Bwd Packets": "Total Length of Bwd Packet",
    },
    # the Python cicflowmeter
    "python cicflowmeter": {
        "Flow ID": "flow_id",
        "Source IP": "src_ip",
        "Source Port": "src_port",
        "Destination IP": "dst_ip",
        "Destination Port": "dst_port",
        "Protocol": "protocol",
        "Timestamp": "timestamp",
        "Flow Duration": "flow_duration",
        "Total Fwd Packets": "tot_fwd_pkts",
        "Total Backward Packets": "tot_bwd_pkts",
        "Total Length of Fwd Packets": "totlen_fwd_pkts",
        "Total Length of Bwd Packets": "totlen_bwd_pkts",
        "Label": "label",
    },
}


def respelled(tmp_path: Path, src: Path, renames: dict[str, str], space: bool = False) -> Path:
    header, _, body = src.read_text().partition("\n")
    names = [renames.get(n, n) for n in header.split(",")]
    out = tmp_path / src.name
    out.write_text((", " if space else ",").join(names) + "\n" + body)
    return out


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_cic_column_spellings_read_alike(tmp_path: Path, spelling: str) -> None:
    want = read(PORTSCAN).table.drop_columns(["uid"])
    path = respelled(tmp_path, PORTSCAN, SPELLINGS[spelling], space=spelling.endswith("spaces"))
    assert "Total Fwd Packets" not in path.read_text().splitlines()[0].split(",")
    got = read(path).table.drop_columns(["uid"])
    assert got.equals(want)
    assert want.column("orig_pkts").null_count == 0 and want.column("ts").null_count == 0


@pytest.mark.parametrize(
    ("header", "values", "label", "detailed"),
    [
        ("Label", ["BENIGN", "DoS Hulk"], ["BENIGN", "DoS Hulk"], [None, None]),
        ("label", [" BENIGN", "PortScan "], ["BENIGN", "PortScan"], [None, None]),
        ("Labelb", ["0", "1"], ["benign", "malicious"], [None, None]),
        ("Attack", ["Benign", "Bot"], ["Benign", "Bot"], [None, None]),
        ("Labelb,Attack", ["0,Benign", "1,Bot"], ["benign", "malicious"], ["Benign", "Bot"]),
    ],
)
def test_cic_label_columns(
    tmp_path: Path, header: str, values: list[str], label: list[str], detailed: list[None]
) -> None:
    lines = PORTSCAN.read_text().splitlines()
    head = lines[0].rpartition(",")[0]  # drop Label
    rows = [ln.rpartition(",")[0] for ln in lines[1:3]]
    path = tmp_path / "labels.csv"
    path.write_text(
        "\n".join([f"{head},{header}", *(f"{r},{v}" for r, v in zip(rows, values, strict=True))])
        + "\n"
    )
    b = read(path)
    assert b.column("label").to_pylist() == label
    assert b.column("detailed_label").to_pylist() == detailed


def test_cic_without_addresses_ports_or_time_is_scored(
    tmp_path: Path, demo: Model, caplog: pytest.LogCaptureFixture
) -> None:
    rows = list(csv.reader(LABELB.open()))
    header, body = rows[0], rows[1:]
    assert not {"Source IP", "Destination Port", "Timestamp", "Label"} & set(header)
    with caplog.at_level(logging.WARNING, "netanomd"):
        src = open_source(LABELB, batch_size=100)  # sniffed as CICFlowMeter: not refused
        assert isinstance(src, CicFlowMeterSource)
        batch = FlowBatch.concat(list(src.batches()))
    assert len(batch) == len(body) == 320
    said = [r.getMessage() for r in caplog.records if "scored on what the file has" in r.message]
    assert len(said) == 1  # once per file, not per block
    assert "source address" in said[0] and "timestamp" in said[0]
    assert src.missing == ("orig_h", "orig_p", "resp_h", "resp_p", "ts", "proto")
    labels = batch.column("label").to_pylist()
    assert labels.count("benign") == sum(r[-1] == "0" for r in body) == 76
    assert labels.count("malicious") == sum(r[-1] == "1" for r in body)
    uids = batch.column("uid").to_pylist()
    assert len(set(uids)) == 320 and uids[0] == "cicids2017-sample-labelb.csv#1"
    # scored on what is there, every flow its own alert, shown with "-"
    demo.reset()
    stream = demo.stream()
    scores, alerts, incidents = stream.process(batch, threshold=0.0)
    assert len(alerts) == 320 and np.isfinite(scores).all() and incidents == []
    db = tmp_path / "alerts.db"
    sink = SQLiteSink(db)
    sink.write(alerts)
    sink.close()
    stored = query_alerts(db)
    assert len(stored) == 320
    line = alert_line(stored[0])
    assert " - -> - - " in line and "None" not in line
    doc = alert_document(alerts[0], ObserverInfo("s", "h"))
    assert "None" not in doc["event"]["reason"] and "ip" not in doc["source"]
    assert doc["source"]["packets"] == alerts[0].flow.orig_pkts
    assert doc["@timestamp"] == doc["event"]["created"] and "start" not in doc["event"]


def test_not_a_cic_file_says_which_column_is_missing(tmp_path: Path) -> None:
    lines = LABELB.read_text().splitlines()
    path = tmp_path / "x.csv"
    path.write_text(lines[0].replace("Flow Duration", "Duration") + "\n" + lines[1] + "\n")
    with pytest.raises(InputError, match="Flow Duration"):
        list(CicFlowMeterSource(path).batches())


def test_evaluate_cic_takes_labelb() -> None:
    data = load_cicflowmeter("labelb", LABELB)
    assert (data.y == 0).sum() == 76 and (data.y == 1).sum() == 244
    assert not {"Labelb", "Label"} & set(data.feature_names)
    assert "Total Fwd Packets" in data.feature_names
