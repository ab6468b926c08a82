"""The sensor daemon with real components: Suricata 7 reading pcaps into the daemon's unix
socket and into a real redis-server list, a followed Zeek conn.log across rotation and a
restart, sd_notify datagrams on a bound socket, reload with a corrupt and a good model,
SIGTERM with 10,000 flows in flight, metrics, health and the scoring API."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netanomd.daemon.dedup import Deduplicator
from netanomd.daemon.score_api import records_from_json, score_json
from netanomd.daemon.service import Daemon
from netanomd.data import attack_files, demo_model
from netanomd.detectors.registry import make
from netanomd.flow import FlowBatch, FlowRecord, Signature
from netanomd.model import train
from netanomd.sdnotify import Notifier
from netanomd.sources.files import open_source
from tests.conftest import free_port
from tests.waiting import wait

PCAPS = Path(__file__).parent / "data" / "pcaps"
SURICATA = shutil.which("suricata") or "/usr/bin/suricata"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.npz"
    demo_model().save(path)
    return path


def write_config(tmp: Path, model_file: Path, sources: list[dict[str, Any]], **extra: Any) -> Path:
    cfg: dict[str, Any] = {
        "model": {"path": str(model_file), "reload_check_seconds": 0},
        "sources": sources,
        "pipeline": {"batch_size": 500, "batch_timeout_ms": 50},
        "sinks": {
            "sqlite": {"path": str(tmp / "alerts.db")},
            "metrics": {"listen": f"127.0.0.1:{free_port()}"},
            "zeek_notice": {"enabled": False},
        },
        "state_dir": str(tmp / "state"),
    }
    for key, value in extra.items():
        cfg.setdefault(key, {}).update(value) if isinstance(value, dict) else cfg.update(
            {key: value}
        )
    path = tmp / "netanomd.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def suricata(tmp: Path, pcap: Path, eve: dict[str, Any]) -> None:
    conf = tmp / f"suricata-{eve['filetype']}.yaml"
    conf.write_text(
        "%YAML 1.1\n---\n"
        + json.dumps(
            {
                "vars": {
                    "address-groups": {
                        "HOME_NET": "[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]",
                        "EXTERNAL_NET": "!$HOME_NET",
                    },
                    "port-groups": {"HTTP_PORTS": "80"},
                },
                "outputs": [
                    {"eve-log": {"enabled": True, "community-id": True, "types": ["flow"], **eve}}
                ],
                "logging": {
                    "default-log-level": "warning",
                    "outputs": [{"console": {"enabled": True}}],
                },
            }
        )
    )
    logdir = tmp / f"suricata-log-{eve['filetype']}"
    logdir.mkdir(exist_ok=True)
    out = subprocess.run(
        [
            SURICATA,
            "-r",
            str(pcap),
            "-c",
            str(conf),
            "-l",
            str(logdir),
            "-S",
            "/dev/null",
            "-k",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def eve_flow_count(tmp: Path, pcap: Path) -> int:
    suricata(tmp, pcap, {"filetype": "regular", "filename": "eve.json"})
    lines = (tmp / "suricata-log-regular" / "eve.json").read_text().splitlines()
    (tmp / "suricata-log-regular" / "eve.json").unlink()
    return sum(json.loads(x)["event_type"] == "flow" for x in lines)


def alert_count(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return int(con.execute("select count(*) from alerts").fetchone()[0])


@pytest.mark.parametrize("kind", ["dgram", "stream"])
def test_suricata_socket_and_redis_into_sqlite(
    tmp_path: Path, model_path: Path, redis_url: str, kind: str
) -> None:
    pcap = PCAPS / "ftp_bruteforce.pcap"
    expected = eve_flow_count(tmp_path, pcap)
    assert expected >= 20
    sock = tmp_path / "eve.sock"
    cfg = write_config(
        tmp_path,
        model_path,
        [
            {"type": "suricata_socket", "path": str(sock), "kind": kind},
            {"type": "redis", "url": redis_url, "key": "suricata"},
        ],
        model={"threshold": 0.0},  # every flow alerts: each one must reach SQLite
        pipeline={"dedup_community_id": False},
    )
    d = Daemon(str(cfg), notifier=Notifier(env={}))
    d.start()
    try:
        assert d.health()["ready"]
        suricata(tmp_path, pcap, {"filetype": f"unix_{kind}", "filename": str(sock)})
        p = d.pipeline
        assert p is not None
        wait(lambda: p.stats.received.get("suricata_socket[0]", 0) == expected, 30, "socket")
        port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
        suricata(
            tmp_path,
            pcap,
            {
                "filetype": "redis",
                "redis": {"server": "127.0.0.1", "port": port, "mode": "list", "key": "suricata"},
            },
        )
        wait(lambda: p.stats.received.get("redis[1]", 0) == expected, 30, "redis")
        wait(lambda: p.stats.scored == 2 * expected and p.queued == 0, 30, "scoring")
    finally:
        assert d.shutdown() == 0
    assert alert_count(tmp_path / "alerts.db") == 2 * expected


def tsv_header() -> bytes:
    path = next(p for p in attack_files() if "remcos" in p.name)
    with gzip.open(path) as fh:
        return b"".join(line for line in fh if line.startswith(b"#") and b"#close" not in line)


def tsv_rows() -> list[bytes]:
    path = next(p for p in attack_files() if "remcos" in p.name)
    with gzip.open(path) as fh:
        return [line for line in fh if not line.startswith(b"#")]


def test_follow_across_rotation_and_restart(tmp_path: Path, model_path: Path) -> None:
    """Every flow scored exactly once although the log rotates and the daemon restarts twice
    (once while the file is being written, once across a rotation it did not see)."""
    rows = tsv_rows()
    uids = [r.split(b"\t")[1].decode() for r in rows]
    log = tmp_path / "conn.log"
    log.write_bytes(tsv_header() + b"".join(rows[:100]))
    cfg = write_config(
        tmp_path, model_path, [{"type": "zeek_log", "path": str(log), "from_start": True}]
    )
    seen: list[str] = []

    def start() -> Daemon:
        d = Daemon(str(cfg), notifier=Notifier(env={}))
        d.start()
        assert d.pipeline is not None
        inner = d.pipeline.on_batch

        def record(batch: FlowBatch, *rest: Any) -> None:
            seen.extend(batch.column("uid").to_pylist())
            if inner is not None:
                inner(batch, *rest)

        d.pipeline.on_batch = record
        return d

    d = start()
    wait(lambda: len(seen) == 100, what="first 100")
    with log.open("ab") as fh:
        fh.write(b"".join(rows[100:300]))
    wait(lambda: len(seen) == 300, what="appended 200")
    log.rename(tmp_path / "conn.1.log")  # Zeek-style rotation: rename, then a new file
    log.write_bytes(tsv_header() + b"".join(rows[300:400]))
    wait(lambda: len(seen) == 400, what="after rotation")
    assert d.shutdown() == 0
    # While the daemon is down: the current file grows, then rotates again.
    with log.open("ab") as fh:
        fh.write(b"".join(rows[400:500]))
    log.rename(tmp_path / "conn.2.log")
    log.write_bytes(tsv_header() + b"".join(rows[500:600]))
    d = start()
    wait(lambda: len(seen) == 600, what="resume after restart")
    with log.open("ab") as fh:
        fh.write(b"".join(rows[600:]))
    wait(lambda: len(seen) == len(rows), what="the rest")
    assert d.shutdown() == 0
    assert seen == uids  # in order, none twice, none missing


def test_metrics_health_and_score_api(tmp_path: Path, model_path: Path) -> None:
    log = tmp_path / "conn.log"
    rows = tsv_rows()
    log.write_bytes(tsv_header() + b"".join(rows))
    cfg = write_config(
        tmp_path, model_path, [{"type": "zeek_log", "path": str(log), "from_start": True}]
    )
    d = Daemon(str(cfg), notifier=Notifier(env={}))
    d.start()
    try:
        assert d.server is not None and d.pipeline is not None
        base = f"http://127.0.0.1:{d.server.port}"
        wait(lambda: d.pipeline is not None and d.pipeline.stats.scored == len(rows))
        health = json.loads(urllib.request.urlopen(base + "/healthz").read())
        assert health["ready"] and health["model"] == d.pipeline.model.model_id
        metrics = urllib.request.urlopen(base + "/metrics").read().decode()
        assert f"netanomd_flows_scored_total {float(len(rows))}" in metrics
        assert 'netanomd_flows_received_total{source="zeek_log[0]:conn.log"} 766.0' in metrics
        assert "netanomd_batch_latency_seconds_bucket" in metrics
        assert f"netanomd_score_count {float(len(rows))}" in metrics
        assert f'netanomd_model_info{{model_id="{d.pipeline.model.model_id}"}} 1.0' in metrics
        flows = [
            {
                "uid": "Ctest1",
                "id.orig_h": "192.168.1.115",
                "id.orig_p": 60072,
                "id.resp_h": "41.108.179.197",
                "id.resp_p": 1177,
                "proto": "tcp",
                "conn_state": "S0",
                "history": "S",
                "orig_pkts": 1,
                "orig_ip_bytes": 48,
                "resp_pkts": 0,
                "resp_ip_bytes": 0,
                "duration": 0.0,
            },
            {
                "uid": "Ctest2",
                "id.orig_h": "192.168.1.20",
                "id.orig_p": 50000,
                "id.resp_h": "192.168.1.1",
                "id.resp_p": 53,
                "proto": "udp",
                "service": "dns",
                "conn_state": "SF",
                "history": "Dd",
                "orig_pkts": 1,
                "orig_ip_bytes": 72,
                "resp_pkts": 1,
                "resp_ip_bytes": 120,
                "duration": 0.01,
                "orig_bytes": 44,
                "resp_bytes": 92,
            },
        ]
        req = urllib.request.Request(
            base + "/v1/score",
            data=json.dumps(flows).encode(),
            headers={"Content-Type": "application/json"},
        )
        out = json.loads(urllib.request.urlopen(req).read())
        assert [o["uid"] for o in out] == ["Ctest1", "Ctest2"]
        assert out[0]["verdict"] == "anomalous"
        assert out[0]["reason"].startswith("1177/tcp: lone SYN, no reply; ")
        assert all(isinstance(o["incidents"], list) for o in out)
        assert out[0]["explanation"] and out[1]["verdict"] == "normal"
        bad = urllib.request.Request(base + "/v1/score", data=b'[{"uid": 1}]')
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad)
        assert err.value.code == 400
    finally:
        d.shutdown()


def test_score_api_scores_like_a_fresh_stream_with_host_floors(data_dir: Path) -> None:
    """POST /v1/score sees each request as a new stream, so every host is in a quiet spell:
    scored with the model's one-sided floors, as the daemon's stream would score it."""
    mirai = data_dir / "zeek" / "iot23-44-1.csv"
    # k-means: a distance sees floored values (an Isolation Forest fitted on floored columns
    # sends anything below a floor down the same branches as the floor itself).
    model = train([read_all(mirai)], detector=make("kmeans"), vetted=True)
    assert model.floors.columns
    flows = [
        {k: v for k, v in r.to_dict().items() if v is not None}
        for r in read_all(mirai).slice(100, 10).records()
    ]
    out = score_json(model, None, flows)
    model.reset()
    batch = FlowBatch.from_records(records_from_json(flows))
    np.testing.assert_allclose([o["score"] for o in out], model.score(batch))
    model.reset()
    unfloored = model.detector.score(model.spec.transform(batch))
    assert not np.allclose([o["score"] for o in out], unfloored)


def read_all(path: Path) -> FlowBatch:
    return FlowBatch.concat(list(open_source(str(path)).batches()))


@pytest.mark.parametrize(
    ("flow", "error"),
    [
        (
            {"ts": "yesterday"},
            "[0].ts: expected epoch seconds or an ISO 8601 time, got 'yesterday'",
        ),
        ({"duration": "1.5"}, "[0].duration: expected a number, got '1.5'"),
        ({"id.resp_p": 70000}, "[0].id.resp_p: expected an integer from 0 to 65535, got 70000"),
        ({"orig_bytes": -1}, "[0].orig_bytes: expected an integer from 0 to"),
        ({"orig_pkts": True}, "[0].orig_pkts: expected an integer"),
        ({"local_orig": "T"}, "[0].local_orig: expected true or false, got 'T'"),
        ({"proto": 6}, "[0].proto: expected a string, got 6"),
        ({"orig_bytes": 10**400}, "[0].orig_bytes: expected an integer from 0 to"),
        ({"duration": 10**400}, "[0].duration: expected a number, got 1000"),
        ({"ts": 1547150789933}, "[0].ts: 1547150789933 is not epoch seconds (milliseconds"),
    ],
)
def test_score_api_names_the_bad_field(flow: dict[str, Any], error: str) -> None:
    base = {"id.orig_h": "10.0.0.1", "id.resp_h": "10.0.0.2", "proto": "tcp"}
    with pytest.raises(ValueError) as exc:
        records_from_json([base | flow])
    assert str(exc.value).startswith(error)


def test_score_api_takes_zeek_iso8601_times() -> None:
    flow = {"ts": "2019-01-10T20:06:29.933860Z", "id.orig_h": "10.0.0.1", "id.resp_h": "10.0.0.2"}
    assert records_from_json(flow | {"proto": "udp"})[0].ts == pytest.approx(1547150789.93386)


def test_score_api_takes_zeek_json_log_lines(data_dir: Path) -> None:
    """`head -3 conn.log | curl --data-binary @- .../v1/score`: Zeek's JSON log is NDJSON."""
    from netanomd.daemon.score_api import parse_body

    lines = (data_dir / "zeek/ssh_sshguess.json.conn.log").read_bytes().splitlines()[:3]
    flows = parse_body(b"\n".join(lines) + b"\n")
    assert [f["uid"] for f in flows] == [json.loads(x)["uid"] for x in lines]
    answers = score_json(demo_model(), None, flows)
    assert [a["uid"] for a in answers] == [f["uid"] for f in flows]
    with pytest.raises(ValueError, match="line 2: "):
        parse_body(lines[0] + b"\n{not json\n")


