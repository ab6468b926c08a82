"""``netanomd pcap`` end to end: the real Suricata 7 reading real attack captures (pcap and
pcapng), the incidents they must make, files that are not captures refused before any sensor
runs, the Zeek branch through a stand-in ``zeek`` that checks its arguments, and progress read
from the sensor process."""

from __future__ import annotations

import os
import re
import shutil
import stat
import struct
from pathlib import Path

import pytest

from netanomd.cli import main
from netanomd.data import demo_model
from netanomd.errors import InputError, SensorError
from netanomd.sensors import find_sensor
from netanomd.sensors.capture import capture_format
from netanomd.sensors.process import read_position
from netanomd.sensors.suricata import Suricata, render_config
from netanomd.sensors.zeek import Zeek

DATA = Path(__file__).parent / "data"
PCAPS = DATA / "pcaps"
SURICATA = shutil.which("suricata") or "/usr/bin/suricata"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.npz"
    demo_model().save(path)
    return path


@pytest.fixture
def suricata_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """PATH without zeek, so that the command picks Suricata as it does here."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "suricata").symlink_to(SURICATA)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")


def incidents(out: str) -> list[str]:
    return [ln.strip() for ln in out.splitlines() if re.match(r"\s+\[(low|medium|high)", ln)]


# Each attack capture, what the incident must call it, and who did it (from the trace's source).
ATTACKS = [
    ("ftp_bruteforce.pcap", "(brute force;", "192.168.56.1 opened 30 connections to FTP (21/tcp)"),
    ("ssh_sshguess.pcap", "(brute force;", "192.168.56.1 opened 11 connections to SSH (22/tcp)"),
    ("malicious-ssh-bruteforce.pcap", "(brute force;", "147.32.80.40 opened 67 connections"),
    ("nmap-vsn.pcap", "scan;", "192.168.1.71 sent lone SYNs"),
    ("dhcp_dhcp_flood.pcap", "(UDP flood;", "UDP flood on udp/67"),
    ("test12-icmp-portscan.pcap", "(horizontal scan;", "192.168.1.109 pinged 18 hosts"),
]


@pytest.mark.parametrize(("capture", "kind", "who"), ATTACKS)
@pytest.mark.usefixtures("suricata_only")
def test_each_attack_capture_prints_an_incident_naming_it(
    capture: str,
    kind: str,
    who: str,
    model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = tmp_path / "alerts.db"
    assert main(["pcap", str(PCAPS / capture), "--model", str(model), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert f"1/1 suricata read {PCAPS / capture}" in out
    top = incidents(out)
    assert top and kind in top[0] and who in top[0], out
    assert db.exists()


@pytest.mark.usefixtures("suricata_only")
def test_benign_browsing_makes_no_incident(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "a.db")
    assert main(["pcap", str(PCAPS / "web.pcap"), "--model", str(model), "--db", db]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^[1-9]\d* flows read", out, re.M) and "0 incidents" in out, out


def to_pcapng(pcap: Path, out: Path) -> None:
    """Rewrite a little-endian microsecond pcap as pcapng (section header, one interface,
    an enhanced packet block per packet)."""

    def block(kind: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack("<II", kind, n) + body + struct.pack("<I", n)

    data = pcap.read_bytes()
    assert data[:4] == bytes.fromhex("d4c3b2a1")
    snaplen, linktype = struct.unpack_from("<II", data, 16)
    blocks = [
        block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
        block(1, struct.pack("<HHI", linktype, 0, snaplen)),
    ]
    off = 24
    while off < len(data):
        sec, usec, caplen, origlen = struct.unpack_from("<IIII", data, off)
        ts = sec * 1_000_000 + usec
        head = struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, caplen, origlen)
        blocks.append(block(6, head + data[off + 16 : off + 16 + caplen]))
        off += 16 + caplen
    out.write_bytes(b"".join(blocks))


@pytest.mark.usefixtures("suricata_only")
def test_several_captures_pcapng_too_one_stream_logs_kept(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ng = tmp_path / "ftp_bruteforce.pcapng"
    to_pcapng(PCAPS / "ftp_bruteforce.pcap", ng)
    assert capture_format(ng) == "pcapng"
    monkeypatch.chdir(tmp_path)
    logs = Path("logs")  # relative, as typed
    argv = ["pcap", ng.name, str(PCAPS / "ssh_sshguess.pcap"), str(PCAPS / "ftp_bruteforce.pcap")]
    argv += ["-m", str(model), "--db", str(tmp_path / "a.db"), "--keep-logs", str(logs), "-v"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "3/3 suricata read" in out and f"suricata logs kept in {logs}/" in out
    # The pcapng and its pcap give the same flows: the same-named captures get two directories.
    assert sorted(p.name for p in logs.iterdir()) == [
        "ftp_bruteforce",
        "ftp_bruteforce-2",
        "ssh_sshguess",
    ]
    eves = [(logs / d / "eve.json").read_text() for d in ("ftp_bruteforce", "ftp_bruteforce-2")]
    assert eves[0].count('"event_type":"flow"') == eves[1].count('"event_type":"flow"') > 20
    assert '"community_id":"1:' in eves[0]
    titles = incidents(out)
    assert any("to FTP (21/tcp)" in t for t in titles) and any(
        "to SSH (22/tcp)" in t for t in titles
    )
    assert "flow alerts:" not in out
    # -v: the flow alerts under the incidents (a lower threshold makes some); running again
    # replaces the kept logs, not appends to them.
    assert main([*argv, "--threshold", "0.5"]) == 0
    out = capsys.readouterr().out
    alerts = int(re.findall(r"incidents, (\d+) flow alerts", out)[0])
    assert alerts > 0 and f"top {min(alerts, 15)} flow alerts:" in out, out
    assert (logs / "ftp_bruteforce" / "eve.json").read_text().count("\n") == eves[0].count("\n")


@pytest.mark.usefixtures("suricata_only")
def test_a_file_that_is_not_a_capture_is_refused_before_any_sensor_runs(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = DATA / "zeek" / "ssh_sshguess.tsv.conn.log"
    gz = tmp_path / "x.pcap.gz"
    gz.write_bytes(b"\x1f\x8b\x08\x00" + bytes(40))
    empty = tmp_path / "empty.pcap"
    empty.touch()
    logs = tmp_path / "logs"
    for bad, why in [
        (conn, "not a pcap or pcapng capture (first bytes 23736570"),
        (gz, "gzip-compressed"),
        (empty, "empty file"),
        (tmp_path, "is a directory"),
        (tmp_path / "missing.pcap", "cannot read"),
    ]:
        argv = ["pcap", str(PCAPS / "web.pcap"), str(bad), "-m", str(model)]
        assert main([*argv, "--keep-logs", str(logs), "--db", str(tmp_path / "a.db")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"netanomd: error: {bad}: ") and why in err, err
        assert not logs.exists()  # not even the good capture before it was read
    with pytest.raises(InputError, match="it looks like text: score logs with 'netanomd score'"):
        capture_format(conn)


def test_suricata_config_loads_the_installed_rules_when_there_are_some(tmp_path: Path) -> None:
    rules = tmp_path / "suricata.rules"
    rules.write_text(
        'alert tcp any any -> any 21 (msg:"test FTP login"; content:"USER"; sid:1000001;)\n'
    )
    log_dir = tmp_path / "logs"
    conf = render_config(log_dir, [rules])
    assert f'default-log-dir: "{log_dir}"' in conf and f"  - {rules}\n" in conf
    assert "rule-files:\n  []" in render_config(log_dir, [])
    # The rule fires on the real capture and its alert reaches eve.json beside the flows.
    eve = Suricata(SURICATA, [rules]).read(PCAPS / "ftp_bruteforce.pcap", log_dir)
    text = eve.read_text()
    assert '"signature":"test FTP login"' in text and '"event_type":"flow"' in text


def fake_zeek(bindir: Path, conn_log: Path, status: int = 0) -> Path:
    """A ``zeek`` that records its arguments and working directory and writes a real Zeek
    conn.log (of ssh_sshguess.pcap) where Zeek would, or fails like Zeek does."""
    bindir.mkdir(exist_ok=True)
    script = bindir / "zeek"
    body = (
        f'cp "{conn_log}" conn.log\n'
        if status == 0
        else f'echo "fatal error: problem with trace file" >&2\nexit {status}\n'
    )
    script.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/args"\npwd > "$(dirname "$0")/cwd"\n'
        + body
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_zeek_is_run_when_installed_with_the_package_and_community_id(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    fake_zeek(bindir, DATA / "zeek" / "ssh_sshguess.tsv.conn.log")
    (bindir / "suricata").symlink_to(SURICATA)  # both installed: Zeek wins
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    assert isinstance(find_sensor(), Zeek)
    capture = PCAPS / "ssh_sshguess.pcap"
    logs = tmp_path / "logs"
    argv = ["pcap", str(capture), "-m", str(model), "--db", str(tmp_path / "a.db")]
    assert main([*argv, "--keep-logs", str(logs)]) == 0
    out = capsys.readouterr().out
    args = (bindir / "args").read_text().splitlines()
    package = Path(__file__).resolve().parents[1] / "zeek-scripts"
    assert args == [
        "-C",
        "-r",
        str(capture.resolve()),
        str(package),
        "policy/protocols/conn/community-id-logging",
    ]
    assert (bindir / "cwd").read_text().strip() == str((logs / "ssh_sshguess").resolve())
    assert "1/1 zeek read" in out and "zeek logs kept" in out
    assert re.search(r"opened \d+ connections to SSH \(22/tcp\).*\(brute force;", out), out


def test_a_failing_sensor_is_a_clear_error(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    fake_zeek(bindir, DATA / "zeek" / "ssh_sshguess.tsv.conn.log", status=1)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    capture = PCAPS / "web.pcap"
    assert main(["pcap", str(capture), "-m", str(model), "--db", str(tmp_path / "a.db")]) == 2
    err = capsys.readouterr().err
    assert f"zeek failed on {capture} (exit status 1" in err
    assert "fatal error: problem with trace file" in err


def test_no_sensor_installed_says_what_to_do() -> None:
    with pytest.raises(SensorError, match=r"scripts/setup\.sh installs Suricata 7"):
        find_sensor(lambda name: None)


def test_progress_is_how_far_the_sensor_read_into_the_capture(tmp_path: Path) -> None:
    capture = PCAPS / "malicious-ssh-bruteforce.pcap"
    with capture.open("rb") as fh:
        os.read(fh.fileno(), 1000)
        assert read_position(os.getpid(), capture) == fh.tell()
    assert read_position(os.getpid(), capture) is None  # closed
    seen: list[tuple[int, int]] = []
    Suricata(SURICATA, []).read(capture, tmp_path / "logs", lambda d, t: seen.append((d, t)))
    size = capture.stat().st_size
    assert seen[-1] == (size, size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
