"""Model.stream on real captures: the operating point in the artifact, incidents out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from netanomd.behaviour import reasons
from netanomd.behaviour.incidents import Incident
from netanomd.behaviour.windows import unanswered_mask
from netanomd.daemon.pipeline import Pipeline
from netanomd.data import attack_files, baseline_files
from netanomd.errors import ModelError
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.model.artifact import ID_DIGITS
from netanomd.sinks import SinkSet
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches


def _read(path: Path) -> FlowBatch:
    return FlowBatch.concat(list(read_batches([str(path)], ReadStats())))


def _capture(name: str) -> FlowBatch:
    return _read(next(p for p in attack_files() if name in p.name))


def _stream(model: Model, batch: FlowBatch, step: int = 200) -> tuple[int, list[Incident]]:
    s = model.stream()
    alerts = 0
    for off in range(0, len(batch), step):
        alerts += len(s.process(batch.slice(off, step))[1])
    return alerts, s.finish()


@pytest.mark.parametrize(
    ("capture", "host", "peer"),
    [("njrat", "192.168.1.115", "41.108.179.197"), ("remcos", "192.168.1.107", "66.63.168.35")],
)
def test_each_rat_capture_is_an_incident_naming_its_behaviour(
    demo: Model, capture: str, host: str, peer: str
) -> None:
    batch = _capture(capture)
    _, incidents = _stream(demo, batch)
    named = [i for i in incidents if i.host == host and i.behaviour != "anomalous flows"]
    (cc,) = named  # one incident for the C&C pair, whatever else the host did
    assert cc.behaviour == "repeated failed connections" and cc.peer == peer and cc.closed
    assert cc.severity >= 40 and peer in cc.title
    pair = np.asarray(
        pc.and_(pc.equal(batch.column("orig_h"), host), pc.equal(batch.column("resp_h"), peer))
    )
    assert (cc.members(batch) & pair).sum() >= 0.9 * pair.sum()


def test_every_flow_alert_belongs_to_an_incident(demo: Model) -> None:
    batch = _capture("remcos")
    s = demo.stream()
    scores, alerts, _ = s.process(batch)
    incidents = s.finish()
    assert alerts
    alerted = batch.take(np.flatnonzero(scores >= demo.threshold))
    held = np.zeros(len(alerted), dtype=np.bool_)
    for inc in incidents:
        held |= inc.members(alerted)
    assert held.all()
    with pytest.raises(RuntimeError, match="finished"):
        s.process(batch)


def test_a_scan_is_one_incident_holding_the_scanners_flows(demo: Model, data_dir: Path) -> None:
    batch = _read(data_dir / "behaviour" / "zeek-traces-nmap-vsn.conn.log")
    _, incidents = _stream(demo, batch, step=500)
    scans = [i for i in incidents if i.host == "192.168.1.71" and i.family == "scan"]
    assert scans and scans[0].severity >= 40
    mine = np.asarray(pc.equal(batch.column("orig_h"), "192.168.1.71").fill_null(False))
    inside = np.zeros(len(batch), dtype=np.bool_)
    for inc in incidents:
        if inc.host == "192.168.1.71":
            inside |= inc.members(batch)
    assert (inside & mine).sum() >= 0.9 * mine.sum()


def test_the_operating_point_survives_the_artifact(demo: Model, tmp_path: Path) -> None:
    assert demo.operating is not None
    demo.save(tmp_path / "m.npz")
    loaded = Model.load(tmp_path / "m.npz")
    assert loaded.operating is not None
    a, b = demo.operating.thresholds, loaded.operating.thresholds
    np.testing.assert_array_equal(a.host, b.host)
    assert a.pair_keys.tolist() == b.pair_keys.tolist()
    assert loaded.operating.meta() == demo.operating.meta()
    batch = _capture("njrat")
    assert [i.title for i in _stream(demo, batch)[1]] == [
        i.title for i in _stream(loaded, batch)[1]
    ]


def test_a_format_3_model_groups_flow_alerts_only(demo: Model, tmp_path: Path) -> None:
    meta = dict(demo.meta) | {"format_version": 3}
    old = Model(demo.spec, demo.detector, demo.threshold, demo.baselines, meta, demo.floors)
    meta["model_id"] = "iforest-old-" + old.content_digest()[:ID_DIGITS]
    old.save(tmp_path / "old.npz")
    loaded = Model.load(tmp_path / "old.npz")
    assert loaded.operating is None
    alerts, incidents = _stream(loaded, _capture("remcos"))
    assert alerts and incidents and {i.behaviour for i in incidents} == {"anomalous flows"}


def test_behaviour_limits_that_do_not_fit_are_refused(demo: Model, tmp_path: Path) -> None:
    assert demo.operating is not None
    thr = demo.operating.thresholds
    good = thr.host
    try:
        thr.host = good[:1]  # limits for one window scale, three scales declared
        bad = Model(
            demo.spec,
            demo.detector,
            demo.threshold,
            demo.baselines,
            dict(demo.meta),
            demo.floors,
            demo.operating,
        )
        bad.meta["model_id"] = "iforest-bad-" + bad.content_digest()[:ID_DIGITS]
        bad.save(tmp_path / "bad.npz")
    finally:
        thr.host = good
    with pytest.raises(ModelError, match="behaviour limits do not match"):
        Model.load(tmp_path / "bad.npz")


class _Incidents:
    """A sink keeping what it is given (alerts and incidents), as the SQLite sink would."""

    name = "memory"

    def __init__(self) -> None:
        self.alerts = 0
        self.incidents: dict[int, Incident] = {}
        self.updates = 0

    def open(self) -> None:
        pass

    def write(self, alerts: object) -> None:
        self.alerts += len(alerts)  # type: ignore[arg-type]

    def write_incidents(self, incidents: list[Incident]) -> None:
        self.updates += len(incidents)
        self.incidents.update((i.id, i) for i in incidents)

    def flush(self) -> None:
        pass

    def close(self, timeout: float = 30.0) -> bool:
        return True


def test_the_pipeline_writes_incidents_after_alerts(demo: Model) -> None:
    sink = _Incidents()
    pipe = Pipeline(demo, SinkSet([sink]), batch_size=200)
    batch = _capture("remcos")
    for off in range(0, len(batch), 100):
        assert pipe.offer(batch.slice(off, 100), "file")
    pipe.stop_intake()
    pipe.run()
    assert pipe.stats.alerts == sink.alerts > 0
    assert sink.incidents and pipe.stats.incident_updates == sink.updates
    assert not any(i.closed for i in sink.incidents.values())
    assert pipe.drain(1.0)  # shutdown closes the incidents and writes them once more
    assert all(i.closed for i in sink.incidents.values())
    assert any(i.peer == "66.63.168.35" for i in sink.incidents.values())


def test_flow_reasons_are_plain_language(demo: Model, data_dir: Path) -> None:
    icmp = _read(data_dir / "behaviour" / "slips-test12-icmp-portscan.conn.log")
    _, alerts = demo.run(icmp, 0.0, fresh=True)  # every flow alerts: every shape explained
    pings = [a for a in alerts if a.flow.proto == "icmp" and ":" not in a.flow.orig_h]
    assert pings and all(a.reason.startswith("ICMP ") for a in pings)
    assert not any("port" in c.description for a in pings for c in a.contributions)
    v6 = [a for a in alerts if a.flow.proto == "icmp" and ":" in a.flow.orig_h]
    assert all(a.reason.startswith("ICMPv6 ") and "type " not in a.reason[:30] for a in v6)
    scan = _read(data_dir / "behaviour" / "zeek-traces-nmap-vsn.conn.log")
    _, alerts = demo.run(scan, 0.0, fresh=True)
    syn = [a for a in alerts if a.flow.conn_state == "S0" and a.flow.history == "S"]
    assert syn and all("lone SYN, no reply" in a.reason for a in syn)
    rej = [a for a in alerts if a.flow.conn_state == "REJ" and a.flow.resp_p == 80]
    assert rej and all(a.reason.startswith("HTTP (80/tcp): rejected") for a in rej)
    never = [c for a in alerts for c in a.contributions if c.direction == "rare" and not c.baseline]
    assert never and all("never seen in training" in c.sentence() for c in never)
    assert not any("0.00%" in a.reason for a in alerts)


def test_train_then_score_reports_the_brute_force_first(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI path with no flags: `train` on the bundled clean day, `score` an SSH-port brute
    force from another network; the incident names it, above the flow alerts."""
    from netanomd.cli import main

    model = tmp_path / "m.npz"
    assert main(["train", "-i", *map(str, baseline_files()), "-m", str(model)]) == 0
    assert "incident_budget" in capsys.readouterr().out
    attack = data_dir / "behaviour" / "slips-malicious-ssh-bruteforce.conn.log"
    assert main(["score", "-m", str(model), "-i", str(attack), "--db", str(tmp_path / "a.db")]) == 0
    out = capsys.readouterr().out
    head = out.split("incidents (most severe first):")[1].splitlines()[1]
    assert "147.32.80.40 opened 67 connections to" in head and "(brute force; 67 flows" in head


