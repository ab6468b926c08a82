"""Training data for ``netanomd train`` and ``netanomd retrain``: the last N days of a Zeek log
archive (``<logdir>/YYYY-MM-DD/conn.*.log.gz``, laid out here from the bundled CTU-SME-11
benign day and the RemcosRAT capture, rotated hourly as Zeek's archiver does), and the flows
an analyst marked benign merged into the training stream in time order, once."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import numpy as np
import pytest

from netanomd.cli import main
from netanomd.commands._archive import archive_days
from netanomd.commands.retrain import read_days, with_benign
from netanomd.data import attack_files, baseline_files
from netanomd.errors import InputError
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches
from tests.test_retrain import split_log

DAY1, DAY2 = dt.date(2026, 11, 29), dt.date(2026, 11, 30)


def hourly_archive(root: Path) -> tuple[Path, dict[dt.date, list[bytes]]]:
    """The benign day's rows rotated hourly into two archive days (its first half on DAY1,
    the rest on DAY2, the RemcosRAT capture on the day before), and what does not count:
    conn-summary logs, other logs, a directory that is no day, a day without conn logs."""
    head, rows = split_log(baseline_files()[0])
    ts = np.array([float(r.split(b"\t", 1)[0]) for r in rows])
    hour = ((ts - ts.min()) // 3600).astype(np.int64)
    logs = root / "logs"
    days: dict[dt.date, list[bytes]] = {DAY1: [], DAY2: []}
    middle = int(np.median(hour))
    for h in np.unique(hour).tolist():
        day = DAY1 if h < middle else DAY2
        part = [r for r, x in zip(rows, hour.tolist(), strict=True) if x == h]
        days[day] += part
        (logs / day.isoformat()).mkdir(parents=True, exist_ok=True)
        name = f"conn.{h % 24:02d}:00:00-{(h % 24) + 1:02d}:00:00.log.gz"
        with gzip.open(logs / day.isoformat() / name, "wb") as fh:
            fh.write(b"".join(head + part))
    for day in days:
        d = logs / day.isoformat()
        with gzip.open(d / "conn-summary.00:00:00-23:59:59.log.gz", "wb") as fh:
            fh.write(b"not flows\n")
        with gzip.open(d / "dns.00:00:00-01:00:00.log.gz", "wb") as fh:
            fh.write(b"not flows\n")
    before = logs / (DAY1 - dt.timedelta(days=1)).isoformat()
    before.mkdir()
    ahead, arows = split_log(next(p for p in attack_files() if "remcos" in p.name))
    with gzip.open(before / "conn.12:00:00-13:00:00.log.gz", "wb") as fh:
        fh.write(b"".join(ahead + arows))
    (logs / "2026-12-01").mkdir()  # no conn logs: no day
    (logs / "current").mkdir()  # Zeek's live logs: no day
    (logs / "2026-13-45").mkdir()  # named like a day, but none
    return logs, days


def uids(rows: list[bytes]) -> list[str]:
    return [r.split(b"\t")[1].decode() for r in rows]


def test_train_from_the_last_days_of_a_zeek_archive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs, days = hourly_archive(tmp_path)
    found = archive_days(logs, DAY1, DAY2, "train")
    assert [d for d, _ in found] == [DAY1, DAY2]
    assert all(
        p.name.startswith("conn.") and "summary" not in p.name for _, ps in found for p in ps
    )
    for n, want in ((2, days[DAY1] + days[DAY2]), (1, days[DAY2])):
        out = tmp_path / f"model{n}.npz"
        args = ["train", "--zeek-archive", str(logs), "--days", str(n), "--until", str(DAY2)]
        assert main([*args, "--model", str(out), "--vetted"]) == 0
        printed = capsys.readouterr().out
        assert f"of {n} days" in printed and str(DAY2) in printed
        training = Model.load(out).meta["training"]
        assert training["rows"] == len(want)
        assert training["files"] == [str(p) for _, ps in found[-n:] for p in ps]
        read = FlowBatch.concat(list(read_batches(training["files"], ReadStats())))
        assert read.column("uid").to_pylist() == uids(want)  # every hour, in order, once
    # the same files given with --input: the same model
    files = [str(p) for _, ps in found for p in ps]
    assert main(["train", "--input", *files, "--model", str(tmp_path / "i.npz"), "--vetted"]) == 0
    a, b = Model.load(tmp_path / "i.npz"), Model.load(tmp_path / "model2.npz")
    assert a.threshold == b.threshold and a.meta["training"]["rows"] == b.meta["training"]["rows"]


def test_an_archive_without_the_days_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs, _ = hourly_archive(tmp_path)
    base = ["train", "--model", str(tmp_path / "m.npz"), "--zeek-archive", str(logs)]
    assert main([*base, "--until", "2026-11-20", "--days", "3"]) == 2
    err = capsys.readouterr().err
    assert f"train: no conn logs from 2026-11-18 to 2026-11-20 in {logs}/YYYY-MM-DD/conn.*" in err
    assert main([*base, "--days", "0"]) == 2
    assert "train: --days 0 must be at least 1" in capsys.readouterr().err
    with pytest.raises(InputError, match="no such log archive directory"):
        archive_days(tmp_path / "none", DAY1, DAY2, "train")
    with pytest.raises(SystemExit):  # one source of flows, not both
        main([*base, "--input", str(baseline_files()[0])])
    assert "not allowed with argument" in capsys.readouterr().err


def test_flows_marked_benign_join_the_stream_in_time_order_once(tmp_path: Path) -> None:
    """The brute force of the RemcosRAT capture marked benign, retrained from an archive that
    holds it too: each of its flows is in the training stream once, where its time falls."""
    logs, _ = hourly_archive(tmp_path)
    remcos = FlowBatch.concat(
        list(read_batches([str(p) for p in attack_files() if "remcos" in p.name], ReadStats()))
    )
    marked = remcos.take(
        np.flatnonzero(np.asarray(remcos.column("orig_h").to_pylist()) == "192.168.1.107")
    )
    found = archive_days(logs, DAY1 - dt.timedelta(days=1), DAY2, "retrain")
    plain = list(read_days(found))
    merged = list(with_benign(read_days(found), marked))
    everything = FlowBatch.concat(plain)
    got = FlowBatch.concat(merged)
    ids = got.column("uid").to_pylist()
    assert len(ids) == len(set(ids)) == len(everything)  # the archive held them: once each
    assert sorted(ids) == sorted(everything.column("uid").to_pylist())
    mine = set(marked.column("uid").to_pylist())
    for batch in merged:  # each marked flow within the time span of the batch it joined
        own = np.array([u not in mine for u in batch.column("uid").to_pylist()])
        ts = batch.numeric("ts")
        if own.any() and not own.all():
            assert ts[own].min() <= ts[~own].min() and ts[~own].max() <= ts[own].max()
            assert not own[own.argmin() :].any()  # appended: the batch's own order kept
    # marked flows the training data does not hold (from a day outside it; the capture is
    # two days younger than the benign day): a batch of their own, where their time falls
    outside = list(with_benign(read_days(found[1:]), marked))
    by_time = dict(
        zip(marked.column("uid").to_pylist(), marked.numeric("ts").tolist(), strict=True)
    )
    assert outside[-1].column("uid").to_pylist() == sorted(mine, key=by_time.__getitem__)
    rest = FlowBatch.concat(outside[:-1])
    assert rest.column("uid").to_pylist() == FlowBatch.concat(plain[1:]).column("uid").to_pylist()
