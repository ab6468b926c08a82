"""The unit under a real systemd as PID 1: start (READY), reload that fails on a rejected model
and succeeds on a good one, a source that cannot open failing the start, no font cache, and a
clean stop — with the unit, sysusers.d and tmpfiles.d files of the repository unchanged.

How: ``unshare --pid --mount --net --fork`` runs a script that bind-mounts ``/`` into a new
root, puts throw-away overlays (upper layer on tmpfs) over ``/etc``, ``/usr`` and ``/var`` and a
tmpfs over ``/run``, ``/tmp`` and ``/opt`` (nothing the test does reaches the host's files),
installs the unit as the README says plus a ``/usr/bin/netanomd`` that runs this checkout with
the system's python3.11 and this environment's packages, brings up ``lo`` in its own network
namespace, ``pivot_root``\\ s into it and execs systemd (``--unit=basic.target``: no other
service of the host starts). The test drives it with ``nsenter`` + ``systemctl``. Needs root
with CAP_SYS_ADMIN, overlayfs, cgroups that systemd can use, and /usr/bin/python3.11 able to
import the packages; it is skipped, saying which is missing, otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netanomd.data import demo_model
from tests.test_daemon import tsv_header, tsv_rows

REPO_DIR = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = Path("/usr/bin/python3.11")
SITE_PACKAGES = sysconfig.get_paths()["purelib"]

BOOT = r"""
set -eu
STAGE=$1
R=$STAGE/root
U=$STAGE/upper
mount --make-rprivate /
mkdir -p "$R" "$U"
mount -t tmpfs tmpfs "$U"
mount --rbind / "$R"
for d in etc usr var; do
  mkdir -p "$U/$d" "$U/$d-work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$U/$d,workdir=$U/$d-work" "$R/$d"
done
# This checkout and its packages, wherever they are (under /tmp, /root, ...), appear read-only
# under /usr, which neither PrivateTmp= nor ProtectHome= hides.
mkdir -p "$R/usr/lib/netanomd-test/src" "$R/usr/lib/netanomd-test/site"
mount --bind -o ro "$2" "$R/usr/lib/netanomd-test/src"
mount --bind -o ro "$3" "$R/usr/lib/netanomd-test/site"
for d in run tmp opt; do mount -t tmpfs tmpfs "$R/$d"; done
cp "$STAGE/netanomd.service" "$R/usr/lib/systemd/system/netanomd.service"
cp "$STAGE/netanomd.sysusers" "$R/usr/lib/sysusers.d/netanomd.conf"
cp "$STAGE/netanomd.tmpfiles" "$R/usr/lib/tmpfiles.d/netanomd.conf"
install -m 0755 "$STAGE/netanomd" "$R/usr/bin/netanomd"
mkdir -p "$R/etc/netanomd" "$R/opt/zeek/logs/current"
cp "$STAGE/conn.log" "$R/opt/zeek/logs/current/conn.log"
cp "$STAGE/model.npz" "$STAGE/model2.npz" "$R/etc/netanomd/"
ip link set lo up
cd "$R"
mkdir -p oldroot
pivot_root . oldroot
umount -l /oldroot
mount -t proc proc /proc
export container=other
exec /lib/systemd/systemd --system --unit=basic.target --log-target=kmsg
"""

WRAPPER = f"""#!/bin/sh
# This checkout, run by the system's python3.11 with the packages of the test environment
# (both bind-mounted under /usr/lib/netanomd-test by the boot script).
export PYTHONPATH=/usr/lib/netanomd-test/src:/usr/lib/netanomd-test/site
exec {SYSTEM_PYTHON} -m netanomd "$@"
"""

CONFIG = """
model: {{path: /var/lib/netanomd/model.npz, reload_check_seconds: 0}}
sources:
  - {{type: zeek_log, path: /opt/zeek/logs/current/conn.log, from_start: true}}
  - {{type: suricata_socket, path: {socket}, kind: stream}}
sinks:
  zeek_notice: {{enabled: false}}
"""


class Machine:
    """systemd as PID 1 in its own PID, mount and network namespaces."""

    def __init__(self, stage: Path) -> None:
        self.proc = subprocess.Popen(
            [
                "unshare",
                "--pid",
                "--mount",
                "--net",
                "--fork",
                "bash",
                "-c",
                BOOT,
                "-",
                stage,
                str(REPO_DIR),
                SITE_PACKAGES,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.pid = self._init_pid()

    def _init_pid(self) -> int:
        deadline = time.monotonic() + 30
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read() if self.proc.stdout else ""
                pytest.fail(f"cannot boot systemd in namespaces here: {out.strip()[-500:]}")
            kids = children.read_text().split()
            if kids and Path(f"/proc/{kids[0]}/exe").resolve().name == "systemd":
                return int(kids[0])
            time.sleep(0.05)
        pytest.fail("systemd did not become PID 1 of the namespace within 30 s")

    def booted(self, timeout: float = 120) -> None:
        """Wait until systemd has finished booting (its bus comes up first)."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.run("systemctl", "is-system-running", "--wait", timeout=timeout)
            if r.stdout.strip() in ("running", "degraded"):
                return
            assert time.monotonic() < deadline, f"systemd did not boot: {r.stdout}{r.stderr}"
            time.sleep(0.2)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "-p", "-n", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def check(self, *args: str, timeout: float = 120) -> str:
        r = self.run(*args, timeout=timeout)
        assert r.returncode == 0, f"{args}: {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def show(self, prop: str) -> str:
        return self.check("systemctl", "show", "-P", prop, "netanomd").strip()

    def journal(self) -> str:
        return self.check("journalctl", "-u", "netanomd", "--no-pager", "-o", "cat")

    def write(self, path: str, data: bytes) -> None:
        r = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "sh", "-c", f"cat > {path}"],
            input=data,
            capture_output=True,
            timeout=30,
        )
        assert r.returncode == 0, r.stderr

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, 9)  # the namespace's init: every process in it goes with it
        self.proc.wait(30)


