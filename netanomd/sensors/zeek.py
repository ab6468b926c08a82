"""Zeek reading a capture into ``conn.log`` with netanomd's package and Community ID logging."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from netanomd.sensors.process import Progress, run_sensor

COMMUNITY_ID = "policy/protocols/conn/community-id-logging"


def package_scripts() -> str:
    """The package's scripts from this source tree, else the name zkg installs it under."""
    here = Path(__file__).resolve().parents[2] / "zeek-scripts"
    return str(here) if (here / "__load__.zeek").is_file() else "netanomd"


@dataclass
class Zeek:
    """The Zeek binary and the scripts it loads."""

    binary: str
    package: str = field(default_factory=package_scripts)
    name: str = "zeek"

    def read(self, capture: Path, log_dir: Path, progress: Progress | None = None) -> Path:
        """Run on ``capture`` (checksums not checked: ``-C``) with its logs in ``log_dir``; the
        path of its ``conn.log``."""
        log_dir.mkdir(parents=True, exist_ok=True)
        argv = [self.binary, "-C", "-r", str(capture.resolve()), self.package, COMMUNITY_ID]
        run_sensor(self.name, argv, capture, log_dir, progress)
        return log_dir / "conn.log"
