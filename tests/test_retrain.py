"""``netanomd retrain`` with real models, a Zeek log archive, a running daemon and its
reservoir: a candidate trained on two benign half days is promoted, the daemon follows the
store's pointer without a gap in scoring, and ``model rollback`` takes it back; a candidate
that silences an open incident or blows the budget is refused with the reason."""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from netanomd.behaviour.incidents import Incident
from netanomd.cli import main
from netanomd.commands.retrain import benign_batch, open_incidents
from netanomd.daemon.service import Daemon
from netanomd.data import attack_files, baseline_files, demo_model
from netanomd.errors import InputError
from netanomd.feedback.store import open_store
from netanomd.flow import FlowBatch
from netanomd.model.reservoir import Reservoir, day_files, read_day
from netanomd.model.store import ModelStore
from netanomd.sdnotify import Notifier
from netanomd.sinks.incident_ids import IncidentIds
from netanomd.sinks.sqlite import SQLiteSink
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches
from netanomd.store.read import incident as stored_incident
from tests.conftest import free_port
from tests.waiting import wait

DAY1, DAY2 = "2026-11-29", "2026-11-30"


def split_log(path: Path) -> tuple[list[bytes], list[bytes]]:
    """(header lines without #close, data rows) of a gzipped Zeek TSV conn.log."""
    with gzip.open(path) as fh:
        raw = fh.read().splitlines(keepends=True)
    head = [x for x in raw if x.startswith(b"#") and not x.startswith(b"#close")]
    return head, [x for x in raw if not x.startswith(b"#")]


def archive(root: Path, *, attack: bool = False) -> Path:
    """A Zeek log archive: the benign day's first half on DAY1, its second half on DAY2 (with
    the RemcosRAT capture rotated in when ``attack``)."""
    head, rows = split_log(baseline_files()[0])
    half = len(rows) // 2
    logs = root / "logs"
    for day, part in ((DAY1, rows[:half]), (DAY2, rows[half:])):
        (logs / day).mkdir(parents=True)
        with gzip.open(logs / day / "conn.00:00:00-23:59:59.log.gz", "wb") as fh:
            fh.write(b"".join(head + part))
    if attack:
        ahead, arows = split_log(next(p for p in attack_files() if "remcos" in p.name))
        with gzip.open(logs / DAY2 / "conn.12:00:00-13:00:00.log.gz", "wb") as fh:
            fh.write(b"".join(ahead + arows))
    (logs / "2026-11-28").mkdir()  # a day without conn logs is no day
    (logs / "notes").mkdir()  # nor is another directory
    return logs


@pytest.fixture()
def store(tmp_path: Path) -> ModelStore:
    s = ModelStore(tmp_path / "store")
    s.promote(s.add(demo_model(seed=7)), "first model")
    return s


def retrain(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["retrain", *args])
    return code, capsys.readouterr().out


