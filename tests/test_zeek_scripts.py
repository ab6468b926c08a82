"""The Zeek package: every script parses (zeekscript), and api.zeek matches netanomd.zeek.api."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
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


def api_zeek_specs() -> dict[str, api.EventSpec]:
    """api.zeek's events as declarations (what a codec needs to build and parse them)."""
    return {name: api.EventSpec(name, tuple(args)) for name, args in parse_api_zeek()[1].items()}


def test_api_mirror_matches_api_zeek() -> None:
    version, events = parse_api_zeek()
    assert version == api.VERSION
    assert set(events) == {e.name for e in api.EVENTS}
    for spec in api.EVENTS:
        assert events[spec.name] == list(spec.args), spec.name
        assert spec.args[0] == ("contract", "string"), "every event carries the version first"
        assert all(api.element_type(t) in api.BROKER_TYPES for _, t in spec.args), spec.name


MAIN = (REPO / "zeek-scripts/main.zeek").read_text()


def test_main_zeek_publishes_exactly_the_declared_arguments() -> None:
    """Every publish call passes the version first and then the batch's vectors (or the drain
    token) in api.zeek's order."""
    _, events = parse_api_zeek()
    calls = re.findall(r"(?:Cluster|Broker)::publish\(topic, (NetAnom::\w+),(.*?)\);", MAIN, re.S)
    assert sorted(name for name, _ in calls) == ["NetAnom::drain"] * 2 + ["NetAnom::flows"] * 2
    for name, call in calls:
        fields = [a.strip().removeprefix("b$") for a in call.split(",")]
        expected = [a for a, _ in events[name]]
        expected[expected.index("contract")] = "version"  # the constant NetAnom::version
        if name == api.DRAIN.name:
            expected[expected.index("token")] = "k"  # the shard number
        assert fields == expected, name


def test_main_zeek_handlers_take_the_declared_arguments() -> None:
    """The handlers of the events the daemon sends have api.zeek's signatures exactly."""
    _, events = parse_api_zeek()
    for spec in api.OUTBOUND:
        m = re.search(rf"event {spec.name}\((.*?)\)\n", MAIN, re.S)
        assert m, spec.name
        args = [tuple(p.strip() for p in a.split(":")) for a in m.group(1).split(",")]
        assert args == [(a, " ".join(t.split())) for a, t in events[spec.name]], spec.name


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
    assert set(out.stdout.split()) == names and len(names) >= 7


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


def test_no_handler_parameter_shadows_a_module_identifier() -> None:
    """Zeek refuses a local or parameter named like an identifier of an enclosing scope
    ("already defined", zeek/zeek#3941), so no event or function parameter may reuse a name
    api.zeek, config.zeek or main.zeek declares at module level."""
    scripts = {p.name: p.read_text() for p in (REPO / "zeek-scripts").glob("*.zeek")}
    text = "\n".join(scripts.values())
    declared = set(re.findall(r"^\s*(?:const|global|option)\s+(\w+)\s*[:=]", text, re.M))
    declared |= set(re.findall(r"^\s*global\s+(\w+)\s*:\s*(?:event|function|hook)", text, re.M))
    params = []
    for m in re.finditer(r"^(?:event|function|hook)\s+[\w:]+\((.*?)\)", text, re.M | re.S):
        params += [p.split(":")[0].strip() for p in m.group(1).split(",") if ":" in p]
    for m in re.finditer(r"\b(?:event|function)\((.*?)\)", text, re.S):
        params += [p.split(":")[0].strip() for p in m.group(1).split(",") if ":" in p]
    assert declared and params
    assert sorted(set(params) & declared) == []