def test_a_one_host_capture_keeps_its_flow_threshold_above_the_crowd(data_dir: Path) -> None:
    """IoT-23 44-1, trained as `netanomd train` does on its own first half (one host, its C&C
    and its NTP, unlabeled): the incident budget cannot be met on an hour of one host, and its
    few distinct behaviours are most of the flows. The line stays where at most
    MAX_TRAINING_ALERT_SHARE of the training flows alert, so the host's ordinary NTP retries in
    the second half are no incident, while its DDoS flow is in one."""
    from netanomd.decision.thresholds import MAX_TRAINING_ALERT_SHARE
    from netanomd.model import train

    batch = _read(data_dir / "zeek" / "iot23-44-1.csv")
    end = batch.numeric("ts") + np.maximum(batch.numeric("duration"), 0.0)
    by_start = np.argsort(batch.numeric("ts"), kind="stable")
    half = len(batch) // 2

    def arriving(rows: np.ndarray) -> FlowBatch:  # as a sensor gets them: by flow end
        return batch.take(rows[np.argsort(end[rows], kind="stable")])

    model = train([arriving(by_start[:half])], seed=0)
    rule = model.meta["threshold_rule"]
    assert rule["max_training_alert_share"] == MAX_TRAINING_ALERT_SHARE
    assert rule["training_alert_share"] <= MAX_TRAINING_ALERT_SHARE
    test = arriving(by_start[half:])
    s = model.stream()
    scores = s.process(test)[0]
    incidents = s.finish()
    label = np.asarray(test.column("label").fill_null("").to_pylist())
    ben = label == "Benign"
    inside = np.zeros(len(test), dtype=np.bool_)
    for inc in incidents:
        m = inc.members(test)
        inside |= m & (scores >= model.threshold) if inc.behaviour == "anomalous flows" else m
    assert (inside & ben).sum() <= 0.02 * ben.sum()
    ddos = np.asarray(test.column("detailed_label").fill_null("").to_pylist()) == "DDoS"
    assert ddos.any() and inside[ddos].all()


