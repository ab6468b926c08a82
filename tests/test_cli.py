"""The command-line interface end to end on the bundled real captures."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netanomd.cli import main
from netanomd.data import attack_files, baseline_files


def test_demo_finds_the_attacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--workdir", str(tmp_path), "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "7124 flows read" in out
    # Incidents first: each RAT's C&C host is one incident naming what it did, never "low".
    head, _, tail = out.partition("top 5 flow alerts")
    assert tail, out
    assert "tried 5888/tcp on 66.63.168.35" in head  # RemcosRAT
    assert "tried 1177/tcp on 41.108.179.197" in head  # NjRAT
    rat = [ln for ln in head.splitlines() if "repeated failed connections" in ln]
    assert len(rat) == 2 and not any(ln.lstrip().startswith("[low") for ln in rat)
    lines = [ln for ln in tail.splitlines() if " -> " in ln and ln.startswith("   0.")]
    assert len(lines) == 5
    # The alerts are mostly the labeled attack flows (labels are reported, never used).
    assert "Malicious" in out
    assert (tmp_path / "demo-alerts.db").exists() and (tmp_path / "demo-model.npz").exists()


def test_train_score_alerts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, db, scores = tmp_path / "m.npz", tmp_path / "a.db", tmp_path / "s.jsonl"
    base = [str(p) for p in baseline_files()]
    attacks = [str(p) for p in attack_files()]
    assert main(["train", "--input", *base, "--model", str(model)]) == 0
    assert (
        main(
            [
                "score",
                "--model",
                str(model),
                "--input",
                *attacks,
                "--db",
                str(db),
                "--scores",
                str(scores),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "flow alerts (model iforest-" in out and "flows/s" in out
    assert out.index("incidents (most severe first)") < out.index("flow alerts:")
    lines = scores.read_text().splitlines()
    assert len(lines) == 766 + 992  # every flow of both captures, one line each
    first = json.loads(lines[0])
    assert set(first) == {"uid", "score", "label"} and 0.0 < first["score"] < 1.0
    assert main(["alerts", "--db", str(db), "--json", "--min-score", "0.6", "--limit", "3"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert 1 <= len(rows) <= 3 and all(r["score"] >= 0.6 for r in rows)
    assert all(r["reason"] and r["model_id"].startswith("iforest-") for r in rows)


def test_score_applies_the_allowlist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``score`` keeps out what the database's allowlist covers, as the daemon does: the
    link-local discovery default (ICMPv6 neighbour discovery and multicast listener reports from
    fe80::/10) and a rule from ``--rules``; ``--no-allowlist`` reports everything."""
    model = tmp_path / "m.npz"
    assert main(["train", "--input", *map(str, baseline_files()), "--model", str(model)]) == 0
    njrat = next(str(p) for p in attack_files() if "njrat" in p.name)
    rules = tmp_path / "allow.yaml"
    rules.write_text("- {name: lab-c2, peer: 41.108.179.197/32, comment: known lab C&C}\n")

    def stored(db: Path, where: str) -> int:
        with sqlite3.connect(db) as conn:
            return int(conn.execute(f"SELECT count(*) FROM alerts WHERE {where}").fetchone()[0])

    everything, allowed = tmp_path / "all.db", tmp_path / "allowed.db"
    args = ["score", "--model", str(model), "--input", njrat, "--top", "0"]
    assert main([*args, "--db", str(everything), "--no-allowlist"]) == 0
    assert "allowlist:" not in capsys.readouterr().out
    assert main([*args, "--db", str(allowed), "--rules", str(rules)]) == 0
    out = capsys.readouterr().out
    nd = "proto = 'icmp' AND orig_h LIKE 'fe80:%' AND resp_h LIKE 'ff02:%'"
    assert stored(everything, nd) > 100 and stored(everything, "resp_p = 1177") > 100
    assert stored(allowed, nd) == 0 and stored(allowed, "resp_p = 1177") == 0
    kept_out = stored(everything, "1") - stored(allowed, "1")
    assert f"allowlist: {kept_out} flow alerts" in out and "ipv6-nd, lab-c2" in out
    with sqlite3.connect(allowed) as conn:
        counts = dict(conn.execute("SELECT rule || '/' || kind, count FROM feedback_suppressed"))
    assert counts["ipv6-nd/alerts"] > 100 and counts["lab-c2/alerts"] > 100


def test_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "picture.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    assert main(["train", "--input", str(junk), "--model", str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err
    assert "picture.png" in err and err.startswith("netanomd: error:")
    assert main(["score", "--model", str(junk), "--input", str(junk)]) == 2
    assert "not a netanomd model" in capsys.readouterr().err