class NotifyListener:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def pump(self) -> None:
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
        except TimeoutError:
            pass

    def wait_for(self, prefix: str, timeout: float = 30.0, after: int = 0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            for i, m in enumerate(self.messages[after:], after):
                if m.startswith(prefix):
                    return i
        raise AssertionError(f"no {prefix!r} in {self.messages[after:]}")


def test_systemd_lifecycle_reload_and_sigterm_with_flows_in_flight(
    tmp_path: Path, model_path: Path
) -> None:
    """A real `netanomd run` process: READY, WATCHDOG, STATUS; `netanomd reload` (ExecReload)
    with a corrupt model fails and the old one keeps running, with a good one it returns 0
    once the new model is in use; SIGTERM with 10,000 flows queued delivers them
    all and exits 0 with STOPPING."""
    live = tmp_path / "live.npz"
    shutil.copy(model_path, live)
    log = tmp_path / "conn.log"
    log.write_bytes(tsv_header())
    cfg = write_config(
        tmp_path,
        live,
        [{"type": "zeek_log", "path": str(log)}],
        model={"threshold": 0.0},
        pipeline={"batch_size": 100, "batch_timeout_ms": 1, "dedup_community_id": False},
    )
    listener = NotifyListener(tmp_path / "notify.sock")
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": "1000000",
        "NETANOMD_LOG_LEVEL": "info",
    }
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "netanomd", "run", "-c", str(cfg)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        listener.wait_for("READY=1")
        listener.wait_for("WATCHDOG=1")
        port = json.loads(cfg.read_text())["sinks"]["metrics"]["listen"].rsplit(":", 1)[1]

        def model_id() -> str:
            h = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read())
            return str(h["model"])

        first = model_id()

        def reload() -> subprocess.CompletedProcess[str]:
            """What systemctl reload runs (ExecReload): returns once the daemon has acted.
            The notifications are read meanwhile, as systemd would (the daemon's sends block
            once the listener's queue of 10 datagrams is full)."""
            args = ["reload", "-c", str(cfg), "--pid", str(proc.pid), "--timeout", "30"]
            cmd = subprocess.Popen(
                [sys.executable, "-m", "netanomd", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            while cmd.poll() is None:
                listener.pump()
            out, err = cmd.communicate()
            return subprocess.CompletedProcess(cmd.args, cmd.returncode, out, err)

        live.write_bytes(b"PK\x03\x04 not a model")  # corrupt
        n = len(listener.messages)
        r = reload()
        assert r.returncode == 1, r.stderr
        assert f"reload refused, still running {first}: model {live} rejected" in r.stderr
        i = listener.wait_for("RELOADING=1", after=n)
        assert "MONOTONIC_USEC=" in listener.messages[i]
        listener.wait_for("READY=1", after=i)
        assert model_id() == first and proc.poll() is None
        demo_model(seed=7).save(live)
        n = len(listener.messages)
        r = reload()
        assert r.returncode == 0, r.stderr
        assert model_id() != first and r.stdout == f"reloaded: model {model_id()}\n"
        listener.wait_for("READY=1", after=listener.wait_for("RELOADING=1", after=n))
        rows = tsv_rows()
        many = (rows * 14)[:10_000]
        many = [r.replace(r.split(b"\t")[1], f"Cflight{i}".encode(), 1) for i, r in enumerate(many)]
        with log.open("ab") as fh:
            fh.write(b"".join(many))
        time.sleep(0.5)  # the follower has queued them; scoring is under way
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
        listener.wait_for("STOPPING=1")
        listener.wait_for("STATUS=", timeout=1)
    finally:
        proc.kill()
    assert alert_count(tmp_path / "alerts.db") == 10_000  # every in-flight flow delivered


def test_stalled_pipeline_stops_watchdog(tmp_path: Path, model_path: Path) -> None:
    log = tmp_path / "conn.log"
    log.write_bytes(tsv_header())
    cfg = write_config(tmp_path, model_path, [{"type": "zeek_log", "path": str(log)}])
    sent: list[str] = []

    class Sock:
        def sendto(self, data: bytes, *flags_and_address: object) -> None:
            sent.append(data.decode())

        def close(self) -> None:
            pass

    notifier = Notifier(
        env={"NOTIFY_SOCKET": "@test", "WATCHDOG_USEC": "400000"}, socket_factory=lambda: Sock()
    )  # type: ignore[arg-type,return-value]
    d = Daemon(str(cfg), notifier=notifier)
    t = threading.Thread(target=d.serve, kwargs={"install_signals": False}, daemon=True)
    t.start()
    wait(lambda: sent.count("WATCHDOG=1") >= 3, 10, "watchdog pings")
    assert d.pipeline is not None
    gate = threading.Event()

    class Stuck:
        name = "stuck"

        def open(self) -> None: ...

        def write(self, alerts: Any) -> None:
            gate.wait(30)

        def flush(self) -> None: ...

        def close(self, timeout: float = 30.0) -> bool:
            return True

    d.pipeline.sinks.add(Stuck())
    with log.open("ab") as fh:
        fh.write(b"".join(tsv_rows()[:10]))
    # Scoring is stuck in the sink. The loop's last turn is when it took the batch (after the
    # follower's poll and the batch timeout), so wait until that is older than the daemon's
    # stall limit (2 s here) and a ping interval more, rather than a fixed time after the write.
    assert d.pipeline is not None
    pipeline = d.pipeline
    wait(lambda: time.monotonic() - pipeline.heartbeat > 2.5, 15, "the loop stalled")
    before = sent.count("WATCHDOG=1")
    time.sleep(1.5)
    assert sent.count("WATCHDOG=1") == before  # no pings while stalled
    gate.set()
    wait(lambda: sent.count("WATCHDOG=1") > before, 10, "pings resume")
    d.request_stop()
    t.join(30)
    assert "STOPPING=1" in sent and np.all([s for s in sent])


def test_grafana_dashboard_uses_only_exported_metrics(tmp_path: Path, model_path: Path) -> None:
    """Every metric the dashboard queries is one the running daemon exports."""
    import re

    dash = json.loads(
        (Path(__file__).parent.parent / "grafana/netanomd-dashboard.json").read_text()
    )
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"] if "expr" in t]  # PromQL
    wanted = set(re.findall(r"netanomd_[a-z_]+", " ".join(exprs)))
    log = tmp_path / "conn.log"
    log.write_bytes(tsv_header() + b"".join(tsv_rows()[:50]))
    cfg = write_config(
        tmp_path,
        model_path,
        [{"type": "zeek_log", "path": str(log), "from_start": True}],
        sinks={"elasticsearch": {"enabled": True, "hosts": ["http://127.0.0.1:9"]}},
    )
    d = Daemon(str(cfg), notifier=Notifier(env={}))
    d.start()
    try:
        assert d.server is not None
        wait(lambda: d.pipeline is not None and d.pipeline.stats.scored == 50)
        text = urllib.request.urlopen(f"http://127.0.0.1:{d.server.port}/metrics").read()
    finally:
        d.shutdown_timeout = 2
        d.shutdown()
    exported = set(re.findall(r"^# TYPE (\S+)", text.decode(), re.M))
    exported |= {f"{m}_total" for m in exported} | {
        f"{m}_{s}" for m in exported for s in ("bucket", "count", "sum", "info")
    }
    assert wanted and wanted <= exported, wanted - exported


def test_reload_without_a_daemon_answering_fails(tmp_path: Path, model_path: Path) -> None:
    """`netanomd reload` fails (exit 2, saying why) when the pid is not the daemon of this
    state_dir or exits; it never reports success it did not get."""
    cfg = write_config(tmp_path, model_path, [{"type": "zeek_log", "path": str(tmp_path / "x")}])
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        r = subprocess.run(
            [sys.executable, "-m", "netanomd", "reload", "-c", str(cfg), "--pid", str(sleeper.pid)],
            capture_output=True,
            text=True,
        )
    finally:
        sleeper.kill()
    assert r.returncode == 2
    assert f"no reload answer from pid {sleeper.pid} (no such file)" in r.stderr


def test_source_that_cannot_open_fails_the_start(tmp_path: Path, model_path: Path) -> None:
    """A Suricata socket in a directory that does not exist: `netanomd run` exits non-zero
    naming the source and the cause, and never tells systemd READY=1."""
    sock = tmp_path / "missing-dir" / "eve.sock"
    cfg = write_config(
        tmp_path, model_path, [{"type": "suricata_socket", "path": str(sock), "kind": "dgram"}]
    )
    listener = NotifyListener(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    r = subprocess.run(
        [sys.executable, "-m", "netanomd", "run", "-c", str(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    listener.pump()
    assert r.returncode == 2
    assert "error: source suricata_socket[0]" in r.stderr and "failed to start" in r.stderr
    assert "No such file or directory" in r.stderr
    assert not any(m.startswith("READY=1") for m in listener.messages), listener.messages


def test_daemon_starts_without_matplotlib() -> None:
    """`netanomd run` loads every command's parser and the daemon: none may import
    matplotlib (it writes font caches into the state directory on start)."""
    code = (
        "import sys; from netanomd import cli; cli.build_parser();"
        "import netanomd.daemon.service;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "[]\n"


def test_a_connection_both_sensors_saw_keeps_suricatas_signatures_and_flow_id() -> None:
    """Zeek's record of a connection is kept over Suricata's; what only Suricata knew (its
    flow id and the signatures that fired on the flow) moves onto it, so the alert names them."""
    sig = Signature("ET SCAN Potential SSH Scan", 2001219, 2, "Attempted Information Leak")
    common = dict(orig_h="10.0.0.5", orig_p=40000, resp_h="10.0.0.9", resp_p=22, proto="tcp")
    zeek = FlowRecord(ts=100.0, uid="Cz1", community_id="1:abc=", source="zeek", **common)  # type: ignore[arg-type]
    suri = FlowRecord(
        ts=100.4,
        uid="S77",
        community_id="1:abc=",
        source="suricata",
        flow_id=77,
        signatures=(sig,),
        **common,  # type: ignore[arg-type]
    )
    other = FlowRecord(ts=101.0, uid="Cz2", community_id="1:def=", source="zeek", **common)  # type: ignore[arg-type]
    kept, dropped = Deduplicator(120.0).apply(FlowBatch.from_records([suri, zeek, other]), 0.0)
    assert dropped == 1 and len(kept) == 2
    first = kept.record(0)
    assert (first.uid, first.flow_id, first.source) == ("Cz1", 77, "zeek")
    assert first.signatures == (sig,)
    assert kept.record(1).signatures is None and kept.record(1).flow_id is None
