"""``netanomd alerts``: a table with a header and "showing N of M", --limit 0 for all, filters
by host, port and flow time (with a hint when the time filter hides everything), sort by time,
JSON lines for jq, and the daemon's database when the user has none."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from netanomd.cli import main
from netanomd.data import attack_files
from netanomd.decision import Alert
from netanomd.model import Model
from netanomd.sinks import sqlite
from netanomd.sinks.sqlite import SQLiteSink
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches


@pytest.fixture(scope="module")
def stored(demo: Model, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Alert]]:
    demo.reset()
    alerts: list[Alert] = []
    for batch in read_batches(attack_files(), ReadStats()):
        alerts += demo.run(batch)[1]
    assert len(alerts) > 60  # more than one default page
    db = tmp_path_factory.mktemp("alerts") / "a.db"
    sink = SQLiteSink(db)
    sink.write(alerts)
    sink.close()
    return db, alerts


def lines(out: str) -> list[dict[str, object]]:
    return [orjson.loads(x) for x in out.splitlines()]


def test_table_says_how_many_it_shows(
    stored: tuple[Path, list[Alert]], capsys: pytest.CaptureFixture[str]
) -> None:
    db, alerts = stored
    assert main(["alerts", "--db", str(db)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:7] == ["SCORE", "FLOW", "TIME", "(UTC)", "SOURCE", "UID", "ORIGINATOR"]
    assert len(out) == 1 + 50 + 1 and out[-1] == f"showing 50 of {len(alerts):,} alerts"
    top = max(alerts, key=lambda a: a.score)
    assert top.flow.uid in out[1] and out[1].endswith(top.reason)
    assert main(["alerts", "--db", str(db), "--limit", "0", "--json"]) == 0
    got = capsys.readouterr()
    assert len(lines(got.out)) == len(alerts)
    assert got.err.strip() == f"showing {len(alerts):,} of {len(alerts):,} alerts"


def test_filters_and_sort(
    stored: tuple[Path, list[Alert]], capsys: pytest.CaptureFixture[str]
) -> None:
    db, alerts = stored
    host, n = Counter(a.flow.resp_h for a in alerts).most_common(1)[0]
    main(["alerts", "--db", str(db), "--host", host, "--limit", "0", "--json"])
    rows = lines(capsys.readouterr().out)
    assert len(rows) == sum(host in (a.flow.orig_h, a.flow.resp_h) for a in alerts) >= n
    port = Counter(a.flow.resp_p for a in alerts).most_common(1)[0][0]
    main(["alerts", "--db", str(db), "--port", str(port), "--limit", "0", "--json"])
    rows = lines(capsys.readouterr().out)
    assert {r["resp_p"] for r in rows} == {port}
    assert len(rows) == sum(a.flow.resp_p == port for a in alerts)
    main(["alerts", "--db", str(db), "--sort", "time", "--limit", "0", "--json"])
    ts = [r["ts"] for r in lines(capsys.readouterr().out)]
    assert ts == sorted(ts, reverse=True)
    mid = sorted(a.flow.ts for a in alerts)[len(alerts) // 2]
    main(["alerts", "--db", str(db), "--until", str(mid), "--limit", "0", "--json"])
    rows = lines(capsys.readouterr().out)
    assert rows and all(float(r["ts"]) <= mid for r in rows)  # type: ignore[arg-type]
    # Replayed captures are old: "the last 24 hours" of flow time holds none of them.
    main(["alerts", "--db", str(db), "--since", "24h"])
    out = capsys.readouterr().out
    assert f"the time filter hides all {len(alerts):,}" in out and "flow time" in out
    assert main(["alerts", "--db", str(db), "--limit", "-1"]) == 2
    assert "--limit -1" in capsys.readouterr().err


def test_reads_the_daemons_database_when_the_user_has_none(
    stored: tuple[Path, list[Alert]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db, _ = stored
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "nothing-here"))
    monkeypatch.setattr(sqlite, "daemon_db_path", lambda: tmp_path / "missing.db")
    assert main(["alerts"]) == 2
    err = capsys.readouterr().err
    assert "nothing-here" in err and "missing.db" in err and "--db" in err
    monkeypatch.setattr(sqlite, "daemon_db_path", lambda: db)
    assert main(["alerts", "--json"]) == 0
    assert len(lines(capsys.readouterr().out)) == 50