def test_console_script_runs() -> None:
    bindir = Path(sys.executable).parent
    out = subprocess.run([str(bindir / "netanomd"), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("netanomd ")


def test_each_commands_help_line_is_its_modules_own() -> None:
    import argparse
    import importlib

    from netanomd.cli import COMMANDS

    for name, (module, helptext) in COMMANDS.items():
        scratch = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(scratch)
        action = next(a for a in scratch._choices_actions if a.dest == name)
        assert action.help == helptext, name


def test_help_imports_no_command_module() -> None:
    """`netanomd --help` lists every command without importing them (they pull in
    scikit-learn, numba and pyarrow: seconds of CPU on a loaded sensor)."""
    code = (
        "import sys; from netanomd.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'sklearn', 'numba', 'pyarrow', 'numpy', 'pandas', 'scipy'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
        "print(sorted(m for m in sys.modules if m.startswith('netanomd.commands.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy, commands = out.stdout.strip().splitlines()[-2:]
    assert (heavy, commands) == ("[]", "[]")


def test_an_option_before_the_command_still_finds_it(tmp_path: Path) -> None:
    from netanomd.sinks.sqlite import SQLiteSink

    db = tmp_path / "empty.db"
    SQLiteSink(db).close()
    assert main(["--log-level", "WARNING", "incidents", "--db", str(db), "--json"]) == 0


def test_train_says_what_the_baseline_covers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`train` prints a summary a person reads: flows, hosts, the time span first -> last flow,
    the threshold rule in words, the incident budget and where the model went; no raw dict."""
    import datetime as dt

    import pyarrow.compute as pc

    from netanomd.sources.files import open_source

    inputs = [str(p) for p in baseline_files() + attack_files()]
    ts, hosts = [], set()
    for path in inputs:
        for batch in open_source(path).batches():
            ts += [t for t in batch.column("ts").to_pylist() if t is not None]
            hosts |= {h for h in pc.unique(batch.column("orig_h")).to_pylist() if h}
    model = tmp_path / "m.npz"
    args = ["train", "--input", *inputs, "--model", str(model), "--incidents-per-day", "3"]
    assert main(args) == 0
    out = capsys.readouterr().out

    def utc(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")

    assert f"{len(ts):,} flows (zeek {len(ts):,}) from {len(hosts):,} originating hosts" in out
    assert f"{utc(min(ts))} → {utc(max(ts))} UTC" in out
    assert "threshold  " in out and "incidents a day" in out
    assert "budget 3 a day" in out
    assert f"saved      {model}" in out and model.exists()
    assert "{" not in out and "'method'" not in out


def test_train_threshold_rule_in_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = [str(p) for p in baseline_files()]
    model = tmp_path / "q.npz"
    assert main(["train", "-i", *base, "-m", str(model), "--threshold-quantile", "0.99"]) == 0
    out = capsys.readouterr().out
    assert "the 0.99 quantile of the training distinct behaviours' scores" in out
    assert "about 1.00% of traffic like the baseline alerts" in out


def test_evaluate_takes_several_sets_and_replaces_its_outputs_only_on_success(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--flows a=X b=Y` is two sets (as the help's list suggests); a missing --suite folder is
    named; a failed run leaves the previous report and summary untouched."""
    data = Path(__file__).parent / "data/zeek"
    out, md = tmp_path / "report", tmp_path / "evaluation.md"
    out.mkdir()
    (out / "results.json").write_text("previous results")
    md.write_text("previous summary")
    common = ["--out", str(out), "--markdown", str(md)]

    missing = tmp_path / "no-shared-data"
    assert main(["evaluate", "--suite", str(missing), *common]) == 2
    err = capsys.readouterr().err
    assert f"--suite {missing}: no such directory" in err and "give --suite" not in err
    absent = tmp_path / "absent.conn.log"
    a = f"a={data / 'iot23-34-1-head100.conn.log.labeled'}"
    assert main(["evaluate", "--flows", a, f"b={absent}", *common]) == 2
    assert str(absent) in capsys.readouterr().err
    assert (out / "results.json").read_text() == "previous results"
    assert md.read_text() == "previous summary"

    assert main(["evaluate", "--flows", a, f"b={data / 'iot23-8-1-head100.csv'}", *common]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [e["dataset"] for e in results] == ["a", "b"]
    assert "## a" in md.read_text() and "## b" in md.read_text()
    leftovers = [p.name for p in [*out.iterdir(), *tmp_path.iterdir()] if p.name.startswith(".")]
    assert leftovers == []


def test_zeek_listen_says_once_what_it_waits_for(tmp_path: Path) -> None:
    """With no Zeek listening, `zeek listen` says once what it waits for and why the attempt
    failed (not once per retry), connects when Zeek comes up, and --wait gives up by name."""
    import signal
    import threading

    from tests.conftest import free_port
    from tests.waiting import wait
    from tests.zeek_ws_server import FakeZeek

    netanomd = str(Path(sys.executable).parent / "netanomd")
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [netanomd, "zeek", "listen", "--url", url],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        lines.extend(iter(proc.stderr.readline, ""))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    zeek = FakeZeek()
    try:
        wait(lambda: any(ln.startswith("waiting for ") for ln in lines), 30, "waiting line")
        time.sleep(3.0)  # several more attempts (backoff 0.5 s, 1 s, 2 s)
        zeek.start(port)
        wait(lambda: any(ln.startswith("connected: ") for ln in lines), 30, "connected line")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        zeek.stop()
        reader.join(10)
    assert proc.returncode == 0
    waiting = [ln for ln in lines if ln.startswith("waiting for ")]
    assert waiting == [
        "waiting for the netanomd Zeek package's WebSocket listener (Zeek >= 5; local.zeek: "
        "@load packages; NetAnom::websocket_addr/websocket_port, default 127.0.0.1:27759) "
        f"at {url}; retrying until it answers\n"
    ]
    failures = [ln for ln in lines if "Connect call failed" in ln]
    assert len(failures) == 1, lines

    silent = free_port()
    out = subprocess.run(
        [netanomd, "zeek", "listen", "--url", f"ws://127.0.0.1:{silent}", "--wait", "1.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert f"netanomd: error: no Zeek at ws://127.0.0.1:{silent} after 1.5 s: waiting for " in (
        out.stderr
    )
    assert "Connect call failed" in out.stderr.splitlines()[-1]


def test_readme_install_gives_the_paths_the_unit_uses() -> None:
    """The README's install section puts the command, the configuration, the model and the
    systemd files exactly where systemd/netanomd.service (and its header) expects them."""
    import re
    import shlex
    import tomllib

    import yaml

    repo = Path(__file__).parent.parent
    unit = (repo / "systemd/netanomd.service").read_text()
    start = shlex.split(re.search(r"^ExecStart=(.*)$", unit, re.M)[1])  # type: ignore[index]
    reload_ = shlex.split(re.search(r"^ExecReload=(.*)$", unit, re.M)[1])  # type: ignore[index]
    binary, config = start[0], start[start.index("--config") + 1]
    assert reload_[0] == binary and reload_[reload_.index("--config") + 1] == config

    readme = (repo / "README.md").read_text()
    section = readme.split("## Installing on a sensor\n", 1)[1].split("\n## ", 1)[0]
    steps = [
        shlex.split(line, comments=True)
        for block in re.findall(r"```sh\n(.*?)```", section, re.S)
        for line in block.splitlines()
    ]
    steps = [s for s in steps if s]
    venv = next(s[3] for s in steps if s[:3] == ["python3", "-m", "venv"])
    assert any(s[0] == f"{venv}/bin/pip" and s[1] == "install" for s in steps)
    scripts = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["scripts"]
    assert "netanomd" in scripts  # pip puts it in <venv>/bin/netanomd
    assert ["ln", "-sf", f"{venv}/bin/netanomd", binary] in steps

    installed = {s[-1]: s[-2] for s in steps if s[0] == "install"}  # destination -> source
    assert installed[config] == "config/netanomd.yaml"
    header = unit.split("[Unit]", 1)[0]
    for dest, source in installed.items():
        assert (repo / source).is_file(), source
        if source.startswith("systemd/"):
            assert dest in header, f"{source} -> {dest}: not where the unit's header says"
    assert set(installed.values()) >= {
        "systemd/netanomd.service",
        "systemd/netanomd.sysusers",
        "systemd/netanomd.tmpfiles",
    }
    model = yaml.safe_load((repo / "config/netanomd.yaml").read_text())["model"]["path"]
    train = next(s for s in steps if s[:2] == ["netanomd", "train"])
    assert train[train.index("--model") + 1] == model
    assert ["chown", "netanomd:", model] in steps
    assert ["netanomd", "config", "check", "-c", config] in steps
    # Community ID on in both sensors, as their documentation spells it.
    assert "@load policy/protocols/conn/community-id-logging" in section
    assert re.search(r"- eve-log:\n(\s+.*\n)*?\s+community-id: true", section)