def test_flow_alerts_carry_their_hosts_context(demo: Model, remcos: FlowBatch) -> None:
    """Each C&C flow alert says how many times the host had already failed at that peer and
    port in the 10-minute window (one attempt per source port: Zeek logs a retry again), and the
    host's first contact of a destination says which new destination of the hour it was; the
    numbers stay as data beside the sentence, with the learned limit they compare to. Flows
    come as a sensor gets them: by flow end."""
    end = remcos.numeric("ts") + np.maximum(remcos.numeric("duration"), 0.0)
    remcos = remcos.take(np.argsort(end, kind="stable"))
    demo.reset()
    s = demo.stream()
    alerts = []
    for off in range(0, len(remcos), 200):
        alerts += s.process(remcos.slice(off, 200))[1]
    cc = [a for a in alerts if a.flow.resp_h == "66.63.168.35"]
    assert len(cc) > 500
    # Independently: distinct source ports of the pair's unanswered flows so far in its window.
    end = remcos.numeric("ts") + np.maximum(remcos.numeric("duration"), 0.0)
    window = np.floor(np.maximum.accumulate(end) / 600.0)
    pair = np.asarray(pc.equal(remcos.column("resp_h"), "66.63.168.35").fill_null(False))
    pair &= unanswered_mask(remcos)
    ports = remcos.numeric("orig_p", fill=-1, dtype=np.int64)
    row = {u: i for i, u in enumerate(remcos.column("uid").to_pylist())}
    checked = 0
    for a in cc[::50]:
        i = row[a.flow.uid]
        mine = pair[: i + 1] & (window[: i + 1] == window[i])
        failed = len(set(ports[: i + 1][mine].tolist()))
        said = [c for c in a.contributions if c.feature == "host.failed_attempts"]
        if failed < 2:  # a first failure is no context worth a sentence
            assert not said
            continue
        (ctx,) = said
        assert ctx.observed == failed
        assert ctx.sentence() == (
            f"{reasons.ordinal(int(ctx.observed))} unanswered attempt at this peer and port "
            "in 10 minutes"
        )
        assert ctx.sentence() in a.reason and a.reason.endswith(ctx.sentence())
        assert ctx.baseline == demo.operating.thresholds.pair_limit(600.0, "orig", "tcp", 5888)
        assert ctx.to_dict()["observed"] == ctx.observed
        checked += 1
    assert checked >= 10
    first = [c for a in alerts for c in a.contributions if c.feature == "host.new_destinations"]
    assert first and first[0].description == "host's 1st new destination this hour"
    counts = [c.observed for c in first if c.description.startswith("host's")]
    assert counts == sorted(counts)  # within the hour, the count only grows


