"""The outcome of each reload, for whoever asked for it: ``state_dir/reload.json``.

Owns the file the daemon answers SIGHUP with and the waiting side that reads it, so ``systemctl
reload netanomd`` (``ExecReload=netanomd reload --pid $MAINPID``) returns only once the daemon
has acted, and fails when the new configuration or model was rejected. The file names the
daemon's pid, a generation counted up by each reload, when the reload began and ended, whether
it succeeded, the model in use afterwards and, on failure, why. It is replaced atomically.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from netanomd.errors import NetanomError
from netanomd.fsutil import write_atomic

FILE_NAME = "reload.json"


@dataclass(frozen=True)
class ReloadResult:
    pid: int
    generation: int
    started: float
    finished: float
    ok: bool
    model: str | None
    error: str


class ReloadResults:
    """The daemon's side: one result per reload (generation 0: the start)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self.generation = 0

    def started(self, model: str) -> None:
        now = time.time()
        self._write(ReloadResult(os.getpid(), 0, now, now, True, model, ""))

    def finished(self, started: float, ok: bool, model: str | None, error: str) -> None:
        self.generation += 1
        result = ReloadResult(os.getpid(), self.generation, started, time.time(), ok, model, error)
        self._write(result)

    def _write(self, result: ReloadResult) -> None:
        write_atomic(self.path, json.dumps(asdict(result)).encode() + b"\n", fsync=False)


def read_result(path: Path) -> ReloadResult | None:
    """The last result, or None when there is none (yet) or it is not one."""
    try:
        data = json.loads(path.read_bytes())
        return ReloadResult(**data)
    except (OSError, ValueError, TypeError):
        return None


def request_reload(state_dir: Path, pid: int, timeout: float) -> ReloadResult:
    """Send SIGHUP to ``pid`` and wait for its answer: the first result of that daemon that
    began after the signal. Raises :class:`NetanomError` when the daemon is gone, never
    answers, or answers for another process (a different state_dir)."""
    path = state_dir / FILE_NAME
    before = read_result(path)
    if before is None or before.pid != pid:
        raise NetanomError(
            f"{path}: no reload answer from pid {pid} "
            f"({'no such file' if before is None else f'written by pid {before.pid}'}); "
            "is the daemon running with this configuration's state_dir?"
        )
    asked = time.time()
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise NetanomError(f"cannot signal pid {pid}: {exc}") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = read_result(path)
        if result is not None and result.pid == pid and result.started >= asked:
            return result
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise NetanomError(f"pid {pid} exited while reloading") from None
        time.sleep(0.05)
    raise NetanomError(f"pid {pid} did not answer the reload within {timeout:g}s (see its log)")