def test_candidate_that_silences_an_open_incident_is_refused(
    tmp_path: Path, store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """The RemcosRAT host is in open incidents the current model raised; the candidate, fitted
    (vetted, as the current one was) on a day holding the attack, learned its brute force as
    normal: refused, the current model kept, the candidate stored for review."""
    logs = archive(tmp_path, attack=True)
    current = store.load_current()
    db = tmp_path / "alerts.db"
    incidents = remcos_incidents(store, db)
    assert any(not i.closed and i.behaviour == "brute force" for i in incidents)
    code, out = retrain(
        capsys,
        *("--store", str(store.root), "--zeek-archive", str(logs), "--db", str(db)),
        *("--days", "2", "--until", DAY2),
    )
    assert code == 0
    assert f"kept       {current.model_id}: " in out
    assert "would silence open incident" in out and "brute force of 192.168.1.107" in out
    assert store.current_id() == current.model_id
    candidate = out.split()[1]
    assert candidate in store.ids() and candidate != current.model_id
    refused = store.history()[-1]
    assert refused["action"] == "refused" and refused["model"] == candidate
    assert "silence" in refused["reason"]
    assert store.stack() == [current.model_id]  # a refusal is nothing to roll back


def remcos_incidents(store: ModelStore, db: Path) -> list[Incident]:
    """The current model's alerts and (open) incidents on the RemcosRAT capture, written to
    the SQLite database ``db`` as the daemon writes them."""
    remcos = FlowBatch.concat(
        list(read_batches([str(p) for p in attack_files() if "remcos" in p.name], ReadStats()))
    )
    _, alerts, incidents = store.load_current().stream().process(remcos)
    sink = SQLiteSink(str(db), ids=IncidentIds())
    sink.open()
    sink.write(alerts)
    sink.write_incidents(incidents)
    sink.close()
    return incidents


def test_an_incident_marked_benign_trains_and_is_not_guarded(
    tmp_path: Path, store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """The analyst marked the brute force benign: its flows join the training data, and a
    candidate that stops reporting it is not refused for that."""
    logs = archive(tmp_path, attack=True)
    db = tmp_path / "alerts.db"
    remcos_incidents(store, db)
    brute = next(i for i in open_incidents(db) if i.behaviour == "brute force")
    feedback = open_store(db)
    feedback.mark_benign(stored_incident(db, brute.incident_id), "analyst", "our backup job")
    feedback.close()
    marked = benign_batch(db)
    assert marked is not None and len(marked) > 100
    assert set(marked.column("orig_h").to_pylist()) == {brute.host}
    assert brute.incident_id not in {i.incident_id for i in open_incidents(db)}
    code, out = retrain(
        capsys,
        *("--store", str(store.root), "--zeek-archive", str(logs), "--db", str(db)),
        *("--days", "2", "--until", DAY2),
    )
    assert code == 0 and f", {len(marked)} marked benign) in " in out, out
    assert "brute force of 192.168.1.107" not in out


def test_candidate_over_the_budget_is_refused(
    tmp_path: Path, store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = archive(tmp_path)
    before = store.current_id()
    code, out = retrain(
        capsys,
        *("--store", str(store.root), "--zeek-archive", str(logs), "--db", str(tmp_path / "no.db")),
        *("--days", "2", "--until", DAY2, "--threshold-quantile", "0.5"),
    )
    assert code == 0 and store.current_id() == before
    reason = out.split("kept       ", 1)[1]
    assert "flow alerts on 3562 shadow flows, over 22.26" in reason
    assert "silence" not in reason


def test_no_traffic_in_the_window_is_an_error_naming_where(
    tmp_path: Path, store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = archive(tmp_path)
    code = main(
        [
            "retrain",
            "--store",
            str(store.root),
            "--zeek-archive",
            str(logs),
            "--until",
            "2026-11-27",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "no traffic from 2026-11-21 to 2026-11-27 in " in err
    assert f"{logs}/YYYY-MM-DD/conn.*.log.gz" in err
    code = main(
        ["retrain", "--store", str(store.root), "--zeek-archive", str(logs), "--until", "x"]
    )
    assert code == 2 and "--until 'x' is not a date" in capsys.readouterr().err


def test_retrain_promote_rollback_with_a_running_daemon(
    tmp_path: Path, store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """The daemon scores a followed conn.log from the store's ``current`` pointer while
    ``retrain`` promotes a candidate and ``model rollback`` takes it back: it follows both
    swaps without a restart, and every flow written is scored once, in order, throughout.
    Its reservoir then trains a candidate of its own."""
    logs = archive(tmp_path)
    first = store.current_id()
    head, rows = split_log(baseline_files()[0])
    live = tmp_path / "conn.log"
    live.write_bytes(b"".join(head))
    cfg_path = tmp_path / "netanomd.yaml"
    cfg: dict[str, Any] = {
        "model": {
            "path": str(store.pointer),
            "store": str(store.root),
            "reload_check_seconds": 0.1,
        },
        "sources": [{"type": "zeek_log", "path": str(live), "from_start": True}],
        "pipeline": {"batch_size": 200, "batch_timeout_ms": 20, "dedup_community_id": False},
        "sinks": {
            "sqlite": {"path": str(tmp_path / "alerts.db")},
            "metrics": {"listen": f"127.0.0.1:{free_port()}"},
            "zeek_notice": {"enabled": False},
        },
        "state_dir": str(tmp_path / "state"),
    }
    cfg_path.write_text(json.dumps(cfg))
    written: list[str] = []
    seen: list[str] = []
    models: list[str] = []
    stop = threading.Event()

    def feed() -> None:
        """The benign day, over and over (each pass with its own uids), 20 rows a tick."""
        n = 0
        while not stop.is_set():
            chunk = []
            for _ in range(20):
                row = rows[n % len(rows)].split(b"\t")
                row[1] += f"-{n // len(rows)}".encode()
                chunk.append(b"\t".join(row))
                written.append(row[1].decode())
                n += 1
            with live.open("ab") as fh:
                fh.write(b"".join(chunk))
            time.sleep(0.01)

    d = Daemon(str(cfg_path), notifier=Notifier(env={}))
    exits: list[int] = []
    daemon = threading.Thread(target=lambda: exits.append(d.serve(install_signals=False)))
    daemon.start()
    wait(lambda: d.ready, what="the daemon to start")
    assert d.pipeline is not None and d.pipeline.reservoir is not None
    inner = d.pipeline.on_batch

    def record(batch: FlowBatch, *rest: Any) -> None:
        assert d.pipeline is not None
        seen.extend(batch.column("uid").to_pylist())
        models.append(d.pipeline.model.model_id)
        if inner is not None:
            inner(batch, *rest)

    d.pipeline.on_batch = record
    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        wait(lambda: len(seen) > 500, what="scoring with the first model")
        code, out = retrain(
            capsys,
            *("-c", str(cfg_path), "--zeek-archive", str(logs), "--days", "2", "--until", DAY2),
        )
        assert code == 0 and "promoted   " in out, out
        second = store.current_id()
        assert second != first and store.stack() == [first, second]
        wait(lambda: models[-1] == second, what="the daemon to follow the promotion")
        n = len(seen)
        wait(lambda: len(seen) > n + 500, what="scoring with the candidate")
        assert main(["model", "-c", str(cfg_path), "rollback", "--reason", "test"]) == 0
        assert capsys.readouterr().out == f"current: {first} (rolled back from {second})\n"
        wait(lambda: models[-1] == first, what="the daemon to follow the rollback")
        n = len(seen)
        wait(lambda: len(seen) > n + 500, what="scoring after the rollback")
        base = "http://127.0.0.1:" + cfg["sinks"]["metrics"]["listen"].rsplit(":", 1)[1]
        health = json.loads(urllib.request.urlopen(base + "/healthz").read())
        assert health["model"] == first and health["drift"]["rows"] > 0
        assert bool(health["warnings"]) == health["drift"]["flagged"]
        metrics = urllib.request.urlopen(base + "/metrics").read().decode()
        assert "netanomd_drift_score_psi " in metrics
        assert "netanomd_model_trained_timestamp_seconds " in metrics
        assert 'netanomd_drift_feature_psi{feature="log_orig_bytes"}' in metrics
    finally:
        stop.set()
        feeder.join()
    wait(lambda: len(seen) == len(written), what="every written flow")
    d.request_stop()
    daemon.join()
    assert exits == [0]
    assert seen == written  # none missing, none twice, in order, across both swaps
    swaps = [m for i, m in enumerate(models) if i == 0 or models[i - 1] != m]
    assert swaps == [first, second, first]
    # The reservoir: the flows scored, less the alerted ones, in their flow day's file.
    files = sorted((tmp_path / "state" / "reservoir").glob("*.parquet"))
    assert [f.name for f in files] == ["2023-02-20.parquet"]
    kept = pq.read_table(files[0]).column("uid").to_pylist()
    assert 0 < len(kept) < len(written) and len(set(kept)) == len(kept)
    alerted = {r[0] for r in _alert_uids(tmp_path / "alerts.db")}
    assert alerted and not alerted & set(kept)
    code, out = retrain(capsys, "-c", str(cfg_path), "--days", "1", "--until", "2023-02-20")
    assert code == 0 and f"on {len(kept):,} flows (2023-02-20 to 2023-02-20, 1 days)" in out, out


def _alert_uids(db: Path) -> list[tuple[str]]:
    import sqlite3

    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT uid FROM alerts").fetchall()
    finally:
        con.close()


# ---- the weekly timer -------------------------------------------------------------------------
SYSTEMD_DIR = Path(__file__).resolve().parent.parent / "systemd"
RETRAIN_UNIT = SYSTEMD_DIR / "netanomd-retrain.service"
RETRAIN_TIMER = SYSTEMD_DIR / "netanomd-retrain.timer"


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    return subprocess.run(
        [tool, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LC_ALL": "C"},
    )


def _verifiable(tmp_path: Path, timer: str | None = None) -> list[str]:
    """Copies of the two units, ExecStart pointed at /bin/true (netanomd is not installed)."""
    unit = RETRAIN_UNIT.read_text()
    exec_start = "ExecStart=/usr/bin/netanomd retrain --config /etc/netanomd/netanomd.yaml\n"
    assert exec_start in unit
    (tmp_path / RETRAIN_UNIT.name).write_text(unit.replace("=/usr/bin/netanomd ", "=/bin/true "))
    (tmp_path / RETRAIN_TIMER.name).write_text(timer or RETRAIN_TIMER.read_text())
    return [str(tmp_path / RETRAIN_UNIT.name), str(tmp_path / RETRAIN_TIMER.name)]


def test_retrain_units_verify_clean_and_run_weekly(tmp_path: Path) -> None:
    result = _analyze("verify", *_verifiable(tmp_path))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    calendar = next(
        line.split("=", 1)[1]
        for line in RETRAIN_TIMER.read_text().splitlines()
        if line.startswith("OnCalendar=")
    )
    out = _analyze("calendar", "--iterations=3", calendar).stdout
    stamps = [
        dt.datetime.strptime(line.split(": ", 1)[1].strip()[4:23], "%Y-%m-%d %H:%M:%S")
        for line in out.splitlines()
        if "Next elapse" in line or line.strip().startswith("Iter.")
    ]
    assert len(stamps) == 3
    assert {b - a for a, b in itertools.pairwise(stamps)} == {dt.timedelta(days=7)}
    security = _analyze("security", "--offline=yes", "--no-pager", str(RETRAIN_UNIT)).stdout
    match = re.search(
        r"Overall exposure level for netanomd-retrain\.service: (\d+(?:\.\d+)?)", security
    )
    assert match is not None and float(match.group(1)) <= 1.5, security[-400:]


def test_retrain_timer_verify_catches_mistakes(tmp_path: Path) -> None:
    broken = RETRAIN_TIMER.read_text().replace("OnCalendar=Mon", "OnCalendar=Mnday")
    out = _analyze("verify", *_verifiable(tmp_path, broken))
    assert "Failed to parse calendar specification" in out.stdout + out.stderr


# ---- the reservoir ----------------------------------------------------------------------------
def read_all(paths: list[Path]) -> FlowBatch:
    return FlowBatch.concat(list(read_batches([str(p) for p in paths], ReadStats())))


def test_reservoir_is_stratified_by_hour_and_capped(tmp_path: Path) -> None:
    """10 flows an hour at most (per_day 240): every hour of the benign day with at least 10
    flows keeps exactly 10, quieter hours keep all theirs; one file per flow day."""
    day = read_all(baseline_files())
    r = Reservoir(tmp_path / "res", per_day=240, flush_seconds=1e9)
    no_scores = np.zeros(500)
    for i in range(0, len(day), 500):
        part = day.slice(i, 500)
        r.add(part, no_scores[: len(part)], [], [])
    assert not (tmp_path / "res").exists()  # nothing written before a flush
    r.flush()
    [(date, path)] = day_files(tmp_path / "res")
    assert date == dt.date(2023, 2, 20) and path.name == "2023-02-20.parquet"
    kept = read_day(path)
    hours = Counter((kept.numeric("ts") // 3600).astype(int).tolist())
    totals = Counter((day.numeric("ts") // 3600).astype(int).tolist())
    assert hours == {h: min(10, n) for h, n in totals.items()}
    assert len(set(kept.column("uid").to_pylist())) == len(kept)
    assert list(kept.numeric("ts")) == sorted(kept.numeric("ts"))


def test_reservoir_leaves_out_alerts_and_open_incidents(tmp_path: Path) -> None:
    """The RemcosRAT capture and an hour of the benign day through the demo model: alerted
    flows and the flows of open named incidents (the brute force) stay out; the rest is kept,
    the attacker's other traffic included."""
    model = demo_model()
    remcos = FlowBatch.concat(
        [
            read_all([p for p in attack_files() if "remcos" in p.name]),
            read_all(baseline_files()).slice(0, 1000),
        ]
    )
    stream = model.stream()
    r = Reservoir(tmp_path / "res", per_day=24_000)
    scores, alerts, _ = stream.process(remcos)
    open_now = list(stream.tracker.open.values())
    assert alerts and {i.host for i in open_now} == {"192.168.1.107"}
    (brute,) = [i for i in open_now if i.behaviour == "brute force"]
    r.add(remcos, scores, alerts, open_now)
    r.flush()
    kept = FlowBatch.concat([read_day(p) for _, p in day_files(tmp_path / "res")])
    assert r.excluded == len(remcos) - len(kept) >= len(alerts)
    assert not {a.flow.uid for a in alerts} & set(kept.column("uid").to_pylist())
    assert not brute.members(kept).any()
    alerted = {a.flow.uid for a in alerts}
    inside = brute.members(remcos)
    clean = [
        u
        for u, there in zip(remcos.column("uid").to_pylist(), inside.tolist(), strict=True)
        if not there and u not in alerted
    ]
    assert len(clean) > 900 and sorted(kept.column("uid").to_pylist()) == sorted(clean)
    assert "192.168.1.107" in set(kept.column("orig_h").to_pylist())  # its other traffic
    # the drift sample holds every flow, alerts included
    assert r.recent.measure(model, 0.0).rows == len(remcos)


def test_reservoir_merges_after_a_restart_and_prunes_old_days(tmp_path: Path) -> None:
    day = read_all(baseline_files())
    remcos = read_all([p for p in attack_files() if "remcos" in p.name])
    root = tmp_path / "res"
    half = len(day) // 2
    first = Reservoir(root, per_day=240_000)
    first.add(day.slice(0, half), np.zeros(half), [], [])
    first.flush()
    again = Reservoir(root, per_day=240_000, keep_days=5)
    again.add(day.slice(half), np.zeros(len(day) - half), [], [])
    again.flush()
    [(_, path)] = day_files(root)
    assert sorted(read_day(path).column("uid").to_pylist()) == sorted(day.column("uid").to_pylist())
    # Another day (the remcos capture's), then caps: one day kept, then a byte cap.
    days = Reservoir(root, per_day=240_000, keep_days=1)
    days.add(remcos, np.zeros(len(remcos)), [], [])
    days.flush()
    newest = max(dt.date(2023, 2, 20), *(d for d, _ in day_files(root)))
    assert [d for d, _ in day_files(root)] == [newest]
    (root / "notes.txt").write_text("not a day")
    tiny = Reservoir(root, per_day=240_000, max_bytes=1)
    tiny.add(day.slice(0, 100), np.zeros(100), [], [])
    tiny.flush()
    assert len(day_files(root)) == 1  # the newest day always stays
    assert (root / "notes.txt").exists()


def test_reservoir_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"model.reservoir_per_day: 5 is too few"):
        Reservoir(tmp_path, per_day=5)
    bad = tmp_path / "2023-01-01.parquet"
    bad.write_bytes(b"PAR1 not parquet")
    with pytest.raises(InputError, match=r"2023-01-01.parquet: not a reservoir day file"):
        read_day(bad)