def test_a_flow_without_a_finite_time_is_scored_but_stays_out_of_host_behaviour(
    demo: Model,
) -> None:
    """A flow whose start time is missing, NaN or infinite (a fuzzed or broken record) is
    scored like any other, but it has no place in a time window: host behaviour and incidents
    skip it instead of failing the batch."""
    from netanomd.flow import FlowRecord

    demo.reset()
    times = [1_700_000_000.0, float("inf"), float("nan"), 1_700_000_001.0]
    recs = [
        FlowRecord(
            ts=t,
            uid=f"C{i}",
            orig_h="10.0.0.1",
            orig_p=40000 + i,
            resp_h="10.0.0.2",
            resp_p=22,
            proto="tcp",
            duration=0.1,
            conn_state="S0",
            history="S",
        )
        for i, t in enumerate(times)
    ]
    batch = FlowBatch.from_records(recs)
    assert batch.placed().tolist() == [True, False, False, True]
    scores, _, _ = demo.stream().process(batch, threshold=0.0)
    assert len(scores) == 4 and np.isfinite(scores).all()


def _grouping(model: Model, batch: FlowBatch, step: int) -> tuple[list[object], dict[str, str]]:
    """``batch`` through a fresh stream ``step`` flows at a time: every incident (sorted), and
    where each flow alert ended up (a named incident, or its host's "anomalous flows")."""
    model.reset()
    s = model.stream()
    links: dict[str, set[int]] = {}  # alert uid -> the incidents it was linked to
    for off in range(0, len(batch), step):
        for inc in s.process(batch.slice(off, step))[2]:
            for u in inc.alert_uids:
                links.setdefault(u, set()).add(inc.id)
    incidents = s.finish()
    for inc in incidents:  # the end of the stream can still move alerts
        for u in inc.alert_uids:
            links.setdefault(u, set()).add(inc.id)
    named = {i.id for i in incidents if i.behaviour != "anomalous flows"}
    host = {i.id: i.host for i in incidents if i.behaviour == "anomalous flows"}
    where = {}  # an alert is explained by a named incident, or its host's anomalous flows
    for u, ids in links.items():
        if ids & named:
            where[u] = "named"
        else:
            (alone,) = ids & set(host)  # one anomalous-flows incident still holds it
            where[u] = host[alone]
    return (
        sorted(
            (i.behaviour, i.role, i.host, i.detail, i.flows, i.severity, i.first_seen, i.last_seen)
            for i in incidents
        ),
        where,
    )


def test_the_grouping_does_not_depend_on_the_batch_size(demo: Model, data_dir: Path) -> None:
    # A named incident opens when its window closes, after its flows alerted; cut into small
    # batches, those alerts went to "anomalous flows" first (400 incidents at 100 flows a batch,
    # 39 at 10,000 before): they move into the named incident that covers them.
    batch = _read(data_dir / "behaviour" / "ctu50-008.conn.log.labeled.gz")
    end = batch.numeric("ts") + np.maximum(batch.numeric("duration"), 0.0)
    batch = batch.take(np.argsort(end, kind="stable"))  # as a sensor logs them
    seen = [_grouping(demo, batch, step) for step in (100, 1000, 10_000)]
    assert seen[0] == seen[1] == seen[2]
    behaviours = {b for b, *_ in seen[0][0]}
    assert {"brute force", "vertical scan", "beaconing", "anomalous flows"} <= behaviours
    assert len(seen[0][0]) < 40


def test_a_log_in_start_time_order_groups_the_same_whatever_the_batch_size(demo: Model) -> None:
    """The bundled clean day sorted by flow start (as a CSV export or ``benchmarks/
    gen_connlog.py`` has it): the stream's clock is the latest flow end, so a long flow moves it
    far past the start of the flows still arriving, and the tick at a batch's end closed the
    host's "anomalous flows" incident that its next alert, moments later by its own time, should
    join (13 / 11 / 11 incidents at 100 / 1,000 / 10,000 flows a batch before). A closed incident
    that a detection finds not yet quiet by the detection's own time is reopened."""
    batch = _read(baseline_files()[0])
    batch = batch.take(np.argsort(batch.numeric("ts"), kind="stable"))
    seen = [_grouping(demo, batch, step) for step in (100, 1000, 10_000)]
    assert seen[0] == seen[1] == seen[2]
    flows = [i for i in seen[0][0] if i[0] == "anomalous flows"]
    assert flows and seen[0][1]  # alerts there are, and hosts whose alerts no behaviour names


def test_an_incident_reopened_late_keeps_every_alert(demo: Model, data_dir: Path) -> None:
    """CTU-50 008 sorted by flow start, 100 flows a batch: the clock runs hours ahead of the
    flows arriving (flows lasting hours), so "anomalous flows" incidents close, lose their held
    alerts and are reopened by their host's next alert; one that a named incident later takes
    alerts from is not rebuilt from part of them (every alert keeps a home: ``_grouping``)."""
    batch = _read(data_dir / "behaviour" / "ctu50-008.conn.log.labeled.gz")
    batch = batch.take(np.argsort(batch.numeric("ts"), kind="stable"))
    incidents, where = _grouping(demo, batch, 100)
    assert len(where) > 1000 and "named" in where.values()
    assert any(i[0] == "anomalous flows" for i in incidents)
