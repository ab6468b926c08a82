"""The Zeek package: every script parses (zeekscript), and api.zeek matches netanomd.zeek.api."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netanomd.zeek import api

REPO = Path(__file__).parent.parent
SCRIPTS = sorted((REPO / "zeek-scripts").glob("*.zeek"))
ZEEK_SCRIPT = Path(sys.executable).parent / "zeek-script"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses(script: Path) -> None:
    out = subprocess.run(
        [str(ZEEK_SCRIPT), "parse", "-q", str(script)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr


def test_parser_catches_a_syntax_error(tmp_path: Path) -> None:
    """The check above can fail: a missing ';' is reported with a non-zero exit."""
    broken = tmp_path / "broken.zeek"
    broken.write_text(
        (REPO / "zeek-scripts/main.zeek")
        .read_text()
        .replace("delete batches[k];", "delete batches[k]")
    )
    out = subprocess.run([str(ZEEK_SCRIPT), "parse", "-q", str(broken)], capture_output=True)
    assert out.returncode != 0


def parse_api_zeek() -> tuple[str, dict[str, list[tuple[str, str]]]]:
    text = (REPO / "zeek-scripts/api.zeek").read_text()
    text = re.sub(r"#[^\n]*", "", text)  # comments, including ## docs
    version = re.search(r'const\s+version\s*=\s*"([^"]+)"', text)
    assert version
    events: dict[str, list[tuple[str, str]]] = {}
    for name, args in re.findall(r"global\s+(\w+)\s*:\s*event\s*\((.*?)\)\s*;", text, re.S):
        parsed = []
        for arg in args.split(","):
            arg_name, _, typ = arg.partition(":")
            parsed.append((arg_name.strip(), " ".join(typ.split())))
        events[f"NetAnom::{name}"] = parsed
    return version.group(1), events


def test_api_mirror_matches_api_zeek() -> None:
    version, events = parse_api_zeek()
    assert version == api.VERSION
    assert set(events) == {e.name for e in api.EVENTS}
    for spec in api.EVENTS:
        assert events[spec.name] == list(spec.args), spec.name


def test_main_zeek_publishes_exactly_the_declared_arguments() -> None:
    """Both publish calls pass the batch's vectors in api.zeek's order."""
    text = (REPO / "zeek-scripts/main.zeek").read_text()
    calls = re.findall(r"(?:Cluster|Broker)::publish\(topic, NetAnom::flows,(.*?)\);", text, re.S)
    assert len(calls) == 2
    for call in calls:
        fields = [a.strip().removeprefix("b$") for a in call.split(",")]
        assert fields == list(api.FLOWS.arg_names)


def test_zkg_meta() -> None:
    meta = configparser.ConfigParser()
    meta.read(REPO / "zkg.meta")
    assert meta["package"]["script_dir"] == "zeek-scripts"
    assert (REPO / meta["package"]["script_dir"] / "__load__.zeek").exists()
    assert meta["package"]["depends"].startswith("zeek >=5")
    assert meta["package"]["test_command"] == "cd zeek-tests && btest -d -j"


# -- the btest suite (run by zkg with a local Zeek; CI checks it is well-formed) -----------
BTESTS = REPO / "zeek-tests"
BTEST = Path(sys.executable).parent / "btest"
TEST_FILES = sorted((BTESTS / "tests").glob("*.zeek"))


def split_btest(path: Path) -> tuple[str, dict[str, str]]:
    """(the Zeek part of a btest file, {embedded file name: content}) as btest splits it."""
    zeek, files, current = [], {}, None
    for line in path.read_text().splitlines(keepends=True):
        if m := re.match(r"#\s*@TEST-START-FILE\s+(\S+)", line):
            current = m.group(1)
            files[current] = ""
        elif re.match(r"#\s*@TEST-END-FILE", line):
            current = None
        elif current is not None:
            files[current] += line
        else:
            zeek.append(line)
    return "".join(zeek), files


def test_btest_suite_is_collected() -> None:
    out = subprocess.run(
        [str(BTEST), "-c", "btest.cfg", "-l"], cwd=BTESTS, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    names = {f"tests.{p.stem}" for p in TEST_FILES}
    assert set(out.stdout.split()) == names and len(names) >= 5


@pytest.mark.parametrize("test", TEST_FILES, ids=lambda p: p.name)
def test_btest_files_are_valid(test: Path, tmp_path: Path) -> None:
    zeek, files = split_btest(test)
    script = tmp_path / test.name
    script.write_text(zeek)
    out = subprocess.run([str(ZEEK_SCRIPT), "parse", "-q", str(script)], capture_output=True)
    assert out.returncode == 0, out.stderr
    assert "@TEST-EXEC:" in zeek and "@TEST-DOC:" in zeek
    for name, content in files.items():
        if name.endswith(".sh"):
            sh = tmp_path / name
            sh.write_text(content)
            assert subprocess.run(["bash", "-n", str(sh)]).returncode == 0
    for kind, ref in re.findall(r"\$(TRACES|SCRIPTS)/([\w.-]+)", zeek):
        assert (BTESTS / kind.title() / ref).exists(), ref


def test_btest_daemon_stand_in_against_real_broker(tmp_path: Path) -> None:
    """The btests' Broker daemon stand-in (zeek-tests/Scripts/daemon-peer.py) does what the
    suite expects when a real Broker endpoint plays Zeek: flows recorded, verdicts and the
    final ``done`` event published."""
    from netanomd.data import attack_files
    from netanomd.flow import FlowBatch
    from netanomd.sources import ReadStats
    from netanomd.sources.files import read_batches
    from netanomd.zeek import binding
    from netanomd.zeek.brokerpy import flows_event

    broker = binding.load_broker()
    path = next(p for p in attack_files() if "remcos" in p.name)
    batch = FlowBatch.concat(list(read_batches([path], ReadStats()))).slice(0, 7)
    ep = broker.Endpoint()
    try:
        sub = ep.make_subscriber(api.VERDICTS_TOPIC)
        status = ep.make_status_subscriber(True)
        port = ep.listen("127.0.0.1", 0)
        env = {**os.environ, "PYTHONPATH": str(Path(broker.__file__).parent.parent)}
        proc = subprocess.Popen(
            [sys.executable, str(BTESTS / "Scripts/daemon-peer.py"), f"{port}/tcp", "1.5"],
            cwd=tmp_path,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 20
        while not any(
            getattr(s, "code", lambda: None)() == broker.SC.PeerAdded for s in status.poll()
        ):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(0.3)
        ep.publish(api.FLOWS_TOPIC + "/0", flows_event(broker, batch))
        names = []
        while len(names) < 8 and time.monotonic() < deadline + 10:
            msg = sub.get(0.2)
            if msg is not None:
                names.append(broker.zeek.Event(msg[1]).name())
        assert proc.wait(20) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        ep.shutdown()
    assert names == ["NetAnom::verdict"] * 7 + ["NetAnomTest::done"]
    lines = (tmp_path / "flows.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == batch.column("uid").to_pylist()
