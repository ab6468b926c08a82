"""Allowlist rules, the suppression hook and the feedback store, on the demo captures: the
default discovery rules cover the demo's SSDP alert and none of the RAT flows; a stream with the
hook drops (and counts) what a rule covers; "mark benign" suppresses the incident's repeats and
its flows come back out as conn.log lines that training reads; the page's access rules."""

from __future__ import annotations

import dataclasses
import http.client
import http.cookiejar
import json
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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
from netanomd.ui.app import UiSettings
from netanomd.ui.auth import Access
from netanomd.ui.server import Background, Listen
from tests.conftest import REPO_DIR
from tests.test_tls import Pki, pki  # noqa: F401 - the fixture


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


def test_config_rules_defaults_and_expiry_in_force(db: Path, tmp_path: Path) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text(
        "- name: nessus\n  host: 192.168.1.0/24\n  behaviour: repeated failed connections\n"
    )
    store = FeedbackStore(db, config_rules=load_rules_file(f))
    names = [r.name for r in store.rules().rules]
    assert names[: len(DEFAULT_RULES)] == [r.name for r in DEFAULT_RULES] and "nessus" in names
    with pytest.raises(InputError, match="a rule of the config file has that name"):
        store.add_rule(rule_from_dict({"name": "nessus", "port": 1}, "t"), "alice")
    rules = store.rules()
    njrat = _incident(db, "192.168.1.115", "repeated failed connections")
    args = (njrat.host, njrat.role, njrat.peer, njrat.port, njrat.proto, njrat.behaviour)
    assert rules.incident_rule(0.0, *args) is not None
    # behaviour does not narrow flows: the scanner's flow alerts go too, anyone else's stay.
    assert rules.flow_rule(0.0, "192.168.1.107", "66.63.168.35", 5888, "tcp", None) is not None
    assert rules.flow_rule(0.0, "10.0.0.9", "66.63.168.35", 5888, "tcp", None) is None
    # An expired rule is out of force; a default switched off too.
    store.add_rule(
        rule_from_dict({"name": "brief", "peer": "66.63.168.35", "expires": 1000.0}, "t"), "alice"
    )
    rules = store.rules()
    assert rules.flow_rule(999.0, "10.0.0.9", "66.63.168.35", 5888, "tcp", None) is not None
    assert rules.flow_rule(1001.0, "10.0.0.9", "66.63.168.35", 5888, "tcp", None) is None
    store.set_default("mdns", False, "alice")
    rules = store.rules()
    assert rules.flow_rule(0.0, "10.0.0.5", "224.0.0.251", 5353, "udp", "dns") is None
    assert rules.flow_rule(0.0, "10.0.0.5", "ff02::fb", 5353, "udp", None) is None
    assert rules.flow_rule(0.0, "10.0.0.5", "239.255.255.250", 1900, "udp", None).name == "ssdp"  # type: ignore[union-attr]
    store.close()


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


