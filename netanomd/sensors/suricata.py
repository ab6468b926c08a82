"""Suricata 7 reading a capture into ``eve.json`` (flow and alert events, Community ID) with
netanomd's offline configuration (``suricata-offline.yaml`` beside this module), the events put
in the order their flows started (Suricata writes the flows still open at the end of a capture
in an order that changes from run to run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import orjson

from netanomd.errors import SensorError
from netanomd.sensors.process import Progress, run_sensor
from netanomd.sources.suricata_eve import parse_time

TEMPLATE = Path(__file__).with_name("suricata-offline.yaml")

#: The rules ``suricata-update`` builds, where Debian's suricata.yaml loads them from.
INSTALLED_RULES = Path("/var/lib/suricata/rules/suricata.rules")


def installed_rules() -> list[Path]:
    """The installed rule set if there is one (none is fine: flows need no rules)."""
    return [INSTALLED_RULES] if INSTALLED_RULES.is_file() else []


def render_config(log_dir: Path, rules: list[Path]) -> str:
    """The offline configuration with its log directory and rule files filled in."""
    rule_dir = rules[0].parent if rules else Path("/var/lib/suricata/rules")
    listed = "".join(f"  - {p}\n" for p in rules).rstrip("\n") or "  []"
    return (
        TEMPLATE.read_text()
        .replace("@LOG_DIR@", str(log_dir))
        .replace("@RULE_DIR@", str(rule_dir))
        .replace("@RULE_FILES@", listed)
    )


@dataclass
class Suricata:
    """The Suricata binary and the rules it loads."""

    binary: str
    rules: list[Path] = field(default_factory=installed_rules)
    name: str = "suricata"

    def read(self, capture: Path, log_dir: Path, progress: Progress | None = None) -> Path:
        """Run on ``capture`` writing into ``log_dir``; the path of its ``eve.json``."""
        log_dir.mkdir(parents=True, exist_ok=True)
        log_dir = log_dir.resolve()  # Suricata runs in it: paths on its command line are absolute
        conf = log_dir / "suricata.yaml"
        conf.write_text(render_config(log_dir, self.rules))
        argv = [self.binary, "-c", str(conf), "-r", str(capture.resolve())]
        argv += ["-l", str(log_dir), "-k", "none"]
        (log_dir / "eve.json").unlink(missing_ok=True)  # Suricata appends to an old one
        if not self.rules:
            argv += ["-S", "/dev/null"]  # no rule set installed: say so, do not warn about it
        run_sensor(self.name, argv, capture, log_dir, progress)
        eve = log_dir / "eve.json"
        sort_by_flow_start(eve)
        return eve


def sort_by_flow_start(eve: Path) -> None:
    """Rewrite ``eve`` with its events in the order their flows started, a flow's alerts before
    the flow (ties by flow id): the same capture gives the same order."""

    def key(numbered: tuple[int, bytes]) -> tuple[float, int, int]:
        num, line = numbered
        try:
            ev = orjson.loads(line)
            when = ev.get("flow", {}).get("start") or ev["timestamp"]
            return parse_time(when), ev["event_type"] != "alert", ev.get("flow_id") or 0
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
            raise SensorError(f"{eve}:{num}: a Suricata event without a time: {exc}") from exc

    lines = eve.read_bytes().splitlines()
    ordered = sorted(enumerate(lines, 1), key=key)
    eve.write_bytes(b"".join(line + b"\n" for _, line in ordered))
