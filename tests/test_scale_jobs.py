"""``netanomd score --jobs N`` (netanomd.commands._jobs): the bundled baseline day and attack
captures scored in 2 and 3 processes give the same alerts (scores, reasons) and incidents in
SQLite as the one-process path (``netanomd.commands.score.score_files``)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from netanomd.commands._jobs import part_of, score_jobs
from netanomd.commands.score import score_files
from netanomd.data import attack_files, baseline_files, demo_model
from netanomd.model import Model
from netanomd.sinks import SinkSet
from netanomd.sinks.sqlite import SQLiteSink

#: Columns that say when a row was written, not what was found.
WRITTEN = {"id", "created_at", "updated_at"}


def rows(db: Path, table: str, key: str) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        got = [dict(r) for r in con.execute(f"SELECT * FROM {table} ORDER BY {key}")]
    return [{k: v for k, v in r.items() if k not in WRITTEN} for r in got]


def incidents(db: Path) -> list[dict[str, Any]]:
    """Every incident, its times and id (a digest of them) included: each job's clock follows
    the whole stream, so a window closed by another host's later flows closes at the same time
    as in one process."""
    return rows(db, "incidents", "incident_id")


def flows_in_incidents(db: Path) -> list[str]:
    return [r["uid"] for r in rows(db, "incident_flows", "uid")]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jobs") / "model.npz"
    demo_model().save(path)
    return path


def test_jobs_give_the_results_of_one_process(tmp_path: Path, model_file: Path) -> None:
    inputs = [str(p) for p in (*baseline_files(), *attack_files())]
    one = tmp_path / "one.db"
    single = score_files(Model.load(model_file), inputs, SinkSet([SQLiteSink(one)]))
    assert single.alerts > 0 and single.incidents
    for jobs in (2, 3):
        db = tmp_path / f"jobs{jobs}.db"
        run = score_jobs(str(model_file), inputs, SinkSet([SQLiteSink(db)]), jobs)
        assert run.stats.rows == single.stats.rows
        assert sum(run.flows_per_job) == single.stats.rows and min(run.flows_per_job) > 0
        assert run.alerts == single.alerts and len(run.incidents) == len(single.incidents)
        assert rows(db, "alerts", "alert_id") == rows(one, "alerts", "alert_id")
        assert incidents(db) == incidents(one)
        assert flows_in_incidents(db) == flows_in_incidents(one)


def test_jobs_name_incidents_as_one_process_on_a_mixed_log(
    tmp_path: Path, model_file: Path
) -> None:
    """20,000 rows resampled from the bundled captures (``benchmarks/gen_connlog.py``): an
    incident's first_seen moves earlier after the stream first reported it, and one process's
    sinks keep the id it was first reported with; the jobs' incidents carry the same ids. What
    a responder's behaviour counts over many originators (an inbound scan) is split by the
    originator split, so only the originators' incidents are compared."""
    log = tmp_path / "mixed.log.gz"
    gen = Path(__file__).resolve().parent.parent / "benchmarks" / "gen_connlog.py"
    subprocess.run([sys.executable, str(gen), "20000", str(log), "--with-attacks"], check=True)
    one, two = tmp_path / "one.db", tmp_path / "two.db"
    score_files(Model.load(model_file), [str(log)], SinkSet([SQLiteSink(one)]))
    score_jobs(str(model_file), [str(log)], SinkSet([SQLiteSink(two)]), 2)
    assert rows(two, "alerts", "alert_id") == rows(one, "alerts", "alert_id")
    single = [r for r in incidents(one) if r["role"] == "orig"]
    assert len(single) > 30 and single == [r for r in incidents(two) if r["role"] == "orig"]


def test_parts_follow_the_originator() -> None:
    orig = ["10.0.0.1", "10.0.0.2", "10.0.0.1", "fe80::2", None, "10.0.0.3"]
    assert part_of(orig, 2).tolist() == [1, 0, 1, 0, 0, 1]
    assert part_of(orig, 1).tolist() == [0] * 6


def test_alerts_and_incidents_read_several_databases(
    tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two daemons' databases (one flow file scored by both: a flow scored twice) read as one:
    each alert and incident once, in the order one database holding everything gives."""
    from netanomd.cli import main

    njrat, remcos = sorted(str(p) for p in attack_files())
    for name, files in (("a", [remcos]), ("b", [njrat, remcos]), ("all", [njrat, remcos])):
        score_files(Model.load(model_file), files, SinkSet([SQLiteSink(tmp_path / f"{name}.db")]))
    dbs = ["--db", str(tmp_path / "a.db"), "--db", str(tmp_path / "b.db")]
    alone = ["--db", str(tmp_path / "all.db")]
    for command, ident in (("alerts", "alert_id"), ("incidents", "incident_id")):
        for limit in ("0", "7"):
            got = []
            for where in (dbs, alone):
                assert main([command, *where, "--limit", limit, "--json"]) == 0
                out, err = capsys.readouterr()
                got.append(([orjson.loads(line)[ident] for line in out.splitlines()], err))
            (merged, merged_note), (single, single_note) = got
            assert merged == single and len(set(merged)) == len(merged)
            assert merged_note == single_note  # "7 of N alerts": the same N
        assert len(rows(tmp_path / "a.db", command, ident)) > 0


def test_score_command_jobs(
    tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from netanomd.cli import main

    base = [
        "score",
        "--model",
        str(model_file),
        "--no-allowlist",
        "--input",
        *map(str, attack_files()),
    ]
    for jobs in ("1", "2"):
        assert main([*base, "--db", str(tmp_path / f"{jobs}.db"), "--jobs", jobs]) == 0
    out = capsys.readouterr().out
    assert out.count("1758 flows read") == 2
    assert rows(tmp_path / "2.db", "alerts", "alert_id") == rows(
        tmp_path / "1.db", "alerts", "alert_id"
    )
    assert main([*base, "--jobs", "2", "--scores", str(tmp_path / "s.jsonl")]) == 2
    assert "--jobs 2: expected 1 or more, and 1 with --scores" in capsys.readouterr().err
