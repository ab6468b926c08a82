"""Running a sensor process on a capture, with progress read from the process itself: how far
into the capture file its reader is (Linux ``/proc/PID/fdinfo``), against the file's size."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from netanomd.errors import SensorError

#: Called with (bytes of the capture read so far, its size).
Progress = Callable[[int, int], None]


def read_position(pid: int, path: Path) -> int | None:
    """How far process ``pid`` has read into ``path`` (the offset of its descriptor open on it),
    None when it has none open or ``/proc`` cannot tell."""
    target = path.resolve()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        fds = list(fd_dir.iterdir())
    except OSError:
        return None
    for fd in fds:
        try:
            if Path(os.readlink(fd)) != target:
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text()
        except OSError:  # closed meanwhile
            continue
        for line in info.splitlines():
            if line.startswith("pos:"):
                return int(line.split()[1])
    return None


def run_sensor(
    name: str,
    argv: Sequence[str],
    capture: Path,
    cwd: Path,
    progress: Progress | None = None,
    interval: float = 0.5,
) -> None:
    """Run ``argv`` in ``cwd`` until it exits, reporting its progress through ``capture``; a
    :class:`SensorError` naming the sensor, the capture and the end of its output if it fails."""
    size = capture.stat().st_size
    log = cwd / f"{name}.out"
    with log.open("wb") as out:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        except OSError as exc:
            raise SensorError(f"{name}: cannot run {argv[0]}: {exc.strerror or exc}") from exc
        while proc.poll() is None:
            if progress is not None:
                pos = read_position(proc.pid, capture)
                if pos is not None:
                    progress(min(pos, size), size)
            time.sleep(interval)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-8:]
        raise SensorError(
            f"{name} failed on {capture} (exit status {proc.returncode}; its output is in "
            f"{log}):\n  " + "\n  ".join(tail)
        )
    if progress is not None:
        progress(size, size)
