"""SIGTERM while a real ``netanomd run`` process is still starting (its Redis source not up
yet): it stops cleanly at once (exit 0, STOPPING=1, the sinks closed) and never says READY=1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import free_port
from tests.test_daemon import NotifyListener, model_path, write_config
from tests.waiting import wait

__all__ = ["model_path"]  # the fixture, shared with test_daemon


def test_sigterm_while_starting_stops_cleanly_without_ready(
    tmp_path: Path, model_path: Path
) -> None:
    # Nothing listens there: the source keeps retrying and the start waits for it (10 s).
    url = f"redis://127.0.0.1:{free_port()}/0"
    cfg = write_config(tmp_path, model_path, [{"type": "redis", "url": url, "key": "eve"}])
    listener = NotifyListener(tmp_path / "notify.sock")
    out = tmp_path / "daemon.log"
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    env["NETANOMD_LOG_LEVEL"] = "info"
    with out.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "netanomd", "run", "-c", str(cfg)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait(lambda: b"retrying in" in out.read_bytes(), 60, "the source's first retry")
        asked = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        took = time.monotonic() - asked
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.read_text()
    assert code == 0, text[-3000:]
    assert took < 3.0, f"stopped {took:.1f}s after SIGTERM: the start ran on\n{text[-3000:]}"
    assert "stop requested while starting (waiting for source redis[0])" in text, text[-3000:]
    assert "stopped" in text.splitlines()[-1]
    listener.pump()
    assert any(m.startswith("STOPPING=1") for m in listener.messages), listener.messages
    assert not any("READY=1" in m for m in listener.messages), listener.messages
    assert (tmp_path / "alerts.db").exists()  # the sink was opened, and closed on the way out
