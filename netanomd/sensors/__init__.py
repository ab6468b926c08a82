"""Sensors netanomd runs itself on captures (``netanomd pcap``): Zeek when it is installed,
else Suricata 7 (which ``scripts/setup.sh`` installs). Each reads one capture into a flow log
in a directory of its own and returns that log's path."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from netanomd.errors import SensorError
from netanomd.sensors.process import Progress
from netanomd.sensors.suricata import Suricata
from netanomd.sensors.zeek import Zeek


class Sensor(Protocol):
    name: str

    def read(self, capture: Path, log_dir: Path, progress: Progress | None = None) -> Path: ...


def find_sensor(which: Callable[[str], str | None] = shutil.which) -> Sensor:
    """Zeek if it is on PATH, else Suricata (on PATH or Debian's /usr/bin/suricata)."""
    zeek = which("zeek")
    if zeek:
        return Zeek(zeek)
    suricata = which("suricata") or which("/usr/bin/suricata")
    if suricata:
        return Suricata(suricata)
    raise SensorError(
        "neither zeek nor suricata is installed (scripts/setup.sh installs Suricata 7); "
        "or run a sensor yourself and score its logs with 'netanomd score'"
    )
