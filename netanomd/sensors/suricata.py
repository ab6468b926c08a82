"""Suricata 7 with netanomd's configuration, in two modes that share it: reading a capture into
``eve.json`` (flow and alert events, Community ID; ``suricata-offline.yaml`` beside this module),
the events put in the order their flows started (Suricata writes the flows still open at the end
of a capture in an order that changes from run to run); and watching an interface with af-packet,
the events going to the daemon's EVE socket (``suricata-live.yaml``, included after the offline
configuration: docs/live-capture.md)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from netanomd.errors import SensorError
from netanomd.sensors.process import Progress, run_sensor
from netanomd.sources.suricata_eve import parse_time

TEMPLATE = Path(__file__).with_name("suricata-offline.yaml")
#: What watching an interface changes, included at the end of the offline configuration.
LIVE_TEMPLATE = Path(__file__).with_name("suricata-live.yaml")

#: The rules ``suricata-update`` builds, where Debian's suricata.yaml loads them from.
INSTALLED_RULES = Path("/var/lib/suricata/rules/suricata.rules")


def installed_rules() -> list[Path]:
    """The installed rule set if there is one (none is fine: flows need no rules)."""
    return [INSTALLED_RULES] if INSTALLED_RULES.is_file() else []


def fill(template: Path, values: dict[str, str]) -> str:
    """``template`` with each ``@NAME@`` replaced by ``values[NAME]``."""
    text = template.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    return text


def render_config(log_dir: Path, rules: list[Path], include: Path | None = None) -> str:
    """The offline configuration with its log directory and rule files filled in, and
    ``include`` (a rendered :func:`render_live`) loaded at its end: what it sets replaces."""
    rule_dir = rules[0].parent if rules else Path("/var/lib/suricata/rules")
    listed = "".join(f"  - {p}\n" for p in rules).rstrip("\n") or "  []"
    text = fill(
        TEMPLATE, {"LOG_DIR": str(log_dir), "RULE_DIR": str(rule_dir), "RULE_FILES": listed}
    )
    return text if include is None else f"{text.rstrip()}\n\ninclude: {include}\n"


def render_live(interface: str, eve_socket: Path) -> str:
    """The live configuration: af-packet on ``interface``, EVE to the stream socket
    ``eve_socket`` (a daemon's ``suricata_socket`` source with ``kind: stream``)."""
    if not interface or any(c.isspace() or c in "/\"'" for c in interface):
        raise SensorError(f"suricata: {interface!r} is not an interface name")
    return fill(LIVE_TEMPLATE, {"INTERFACE": interface, "EVE_SOCKET": str(eve_socket)})


@dataclass
class Suricata:
    """The Suricata binary and the rules it loads."""

    binary: str
    rules: list[Path] = field(default_factory=installed_rules)
    name: str = "suricata"

    def read(self, capture: Path, log_dir: Path, progress: Progress | None = None) -> Path:
        """Run on ``capture`` writing into ``log_dir``; the path of its ``eve.json``."""
        log_dir = log_dir.resolve()  # Suricata runs in it: paths on its command line are absolute
        argv = [*self.configure(log_dir), "-r", str(capture.resolve()), "-k", "none"]
        (log_dir / "eve.json").unlink(missing_ok=True)  # Suricata appends to an old one
        run_sensor(self.name, argv, capture, log_dir, progress)
        eve = log_dir / "eve.json"
        sort_by_flow_start(eve)
        return eve

    def watch(
        self,
        interface: str,
        eve_socket: Path,
        log_dir: Path,
        launcher: Sequence[str] = (),
        timeout: float = 60.0,
        settle: float = 2.0,
    ) -> subprocess.Popen[bytes]:
        """Watch ``interface`` (af-packet), its events going to the daemon's stream socket
        ``eve_socket``, its configuration and console output (``suricata.out``: start, and at the
        end the interface's packet, drop and bad-checksum counts) in ``log_dir``; ``launcher``
        goes before the command (e.g. ``ip netns exec NAME``). Returns ``settle`` seconds after
        Suricata says its engine started (capture is running), else a :class:`SensorError` with
        its last output.
        The caller stops it (SIGTERM: Suricata then logs the flows still open)."""
        log_dir = log_dir.resolve()
        live = log_dir / "netanomd-live.yaml"
        log_dir.mkdir(parents=True, exist_ok=True)
        live.write_text(render_live(interface, eve_socket.resolve()))
        argv = [*launcher, *self.configure(log_dir, live), "--af-packet"]
        argv += ["--set", "logging.default-log-level=notice"]  # "Engine started", the counts
        out = log_dir / f"{self.name}.out"
        with out.open("wb") as fh:
            try:
                proc = subprocess.Popen(argv, cwd=log_dir, stdout=fh, stderr=subprocess.STDOUT)
            except OSError as exc:
                raise SensorError(
                    f"{self.name}: cannot run {argv[0]}: {exc.strerror or exc}"
                ) from exc
        deadline = time.monotonic() + timeout
        while b"Engine started" not in out.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                tail = out.read_text(errors="replace").strip().splitlines()[-8:]
                raise SensorError(
                    f"{self.name} did not start watching {interface} (exit status "
                    f"{proc.returncode}; its output is in {out}):\n  " + "\n  ".join(tail)
                )
            time.sleep(0.1)
        # Once started, af-packet's capture threads synchronise their sockets and drop what
        # arrived before they all were up; Suricata does not say when that is done.
        time.sleep(settle)
        return proc

    def configure(self, log_dir: Path, include: Path | None = None) -> list[str]:
        """Write the configuration (:func:`render_config`) into ``log_dir``; the command line
        both modes start from."""
        log_dir.mkdir(parents=True, exist_ok=True)
        conf = log_dir / "suricata.yaml"
        conf.write_text(render_config(log_dir, self.rules, include))
        argv = [self.binary, "-c", str(conf), "-l", str(log_dir)]
        if not self.rules:
            argv += ["-S", "/dev/null"]  # no rule set installed: say so, do not warn about it
        return argv


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
