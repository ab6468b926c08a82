"""The command-line interface end to end on the bundled real captures."""

from __future__ import annotations

import json
import subprocess
import sys
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