def _requirements() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    if not Path("/lib/systemd/systemd").exists():
        return "needs systemd"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "needs overlayfs"
    probe = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import numpy, pyarrow, numba, yaml"],
        env={"PYTHONPATH": SITE_PACKAGES, "PATH": "/usr/bin:/bin"},
        capture_output=True,
    )
    if probe.returncode != 0:
        return f"{SYSTEM_PYTHON} cannot import this environment's packages"
    return None


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    why = _requirements()
    if why:
        pytest.fail(f"the PID 1 test needs what this machine lacks: {why} (.ci/run installs it)")
    stage = tmp_path_factory.mktemp("pid1")
    for name in ("netanomd.service", "netanomd.sysusers", "netanomd.tmpfiles"):
        shutil.copy(REPO_DIR / "systemd" / name, stage / name)
    (stage / "netanomd").write_text(WRAPPER)
    (stage / "conn.log").write_bytes(tsv_header() + b"".join(tsv_rows()))
    demo_model().save(stage / "model.npz")
    demo_model(seed=7).save(stage / "model2.npz")
    m = Machine(stage)
    try:
        m.booted()
        m.check("systemd-sysusers")
        m.check("systemd-tmpfiles", "--create", "netanomd.conf")
        yield m
    finally:
        m.close()


def _configure(m: Machine, socket: str) -> None:
    m.write("/etc/netanomd/netanomd.yaml", CONFIG.format(socket=socket).encode())
    m.check("install", "-d", "-o", "netanomd", "-g", "netanomd", "/var/lib/netanomd")
    m.check(
        "install",
        *("-o", "netanomd", "-g", "netanomd", "-m", "0640"),
        *("/etc/netanomd/model.npz", "/var/lib/netanomd/model.npz"),
    )


def test_start_reload_and_stop_under_systemd(machine: Machine) -> None:
    m = machine
    _configure(m, "/run/netanomd/eve.sock")
    m.check("systemctl", "start", "netanomd", timeout=300)  # returns on READY=1
    assert m.show("ActiveState") == "active" and m.show("SubState") == "running"
    status = m.check("systemctl", "status", "--no-pager", "netanomd")
    assert "Status:" in status
    assert m.check("test", "-S", "/run/netanomd/eve.sock") == ""
    # The sandbox leaves the followed log, the database and the endpoint usable.
    url = "http://127.0.0.1:9750"
    deadline = time.monotonic() + 60
    while "netanomd_flows_scored_total 766.0" not in m.check("curl", "-s", url + "/metrics"):
        assert time.monotonic() < deadline, m.check("curl", "-s", url + "/healthz")
        time.sleep(0.2)
    assert '"ready": true' in m.check("curl", "-s", url + "/healthz")
    first = m.journal().split("netanomd ready: model ")[1].split(",")[0]

    # A rejected model: systemctl reload fails, the daemon keeps running the old one.
    m.write("/var/lib/netanomd/model.npz", b"PK\x03\x04 not a model")
    r = m.run("systemctl", "reload", "netanomd")
    assert r.returncode != 0, r
    assert m.show("ActiveState") == "active"
    assert f"reload refused, still running {first}: model /var/lib/netanomd/model.npz" in (
        m.journal()
    )
    # A good one: reload returns 0 once the daemon uses it.
    m.check(
        "install",
        *("-o", "netanomd", "-g", "netanomd", "-m", "0640"),
        *("/etc/netanomd/model2.npz", "/var/lib/netanomd/model.npz"),
    )
    m.check("systemctl", "reload", "netanomd")
    second = m.journal().split("reloaded: model ")[1].split()[0]
    assert second != first
    assert f'model_id="{second}"' in m.check("curl", "-s", url + "/metrics")

    # No font cache (matplotlib) anywhere the daemon may write.
    found = m.check("find", "/var/lib/netanomd", "/var/cache/netanomd", "-iname", "*font*")
    assert found == ""

    m.check("systemctl", "stop", "netanomd", timeout=120)
    assert m.show("ActiveState") == "inactive"
    assert m.show("ExecMainStatus") == "0" and m.show("Result") == "success"


@pytest.mark.parametrize(
    ("directory", "cause"),
    [
        ("/run/no-such-dir", "FileNotFoundError"),
        ("/run/suricata", "PermissionError"),  # exists, root's, not the service's to write
    ],
)
def test_source_that_cannot_open_fails_the_start_under_systemd(
    machine: Machine, directory: str, cause: str
) -> None:
    m = machine
    if directory == "/run/suricata":
        m.check("install", "-d", "-m", "0755", "-o", "root", "-g", "root", directory)
    m.run("systemctl", "reset-failed", "netanomd")
    _configure(m, f"{directory}/eve.sock")
    r = m.run("systemctl", "start", "netanomd", timeout=300)
    assert r.returncode != 0  # never READY=1
    assert m.show("Result") == "exit-code" and m.show("ExecMainStatus") == "2"
    failed = f"source suricata_socket[1] ({directory}/eve.sock) failed to start: "
    line = next(ln for ln in m.journal().splitlines()[::-1] if failed in ln)
    assert cause in line, line
    m.run("systemctl", "stop", "netanomd")
