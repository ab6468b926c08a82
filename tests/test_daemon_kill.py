"""Real `netanomd run` processes under the faults a sensor meets: SIGKILL at random points while
a Zeek log grows (no flow missed, none stored twice), and a full disk on a tmpfs the test mounts
(scoring holds back, says so in /healthz, and resumes by itself once space is freed)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.test_daemon import model_path, tsv_header, tsv_rows, write_config
from tests.waiting import wait

__all__ = ["model_path"]  # the fixture, shared with test_daemon


def start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "netanomd", "run", "-c", str(cfg)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "NETANOMD_LOG_LEVEL": "info"},
    )


def stored(db: Path) -> list[str]:
    """The uids of the alerts a daemon's SQLite sink has committed (none before its schema is
    there: the file exists a moment before its tables do)."""
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=30) as con:
        try:
            return [r[0] for r in con.execute("SELECT uid FROM alerts")]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise


def committed(state: Path, log: Path) -> int:
    try:
        return int(json.loads((state / "offsets.json").read_text())[str(log)]["offset"])
    except (OSError, ValueError, KeyError):
        return -1


def test_sigkill_at_random_points_loses_nothing(tmp_path: Path, model_path: Path) -> None:
    rows = tsv_rows()
    log = tmp_path / "conn.log"
    log.write_bytes(tsv_header())
    cfg = write_config(
        tmp_path,
        model_path,
        [{"type": "zeek_log", "path": str(log), "from_start": True}],
        model={"threshold": 0.0},  # every flow is stored: SQLite holds what was scored
        pipeline={"batch_size": 20, "batch_timeout_ms": 5},
    )
    out = tmp_path / "daemon.log"
    rng = random.Random(7)
    written = 0
    kills = 0
    proc = start(cfg, out)
    try:
        while written < len(rows):
            n = rng.randint(20, 120)
            with log.open("ab") as fh:
                fh.write(b"".join(rows[written : written + n]))
            written = min(written + n, len(rows))
            time.sleep(rng.uniform(0.0, 0.4))
            if rng.random() < 0.5:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                kills += 1
                proc = start(cfg, out)
        wait(lambda: committed(tmp_path / "state", log) == log.stat().st_size, 60, "all read")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, out.read_text()[-3000:]
    uids = stored(tmp_path / "alerts.db")
    expected = [r.split(b"\t")[1].decode() for r in rows]
    assert kills >= 3
    assert len(uids) == len(set(uids))  # none stored twice
    assert sorted(uids) == sorted(expected)  # none missed


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        r = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
        return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def test_full_disk_holds_back_and_resumes(tmp_path: Path, model_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    try:
        rows = tsv_rows()
        log = tmp_path / "conn.log"
        log.write_bytes(tsv_header() + b"".join(rows[:100]))
        cfg = write_config(
            tmp_path,
            model_path,
            [{"type": "zeek_log", "path": str(log), "from_start": True}],
            model={"threshold": 0.0},
            sinks={"sqlite": {"path": str(disk / "alerts.db")}},
            state_dir=str(disk / "state"),
        )
        port = json.loads(cfg.read_text())["sinks"]["metrics"]["listen"].rsplit(":", 1)[1]
        out = tmp_path / "daemon.log"
        proc = start(cfg, out)
        try:
            wait(lambda: len(stored(disk / "alerts.db")) == 100, 60, "first 100 stored")
            filler = disk / "filler"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
            try:  # fill the disk to the last byte
                while os.write(fd, bytes(4096)):
                    pass
            except OSError:
                pass
            finally:
                os.close(fd)
            with log.open("ab") as fh:
                fh.write(b"".join(rows[100:]))
            wait(lambda: healthz(int(port))[0] == 503, 60, "health says it cannot write")
            _, health = healthz(int(port))
            assert any("cannot write" in p for p in health["problems"]), health
            assert committed(disk / "state", log) < log.stat().st_size  # held back
            filler.unlink()  # space freed
            wait(lambda: len(stored(disk / "alerts.db")) == len(rows), 90, "resumed by itself")
            wait(lambda: healthz(int(port))[0] == 200, 30, "ready again")
            wait(lambda: committed(disk / "state", log) == log.stat().st_size, 30, "committed")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, out.read_text()[-3000:]
        uids = stored(disk / "alerts.db")
        assert len(uids) == len(set(uids)) == len(rows)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
