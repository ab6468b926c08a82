"""Several real `netanomd run` daemons sharing one Redis list (a real redis-server), one of them
SIGKILLed while it holds records: every flow is scored at least once (the union of the daemons'
SQLite databases) and Elasticsearch (the in-repo test server) holds each alert once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.es_server import FakeElasticsearch
from tests.test_daemon import model_path, write_config
from tests.test_daemon_kill import start, stored
from tests.waiting import wait

__all__ = ["model_path"]  # the fixture, shared with test_daemon

EVE_DIR = Path(__file__).parent / "data" / "eve"
ALERTS = "logs-netanomd.alert-default"
KEY = "suricata"


def eve_flow_records(copies: int) -> list[bytes]:
    """The flow events of the EVE captures in tests/data/eve, replayed ``copies`` times as
    distinct flows (each replay's ``flow_id`` shifted by a multiple of 2**40)."""
    seen: dict[int, dict[str, Any]] = {}
    for path in sorted(EVE_DIR.glob("*.json")):
        for line in path.read_bytes().splitlines():
            rec = json.loads(line)
            if rec.get("event_type") == "flow":
                seen.setdefault(int(rec["flow_id"]), rec)
    out = []
    for k in range(copies):
        for fid, rec in seen.items():
            out.append(json.dumps({**rec, "flow_id": fid + (k << 40)}).encode())
    return out


def uids_in(db: Path) -> set[str]:
    return set(stored(db))


def stopped(pid: int) -> bool:
    """Every thread of ``pid`` is stopped by a signal (state T in /proc)."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        except FileNotFoundError:
            continue
    return bool(states) and all(s == "T" for s in states)


def daemon_config(tmp: Path, model: Path, redis_url: str, es_port: int, name: str) -> Path:
    home = tmp / name
    home.mkdir()
    source = {
        "type": "redis",
        "url": redis_url,
        "key": KEY,
        "consumer": name,
        "heartbeat_seconds": 1.5,
        "batch_lines": 40,
    }
    return write_config(
        home,
        model,
        [source],
        model={"threshold": 0.0},  # every flow is an alert: SQLite and ES hold what was scored
        pipeline={"batch_size": 20, "batch_timeout_ms": 5},
        sinks={"elasticsearch": {"enabled": True, "hosts": [f"http://127.0.0.1:{es_port}"]}},
    )


def run_shared_list(
    tmp: Path, model: Path, redis_url: str, es: FakeElasticsearch, daemons: int, *, restart: bool
) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    records = eve_flow_records(copies=12)
    expected = {"S" + str(json.loads(r)["flow_id"]) for r in records}
    names = [f"d{i}" for i in range(daemons)]
    cfgs = {n: daemon_config(tmp, model, redis_url, es.port, n) for n in names}
    setup = [sys.executable, "-m", "netanomd", "es", "setup", "-c", str(cfgs[names[0]])]
    subprocess.run(setup, check=True, capture_output=True, timeout=120)
    procs = {n: start(cfgs[n], tmp / n / "daemon.log") for n in names}
    victim = names[-1]
    held_at_kill = 0
    plist = f"{KEY}:processing:{victim}"
    try:
        wait(lambda: len(client.hgetall(f"{KEY}:consumers")) == daemons, 60, "all registered")
        killed = False

        def kill_if_holding() -> bool:
            """SIGKILL the victim while it holds records it has not acknowledged. It is frozen
            (SIGSTOP) first, so it cannot acknowledge between the look and the kill; when it holds
            nothing it is let go on (SIGCONT)."""
            nonlocal killed, held_at_kill
            proc = procs[victim]
            proc.send_signal(signal.SIGSTOP)
            wait(lambda: stopped(proc.pid), 10, "the victim frozen")
            held = int(client.llen(plist))
            if held == 0:
                proc.send_signal(signal.SIGCONT)
                return False
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            killed, held_at_kill = True, held
            return True

        for i in range(0, len(records), 25):
            client.lpush(KEY, *records[i : i + 25])  # what Suricata's `mode: list` does
            time.sleep(0.01)
            if not killed and i > len(records) // 3:
                kill_if_holding()  # checked while the records keep coming, never waited on
        if not killed:
            wait(kill_if_holding, 30, "the victim holding records")
        if restart:  # as systemd would: it drains its Elasticsearch spool
            beat = f"{KEY}:consumer:{victim}"
            before = client.get(beat)
            procs[victim] = start(cfgs[victim], tmp / victim / "daemon.log")
            # Its source registers once the daemon has started (a new heartbeat token).
            wait(lambda: client.get(beat) not in (None, before), 60, "the victim back")

        def all_scored() -> bool:
            return set().union(*(uids_in(tmp / n / "alerts.db") for n in names)) >= expected

        wait(all_scored, 180, "every flow scored")
        assert held_at_kill > 0
        wait(lambda: client.llen(KEY) == 0, 30, "the shared list empty")
        alive = names if restart else names[:-1]
        plists = [f"{KEY}:processing:{n}" for n in alive]
        wait(lambda: all(client.llen(p) == 0 for p in plists), 30, "every batch acknowledged")
        if restart:
            wait(lambda: len(es.docs.get(ALERTS, {})) >= len(expected), 120, "all in ES")
        else:
            wait(lambda: client.hget(f"{KEY}:consumers", victim) is None, 30, "victim recovered")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for n, p in procs.items():
            code = p.wait(60)
            assert code in (0, -signal.SIGKILL), (tmp / n / "daemon.log").read_text()[-3000:]
    per_daemon = [uids_in(tmp / n / "alerts.db") for n in names]
    assert set().union(*per_daemon) == expected  # none lost
    # The work was shared: the victim took records (held_at_kill > 0 above) and every other
    # daemon wrote alerts (a victim killed before its first write and restarted after the list
    # drained may have written none). Only what the victim held can have been scored twice.
    assert all(per_daemon[:-1])
    assert sum(map(len, per_daemon)) <= len(expected) + held_at_kill
    assert max(es.creates.values()) == 1  # no alert twice in Elasticsearch
    print(
        f"{daemons} daemons, {len(expected)} flows: scored {[len(u) for u in per_daemon]}, "
        f"{held_at_kill} held by the victim at SIGKILL, {len(es.docs[ALERTS])} alerts in ES"
    )
    if restart:
        assert len(es.docs[ALERTS]) == len(expected)


@pytest.mark.parametrize(("daemons", "restart"), [(2, False), (3, True)])
def test_daemons_share_one_list_and_survive_a_kill(
    tmp_path: Path,
    model_path: Path,
    redis_url: str,
    es: FakeElasticsearch,
    daemons: int,
    restart: bool,
) -> None:
    run_shared_list(tmp_path, model_path, redis_url, es, daemons, restart=restart)
