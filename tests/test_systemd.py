"""The systemd integration: the unit (verify, sandbox exposure), sysusers.d/tmpfiles.d files,
and the sd_notify protocol of netanomd.sdnotify against real AF_UNIX datagram sockets."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from netanomd.sdnotify import Notifier

REPO_DIR = Path(__file__).resolve().parent.parent
SYSTEMD_DIR = REPO_DIR / "systemd"
UNIT = SYSTEMD_DIR / "netanomd.service"
SYSUSERS = SYSTEMD_DIR / "netanomd.sysusers"
TMPFILES = SYSTEMD_DIR / "netanomd.tmpfiles"
EXEC_START = "/usr/bin/netanomd run --config /etc/netanomd/netanomd.yaml"
EXEC_RELOAD = "/usr/bin/netanomd reload --config /etc/netanomd/netanomd.yaml --pid $MAINPID"
MAX_EXPOSURE = 1.5


def _tool(name: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    assert Path(path).exists(), f"{name} is not installed"
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=120, env={**os.environ, "LC_ALL": "C"}
    )


def _unit_settings(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> values, in order, of a unit file (comments and blank lines skipped)."""
    settings: dict[tuple[str, str], list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        settings.setdefault((section, key.strip()), []).append(value.strip())
    return settings


def _verifiable_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with ExecStart and ExecReload pointed at /bin/true (/usr/bin/netanomd is not
    installed here)."""
    text = UNIT.read_text() if text is None else text
    assert f"ExecStart={EXEC_START}\n" in text and f"ExecReload={EXEC_RELOAD}\n" in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace("=/usr/bin/netanomd ", "=/bin/true "))
    return copy


# ---- the unit ---------------------------------------------------------------------------------


def test_unit_settings() -> None:
    s = _unit_settings(UNIT.read_text())
    svc = {key: values for (section, key), values in s.items() if section == "Service"}
    single = {key: values[-1] for key, values in svc.items()}
    assert single["Type"] == "notify"
    assert single["NotifyAccess"] == "main"
    assert single["ExecStart"] == EXEC_START
    assert single["ExecReload"] == EXEC_RELOAD
    assert single["User"] == single["Group"] == "netanomd"
    assert "DynamicUser" not in svc
    for key in ("StateDirectory", "ConfigurationDirectory", "RuntimeDirectory", "CacheDirectory"):
        assert single[key] == "netanomd"
    assert (
        "Environment" in svc and "NUMBA_CACHE_DIR=/var/cache/netanomd/numba" in svc["Environment"]
    )
    assert single["WatchdogSec"] == "30"
    assert single["Restart"] == "on-failure"
    assert single["TimeoutStopSec"] == "60"
    assert single["KillSignal"] == "SIGTERM"
    assert single["UMask"] == "0077"
    assert single["CapabilityBoundingSet"] == "" and single["AmbientCapabilities"] == ""
    assert single["ProtectSystem"] == "strict"
    assert single["RestrictAddressFamilies"].split() == ["AF_UNIX", "AF_INET", "AF_INET6"]
    assert svc["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert single["BindReadOnlyPaths"].split() == [
        "-/opt/zeek/logs",
        "-/var/log/zeek",
        "-/var/log/suricata",
    ]
    # Elasticsearch may be anywhere: no IP allow/deny lists.
    assert "IPAddressDeny" not in svc and "IPAddressAllow" not in svc
    # numba's JIT needs to mprotect() code executable: this must stay off (see the comment).
    assert single["MemoryDenyWriteExecute"] == "no"
    for key in (
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "PrivateUsers",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
        "RestrictNamespaces",
        "RestrictRealtime",
        "RestrictSUIDSGID",
        "LockPersonality",
        "RemoveIPC",
    ):
        assert single[key] == "yes", key
    assert single["ProtectProc"] == "invisible" and single["ProcSubset"] == "pid"
    assert single["DevicePolicy"] == "closed" and single["KeyringMode"] == "private"
    assert single["SystemCallArchitectures"] == "native"
    assert single["MemoryMax"] == "2G" and "TasksMax" in single


def test_unit_verifies_clean(tmp_path: Path) -> None:
    # With an existing ExecStart binary, verify prints nothing at all: no unknown keys, no
    # unparsable values, no missing ExecReload binary. (systemd 252 does not check that
    # User= exists, so the absent netanomd user is not reported.)
    result = _run(_tool("systemd-analyze"), "verify", str(_verifiable_copy(tmp_path)))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_unit_verify_reports_only_the_missing_binary() -> None:
    # The unmodified unit fails verify only because /usr/bin/netanomd is not installed here
    # (once for ExecStart, once for ExecReload).
    result = _run(_tool("systemd-analyze"), "verify", str(UNIT))
    assert result.returncode != 0
    lines = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
    missing = (
        "netanomd.service: Command /usr/bin/netanomd is not executable: No such file or directory"
    )
    assert lines == [missing, missing]


def test_unit_verify_catches_mistakes(tmp_path: Path) -> None:
    # The clean result above means something: verify does flag bad keys and values.
    broken = UNIT.read_text().replace("Type=notify\n", "Type=notifyy\nNoSuchKey=1\n")
    result = _run(_tool("systemd-analyze"), "verify", str(_verifiable_copy(tmp_path, broken)))
    out = result.stdout + result.stderr
    assert "Failed to parse service type" in out
    assert "Unknown key 'NoSuchKey'" in out


def test_unit_security_exposure() -> None:
    result = _run(_tool("systemd-analyze"), "security", "--offline=yes", "--no-pager", str(UNIT))
    out = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for netanomd\.service: (\d+(?:\.\d+)?)", out)
    assert match, out
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, out
    # The only remaining exposures are the ones the daemon needs (network, sockets, W+X for
    # numba) or cannot avoid (host root, the rtc ACL ProtectClock= adds, remote Elasticsearch).
    failed = {m.group(1) for m in re.finditer(r"^✗ (\S+)", out, re.MULTILINE)}
    assert failed <= {
        "RootDirectory=/RootImage=",
        "MemoryDenyWriteExecute=",
        "RestrictAddressFamilies=~AF_UNIX",
        "RestrictAddressFamilies=~AF_(INET|INET6)",
        "PrivateNetwork=",
        "DeviceAllow=",
        "IPAddressDeny=",
    }, out


# ---- sysusers.d / tmpfiles.d ------------------------------------------------------------------


def test_sysusers_dry_run_parses(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    result = _run(_tool("systemd-sysusers"), "--dry-run", f"--root={tmp_path}", str(SYSUSERS))
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "Creating group 'netanomd'" in out and "Creating user 'netanomd'" in out
    assert not (tmp_path / "etc" / "passwd").exists()  # a dry run writes nothing


def test_sysusers_dry_run_rejects_garbage(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    bad = tmp_path / "bad.conf"
    bad.write_text("x netanomd - - /var/lib/netanomd\n")
    result = _run(_tool("systemd-sysusers"), "--dry-run", f"--root={tmp_path}", str(bad))
    assert result.returncode != 0 and "Unknown command type" in result.stderr


@pytest.fixture()
def sysroot(tmp_path: Path) -> Path:
    """An alternate root in which systemd-sysusers really created the netanomd user."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    result = _run(_tool("systemd-sysusers"), f"--root={root}", str(SYSUSERS))
    assert result.returncode == 0, result.stderr
    return root


def test_sysusers_creates_system_user(sysroot: Path) -> None:
    passwd = {
        line.split(":")[0]: line.split(":")
        for line in (sysroot / "etc" / "passwd").read_text().splitlines()
    }
    _name, _pw, uid, gid, _gecos, home, shell = passwd["netanomd"]
    assert 0 < int(uid) < 1000  # a system user
    assert home == "/var/lib/netanomd"
    assert shell.endswith("/nologin")
    groups = {
        line.split(":")[0]: line.split(":")
        for line in (sysroot / "etc" / "group").read_text().splitlines()
    }
    assert groups["netanomd"][2] == gid


def test_tmpfiles_creates_dirs(sysroot: Path) -> None:
    # tmpfiles resolves user names from the alternate root's /etc/passwd. Setting the owner
    # needs root (as this test suite runs).
    result = _run(_tool("systemd-tmpfiles"), f"--root={sysroot}", "--create", str(TMPFILES))
    assert result.returncode == 0, result.stderr
    uid = gid = -1
    for line in (sysroot / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "netanomd":
            uid, gid = int(fields[2]), int(fields[3])
    state = (sysroot / "var/lib/netanomd").stat()
    assert (stat.S_IMODE(state.st_mode), state.st_uid, state.st_gid) == (0o750, uid, gid)
    conf = (sysroot / "etc/netanomd").stat()
    assert (stat.S_IMODE(conf.st_mode), conf.st_uid, conf.st_gid) == (0o750, 0, gid)


def test_tmpfiles_needs_the_user(tmp_path: Path) -> None:
    # Without sysusers first, tmpfiles refuses: the owner names in the file are really checked.
    result = _run(_tool("systemd-tmpfiles"), f"--root={tmp_path}", "--create", str(TMPFILES))
    assert result.returncode != 0
    assert "Failed to resolve user 'netanomd'" in result.stderr


# ---- sd_notify ----------------------------------------------------------------------------------


@pytest.fixture()
def path_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket in tmp_path and its NOTIFY_SOCKET value."""
    path = tmp_path / "n.sock"
    assert len(bytes(path)) < 108, "socket path too long for sun_path"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


@pytest.fixture()
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    """A bound abstract-namespace AF_UNIX datagram socket and its '@name' NOTIFY_SOCKET value."""
    name = f"netanomd-test-{os.getpid()}-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    yield sock, "@" + name
    sock.close()


def _assert_nothing_pending(sock: socket.socket) -> None:
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)


@pytest.mark.parametrize("which", ["path_socket", "abstract_socket"])
def test_notifier_sends_protocol_datagrams(which: str, request: pytest.FixtureRequest) -> None:
    sock, address = request.getfixturevalue(which)
    notifier = Notifier(env={"NOTIFY_SOCKET": address})
    assert notifier.enabled

    assert notifier.ready() is True
    assert sock.recv(4096) == b"READY=1"

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading() is True
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reloading = sock.recv(4096).decode()
    match = re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=(\d+)", reloading)
    assert match, reloading
    assert before <= int(match.group(1)) <= after

    assert notifier.status("scoring 1234 flows/s") is True
    assert sock.recv(4096) == b"STATUS=scoring 1234 flows/s"
    assert notifier.status("two\nlines") is True  # a newline would start a new field
    assert sock.recv(4096) == b"STATUS=two lines"

    assert notifier.watchdog() is True
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping() is True
    assert sock.recv(4096) == b"STOPPING=1"

    notifier.close()
    assert notifier.ready() is True  # reopens after close()
    assert sock.recv(4096) == b"READY=1"
    notifier.close()
    _assert_nothing_pending(sock)


def test_notifier_reads_os_environ_by_default(
    path_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, address = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    notifier = Notifier()
    assert notifier.ready() is True
    assert sock.recv(4096) == b"READY=1"
    notifier.close()


class _RecordingSocket(socket.socket):
    def __init__(self) -> None:
        super().__init__(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sent: list[tuple[bytes, object]] = []

    def sendto(self, data: object, *args: object) -> int:
        assert isinstance(data, bytes)
        self.sent.append((data, args[-1]))
        return len(data)


def test_notifier_uses_the_socket_factory() -> None:
    created: list[_RecordingSocket] = []

    def factory() -> socket.socket:
        created.append(_RecordingSocket())
        return created[-1]

    notifier = Notifier(env={"NOTIFY_SOCKET": "@abstract"}, socket_factory=factory)
    assert notifier.ready() and notifier.watchdog()
    assert len(created) == 1  # one socket, reused
    assert created[0].sent == [(b"READY=1", "\0abstract"), (b"WATCHDOG=1", "\0abstract")]
    notifier.close()


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "relative/sock"}])
def test_notifier_is_a_noop_without_socket(env: dict[str, str]) -> None:
    def factory() -> socket.socket:
        raise AssertionError("no socket may be created")

    notifier = Notifier(env=env, socket_factory=factory)
    assert not notifier.enabled
    for call in (notifier.ready, notifier.reloading, notifier.stopping, notifier.watchdog):
        assert call() is False
    assert notifier.status("x") is False
    notifier.close()


def test_notifier_never_raises_on_send_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = str(tmp_path / "gone.sock")  # nobody listens here
    notifier = Notifier(env={"NOTIFY_SOCKET": missing})
    with caplog.at_level(logging.DEBUG, logger="netanomd.sdnotify"):
        assert notifier.ready() is False
        assert notifier.watchdog() is False
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.DEBUG]
    assert missing in caplog.records[0].getMessage()

    def broken_factory() -> socket.socket:
        raise OSError("socket() refused")

    assert Notifier(env={"NOTIFY_SOCKET": "@x"}, socket_factory=broken_factory).ready() is False
    notifier.close()


def test_notifier_never_waits_on_a_listener_that_stopped_reading(
    path_socket: tuple[socket.socket, str],
) -> None:
    """The kernel queues only a few datagrams for a socket nobody reads: the sends past that are
    dropped (False) at once instead of blocking the caller, and sending works again once the
    listener reads."""
    sock, address = path_socket
    notifier = Notifier(env={"NOTIFY_SOCKET": address})
    results: list[bool] = []
    sender = threading.Thread(
        target=lambda: results.extend(notifier.status(f"s{i}") for i in range(500)), daemon=True
    )
    sender.start()
    sender.join(10)
    assert not sender.is_alive(), "a send blocked on the full queue"
    assert results[0] is True and results.count(False) > 0
    queued = results.index(False)
    sock.setblocking(False)
    got = []
    with contextlib.suppress(BlockingIOError):
        while True:
            got.append(sock.recv(4096))
    assert got[0] == b"STATUS=s0" and len(got) >= queued
    assert notifier.ready() is True
    sock.settimeout(5)
    assert sock.recv(4096) == b"READY=1"
    notifier.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "1500000"}, 1.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "<self>"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "<other>"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "garbage"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "thirty"}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_PID": "<self>"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    pids = {"<self>": str(os.getpid()), "<other>": str(os.getpid() + 1)}
    env = {key: pids.get(value, value) for key, value in env.items()}
    assert Notifier(env=env).watchdog_interval() == expected
