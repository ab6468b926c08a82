"""Allowlist rules, the suppression hook and the feedback store, on the demo captures: the
default discovery rules cover the demo's SSDP alert and none of the RAT flows; a stream with the
hook drops (and counts) what a rule covers; "mark benign" suppresses the incident's repeats and
its flows come back out as conn.log lines that training reads; the page's access rules."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from netanomd.daemon.score_api import score_json
from netanomd.data import attack_files
from netanomd.errors import ConfigError, InputError
from netanomd.feedback import (
    DEFAULT_RULES,
    FeedbackStore,
    RuleSet,
    Suppressor,
    benign_conn_lines,
    load_rules_file,
    rule_from_dict,
)
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.sinks import SinkSet
from netanomd.sinks.sqlite import AlertQuery, IncidentQuery, SQLiteSink, alert_page, query_incidents
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches
from netanomd.ui.app import UiSettings, build_app
from netanomd.ui.auth import Access
from tests.conftest import REPO_DIR


def build_demo_db(model: Model, where: Path) -> tuple[Path, Path]:
    """What ``netanomd demo`` writes: the demo model and the attack captures scored into SQLite."""
    from netanomd.commands.score import score_files

    where.mkdir(parents=True, exist_ok=True)
    db, model_path = where / "demo-alerts.db", where / "demo-model.npz"
    model.reset()
    model.save(model_path)
    score_files(model, [str(p) for p in attack_files()], SinkSet([SQLiteSink(db)]))
    return db, model_path


def attack_flows() -> FlowBatch:
    return FlowBatch.concat(list(read_batches(attack_files(), ReadStats())))


def conn_line(flows: FlowBatch, uid: str) -> dict[str, Any]:
    """The capture's record of one flow as a Zeek JSON conn.log object."""
    rows = [r for r in flows.records() if r.uid == uid]
    assert rows, uid
    rec = {k: v for k, v in dataclasses.asdict(rows[0]).items() if v is not None}
    for k in ("orig_h", "orig_p", "resp_h", "resp_p"):
        rec[f"id.{k}"] = rec.pop(k)
    for k in ("label", "detailed_label", "source"):
        rec.pop(k, None)
    return rec


