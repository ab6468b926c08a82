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
