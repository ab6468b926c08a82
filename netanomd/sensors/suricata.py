"""Suricata 7 reading a capture into ``eve.json`` (flow and alert events, Community ID) with
netanomd's offline configuration (``suricata-offline.yaml`` beside this module)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from netanomd.sensors.process import Progress, run_sensor

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
        conf = log_dir / "suricata.yaml"
        conf.write_text(render_config(log_dir.resolve(), self.rules))
        argv = [self.binary, "-c", str(conf), "-r", str(capture.resolve())]
        argv += ["-l", str(log_dir.resolve()), "-k", "none"]
        (log_dir / "eve.json").unlink(missing_ok=True)  # Suricata appends to an old one
        if not self.rules:
            argv += ["-S", "/dev/null"]  # no rule set installed: say so, do not warn about it
        run_sensor(self.name, argv, capture, log_dir, progress)
        return log_dir / "eve.json"