@pytest.fixture(scope="module")
def demo_db(demo: Model, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_demo_db(demo, tmp_path_factory.mktemp("demo"))


@pytest.fixture()
def db(demo_db: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the demo database (tests write feedback into it)."""
    copy = tmp_path / "alerts.db"
    shutil.copy(demo_db[0], copy)
    return copy


def _incident(db: Path, host: str, behaviour: str) -> Any:
    (inc,) = [
        i
        for i in query_incidents(db, IncidentQuery(host=host)).items
        if i.behaviour == behaviour and i.host == host
    ]
    return inc


def test_default_rules_cover_discovery_not_the_rats(db: Path) -> None:
    rules = RuleSet(list(DEFAULT_RULES))
    alerts = alert_page(db, AlertQuery()).items
    covered = {
        a.uid: rules.flow_rule(0.0, a.orig_h, a.resp_h, a.resp_p, a.proto, a.service)
        for a in alerts
    }
    ssdp = [a for a in alerts if a.resp_p == 1900 and a.proto == "udp"]
    assert ssdp and all(covered[a.uid] and covered[a.uid].name == "ssdp" for a in ssdp)
    nd = [a for a in alerts if a.proto == "icmp" and (a.orig_h or "").startswith("fe80:")]
    assert nd and all(covered[a.uid] and covered[a.uid].name == "ipv6-nd" for a in nd)
    rats = [a for a in alerts if a.resp_h in ("66.63.168.35", "41.108.179.197")]
    assert len(rats) > 100
    assert not any(covered[a.uid] for a in rats)
    # Malicious ground truth is never silenced by a default rule.
    assert not any(covered[a.uid] for a in alerts if a.label == "Malicious")


def test_rule_fields_are_checked_with_their_names(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"new\.peer: '10\.0\.0\.300'"):
        rule_from_dict({"name": "x", "peer": "10.0.0.300"}, "new")
    with pytest.raises(InputError, match=r"new\.port: '70000'"):
        rule_from_dict({"name": "x", "port": "70000"}, "new")
    with pytest.raises(InputError, match="matches everything"):
        rule_from_dict({"name": "x", "comment": "oops"}, "new")
    with pytest.raises(InputError, match="unknown rule field"):
        rule_from_dict({"name": "x", "cidr": "10.0.0.0/8"}, "new")
    f = tmp_path / "rules.yaml"
    f.write_text(
        "rules:\n  - name: scanner\n    host: 10.9.0.0/16\n    behaviour: horizontal scan\n"
        "  - name: bad\n    proto: sctp\n"
    )
    with pytest.raises(InputError, match=r"rules\[1\]\.proto: 'sctp'"):
        load_rules_file(f)


def test_stream_hook_drops_and_counts_what_a_rule_covers(demo: Model) -> None:
    flows = attack_flows()
    demo.reset()
    plain = demo.stream()
    _, alerts, _ = plain.process(flows)
    plain_incidents = plain.finish()
    rule = rule_from_dict({"name": "remcos-cc", "peer": "66.63.168.35", "port": 5888}, "t")
    hook = Suppressor(RuleSet([*DEFAULT_RULES, rule]))
    demo.reset()
    quiet = demo.stream()
    quiet.suppress = hook
    _, kept, _ = quiet.process(flows)
    quiet_incidents = quiet.finish()
    to_cc = [a for a in alerts if a.flow.resp_h == "66.63.168.35"]
    ssdp = [a for a in alerts if a.flow.resp_p == 1900]
    assert to_cc and ssdp
    assert not [a for a in kept if a.flow.resp_h == "66.63.168.35" or a.flow.resp_p == 1900]
    assert (
        len(kept)
        == len(alerts)
        - hook.counts[("remcos-cc", "alerts")]
        - hook.counts[("ssdp", "alerts")]
        - hook.counts[("ipv6-nd", "alerts")]
    )
    assert hook.counts[("remcos-cc", "alerts")] == len(to_cc)
    assert hook.counts[("ssdp", "alerts")] == len(ssdp)
    # The C&C incident (repeated failed connections to 66.63.168.35:5888) is gone; NjRAT's stays.
    assert any(i.peer == "66.63.168.35" for i in plain_incidents)
    assert not any(i.peer == "66.63.168.35" for i in quiet_incidents)
    assert any(i.peer == "41.108.179.197" for i in quiet_incidents)
    assert hook.counts[("remcos-cc", "incidents")] >= 1


def test_mark_benign_suppresses_repeats_and_feeds_training(
    db: Path, demo: Model, tmp_path: Path
) -> None:
    flows = attack_flows()
    inc = _incident(db, "192.168.1.2", "anomalous flows")  # one ICMP redirect
    store = FeedbackStore(db)
    repeat = conn_line(flows, inc.uids[0])
    demo.reset()
    before = score_json(demo, None, repeat, suppress=Suppressor(store.rules()))
    assert before[0]["verdict"] == "anomalous"
    rule = store.mark_benign(inc, "alice", "our router's redirects")
    assert rule.learn and rule.host and str(rule.host[0]) == "192.168.1.2/32"
    hook = Suppressor(store.rules())
    demo.reset()
    after = score_json(demo, None, repeat, suppress=hook)
    assert after[0]["verdict"] == "suppressed"
    assert after[0]["suppressed_by"] == rule.name
    store.add_suppressed(hook.take_counts())
    assert store.suppressed()[(rule.name, "alerts")] == 1
    (action,) = store.actions()
    assert (action.who, action.action, action.target) == ("alice", "benign", inc.incident_id)
    assert store.verdict(inc.incident_id) == action
    # The judged flows come out as conn.log lines that the training reader takes.
    out = tmp_path / "benign.conn.log"
    out.write_text("".join(line + "\n" for line in benign_conn_lines(store)))
    back = FlowBatch.concat(list(read_batches([out], ReadStats())))
    assert back.column("uid").to_pylist() == [inc.uids[0]]
    assert back.column("resp_h").to_pylist() == ["192.168.1.115"]
    store.close()


def test_confirm_records_a_true_positive_and_export_has_everything(
    db: Path, tmp_path: Path
) -> None:
    inc = _incident(db, "192.168.1.115", "repeated failed connections")  # NjRAT's C&C
    store = FeedbackStore(db)
    kept = store.confirm(inc, "bob", "NjRAT C&C")
    store.set_default("ssdp", False, "bob", "we want to see SSDP")
    store.close()
    assert kept >= 1
    out = tmp_path / "feedback.jsonl"
    flows_out = tmp_path / "benign.log"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "netanomd.cli",
            "feedback",
            "export",
            "--db",
            str(db),
            "-o",
            str(out),
            "--benign-flows",
            str(flows_out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_DIR,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    items = [json.loads(line) for line in out.read_text().splitlines()]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_type.setdefault(item["type"], []).append(item)
    confirm = [a for a in by_type["action"] if a["action"] == "confirm"]
    assert confirm[0]["who"] == "bob" and confirm[0]["target"] == inc.incident_id
    assert confirm[0]["comment"] == "NjRAT C&C" and confirm[0]["at"] > 1.7e9
    assert [a["action"] for a in by_type["action"]] == ["confirm", "default-off"]
    assert len(by_type["flow"]) == kept
    assert {f["netanomd.verdict"] for f in by_type["flow"]} == {"malicious"}
    ssdp = [r for r in by_type["rule"] if r["name"] == "ssdp"]
    assert ssdp[0]["enabled"] is False
    assert flows_out.read_text() == ""  # nothing marked benign


@pytest.fixture()
def remote(db: Path) -> Iterator[TestClient]:
    """The page as bound beyond loopback, with a read-only token and one analyst's."""
    access = Access(
        bind="0.0.0.0",
        token="viewer-token-0123456789",
        analysts={"carol": "carol-token-0123456789"},
    )
    with TestClient(build_app(UiSettings(db=db, access=access))) as client:
        yield client


def test_beyond_loopback_a_token_is_needed(remote: TestClient) -> None:
    assert remote.get("/incidents").status_code == 401
    assert remote.get("/api/changes").status_code == 401
    wrong = remote.get("/incidents", headers={"Authorization": "Bearer nope-nope-nope-nope"})
    assert wrong.status_code == 401
    ok = remote.get("/incidents", headers={"Authorization": "Bearer viewer-token-0123456789"})
    assert ok.status_code == 200 and "read-only" in ok.text
    # ?token= once: a session cookie, and the token leaves the address.
    first = remote.get("/model?token=viewer-token-0123456789", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/model"
    assert remote.get("/rules").status_code == 200
    # The viewer may not act; the analyst may.
    inc = query_incidents(remote.app.state.ui.db, IncidentQuery(), limit=1).items[0]  # type: ignore[attr-defined]
    refused = remote.post(f"/incident/{inc.incident_id}/confirm", data={"comment": "x"})
    assert refused.status_code == 403
    done = remote.post(
        f"/incident/{inc.incident_id}/confirm",
        data={"comment": "seen"},
        headers={"Authorization": "Bearer carol-token-0123456789"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert remote.app.state.ui.store.verdict(inc.incident_id).who == "carol"  # type: ignore[attr-defined]


def test_binding_beyond_loopback_without_a_token_is_refused(db: Path) -> None:
    with pytest.raises(ConfigError, match="beyond loopback: give a token"):
        Access(bind="0.0.0.0")
    with pytest.raises(ConfigError, match="analyst dave needs a token"):
        Access(bind="10.1.2.3", token="viewer-token-0123456789", analysts={"dave": None})
    local = Access(bind="127.0.0.1", analysts={"erin": None})
    assert local.role(None) is not None and local.role(None).name == "erin"  # type: ignore[union-attr]