@dataclass
class Remote:
    """The page bound beyond loopback (a read-only token and one analyst's), and a client with
    a cookie jar."""

    url: str
    db: Path
    opener: urllib.request.OpenerDirector

    def get(self, path: str, token: str | None = None) -> tuple[int, str, str]:
        """(status, final address, body)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            with self.opener.open(urllib.request.Request(self.url + path, headers=headers)) as r:
                return r.status, r.url, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, path, exc.read().decode()

    def post(self, path: str, form: dict[str, str], token: str | None = None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = urllib.parse.urlencode(form).encode()
        try:
            with self.opener.open(urllib.request.Request(self.url + path, data, headers)) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)


VIEWER, CAROL = "viewer-token-0123456789", "carol-token-0123456789"


@pytest.fixture()
def remote(db: Path) -> Iterator[Remote]:
    access = Access(bind="0.0.0.0", token=VIEWER, analysts={"carol": CAROL})
    settings = UiSettings(db=db, access=access, kibana="https://kibana.example:5601")
    server = Background(settings, Listen("0.0.0.0", 0))
    server.start()
    jar = urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    yield Remote(f"http://127.0.0.1:{server.port}", db, urllib.request.build_opener(jar))
    server.stop()


def test_beyond_loopback_a_token_is_needed(remote: Remote) -> None:
    assert remote.get("/incidents")[0] == 401
    assert remote.get("/api/changes")[0] == 401
    assert remote.get("/incidents", token="nope-nope-nope-nope")[0] == 401
    status, _, body = remote.get("/incidents", token=VIEWER)
    assert status == 200 and "read-only" in body
    # ?token= once: a session cookie, and the token leaves the address.
    status, url, _ = remote.get(f"/model?token={VIEWER}")
    assert status == 200 and url == remote.url + "/model"
    assert remote.get("/rules")[0] == 200  # the cookie
    # The viewer may not act; the analyst may, and the action is recorded under her name.
    inc = query_incidents(remote.db, IncidentQuery(), limit=1).items[0]
    # Its page links the sensor's records to Kibana's Discover.
    _, _, body = remote.get(f"/incident/{inc.incident_id[:8]}")
    uid = urllib.parse.quote(f'zeek.session_id:"{inc.uids[0]}"', safe="")
    assert "https://kibana.example:5601/app/discover#/" in body and uid in body
    assert urllib.parse.quote(f'event.id:"{inc.incident_id}"', safe="") in body
    assert remote.post(f"/incident/{inc.incident_id}/confirm", {"comment": "x"}) == 403
    assert remote.post(f"/incident/{inc.incident_id}/confirm", {"comment": "seen"}, CAROL) == 200
    store = FeedbackStore(remote.db)
    verdict = store.verdict(inc.incident_id)
    store.close()
    assert verdict is not None and (verdict.who, verdict.comment) == ("carol", "seen")


def test_binding_beyond_loopback_without_a_token_is_refused(db: Path) -> None:
    with pytest.raises(ConfigError, match="beyond loopback: give a token"):
        Access(bind="0.0.0.0")
    with pytest.raises(ConfigError, match="analyst dave needs a token"):
        Access(bind="10.1.2.3", token="viewer-token-0123456789", analysts={"dave": None})
    local = Access(bind="127.0.0.1", analysts={"erin": None})
    assert local.role(None) is not None and local.role(None).name == "erin"  # type: ignore[union-attr]


def test_served_over_tls_with_a_certificate(db: Path, pki: Pki) -> None:  # noqa: F811
    access = Access(bind="0.0.0.0", token=VIEWER)
    server = Background(
        UiSettings(db=db, access=access), Listen("0.0.0.0", 0, str(pki.cert), str(pki.key))
    )
    server.start()
    base = f"https://127.0.0.1:{server.port}"
    trusted = ssl.create_default_context(cafile=str(pki.ca))
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "/incidents", context=trusted, timeout=10)
        assert refused.value.code == 401
        # ?token= sets a cookie marked Secure over https.
        no_redirect = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=trusted), _NoRedirect()
        )
        with pytest.raises(urllib.error.HTTPError) as moved:
            no_redirect.open(base + f"/incidents?token={VIEWER}", timeout=10)
        assert moved.value.code == 303
        cookie = moved.value.headers["set-cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        req = urllib.request.Request(
            base + "/incidents", headers={"Authorization": f"Bearer {VIEWER}"}
        )
        with urllib.request.urlopen(req, context=trusted, timeout=10) as r:
            assert r.status == 200 and "192.168.1.107" in r.read().decode()
        # Plain HTTP on the TLS port gets no page.
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/incidents", timeout=2).read()
    finally:
        server.stop()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_config_check_refuses_the_page_beyond_loopback_without_a_token() -> None:
    """``ui:`` bound beyond loopback needs a token (or analysts' tokens); TLS files in pairs:
    `config check` says so before the daemon is started."""
    from tests.test_http_endpoint import config_check

    wide = ["ui.enabled=true", "ui.listen=0.0.0.0:8765"]
    code, err = config_check(*wide)
    assert code == 2 and "ui.listen" in err and "needs token_file or analysts_file" in err
    assert config_check(*wide, "ui.token_file=/etc/netanomd/ui.token")[0] == 0
    assert config_check(*wide, "ui.analysts_file=/etc/netanomd/analysts")[0] == 0
    assert config_check("ui.enabled=true", "ui.listen=127.0.0.1:8765")[0] == 0
    code, err = config_check("ui.enabled=true", "ui.tls_cert=/etc/netanomd/cert.pem")
    assert code == 2 and "tls_cert: given without tls_key" in err
