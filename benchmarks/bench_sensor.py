"""netanomd against the sensor it runs beside: CPU per flow of Suricata 7 (no rules, one worker)
turning a capture into EVE flow records, and of ``netanomd score`` (the model ``netanomd
train`` makes) scoring those records, measured in one run on one core (issue 16's goal:
netanomd <= 0.1x Suricata).

The capture is generated here (``out/sensor-<n>.pcap``): ``--flows`` short TCP connections
(handshake, a request and an answer, FIN both ways: 8 packets) between a few hundred hosts, one
every 200 microseconds, so that both programs do the work of a busy link, not of start-up.
The first records of the EVE output are also scored alone: netanomd's start-up (imports, the
numba cache, the model), reported apart from the loop's CPU per flow.
Usage: ``python benchmarks/bench_sensor.py [--flows 200000]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import time
from pathlib import Path

from _common import NETANOMD, ensure_model, measure, out_dir, row

from netanomd.sensors.suricata import Suricata

#: Records in the start-up measurement (a run that does everything but the loop).
STARTUP_FLOWS = 10


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _packet(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
    return eth + ip + tcp


def make_capture(path: Path, flows: int) -> None:
    """``flows`` TCP connections of 8 packets each, as a classic pcap."""
    syn, ack, psh, fin = 0x02, 0x10, 0x08, 0x01
    request, answer = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 400
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        t = 1_700_000_000.0
        for i in range(flows):
            c = bytes([10, 1, (i >> 8) % 4, i % 250 + 1])
            s = bytes([10, 2, 0, (i * 7) % 200 + 1])
            cp, sp = 1024 + i % 60000, (80, 443, 8080)[i % 3]
            a, b = 1000, 5000
            packets = [
                (c, s, cp, sp, a, 0, syn, b""),
                (s, c, sp, cp, b, a + 1, syn | ack, b""),
                (c, s, cp, sp, a + 1, b + 1, ack, b""),
                (c, s, cp, sp, a + 1, b + 1, psh | ack, request),
                (s, c, sp, cp, b + 1, a + 1 + len(request), psh | ack, answer),
                (c, s, cp, sp, a + 1 + len(request), b + 1 + len(answer), fin | ack, b""),
                (s, c, sp, cp, b + 1 + len(answer), a + 2 + len(request), fin | ack, b""),
                (c, s, cp, sp, a + 2 + len(request), b + 2 + len(answer), ack, b""),
            ]
            for k, p in enumerate(packets):
                frame = _packet(*p)
                when = t + i * 0.0002 + k * 0.00002
                sec = int(when)
                fh.write(struct.pack("<IIII", sec, int((when - sec) * 1e6), len(frame), len(frame)))
                fh.write(frame)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--flows", type=int, default=200_000)
    args = ap.parse_args()
    binary = shutil.which("suricata")
    if binary is None:
        raise SystemExit("suricata is not installed (scripts/setup.sh installs it)")
    pcap = out_dir() / f"sensor-{args.flows}.pcap"
    if not pcap.exists():
        make_capture(pcap, args.flows)
    logs = out_dir() / "sensor-logs"
    shutil.rmtree(logs, ignore_errors=True)
    before = os.times()
    start = time.perf_counter()
    eve = Suricata(binary, rules=[]).read(pcap, logs)  # its children's CPU, below
    wall = time.perf_counter() - start
    after = os.times()
    suricata_cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    flows = sum(1 for line in eve.open("rb") if b'"event_type":"flow"' in line)
    model = ensure_model()
    db = out_dir() / "sensor-alerts.db"
    db.unlink(missing_ok=True)
    cmd = [*NETANOMD, "score", "--model", str(model), "--db", str(db)]
    quiet = ["--top", "0", "--incidents", "0", "--no-allowlist"]
    ours = measure([*cmd, "--input", str(eve), *quiet])
    # The same command on the first STARTUP_FLOWS records: what every run pays before its loop.
    head = logs / "eve-head.json"
    with eve.open("rb") as src, head.open("wb") as dst:
        dst.writelines(line for _, line in zip(range(STARTUP_FLOWS), src, strict=False))
    db.unlink(missing_ok=True)
    startup = measure([*cmd, "--input", str(head), *quiet])
    loop = max(ours.cpu - startup.cpu, 0.0)
    print(f"capture: {pcap.name}, {pcap.stat().st_size / 2**20:.0f} MiB, {flows:,} flows in EVE")
    print(
        f"suricata 7 (no rules, -k none): {suricata_cpu:.2f} CPU-s ({wall:.1f} s wall), "
        f"{1e6 * suricata_cpu / flows:.1f} us per flow"
    )
    print(
        f"netanomd score on its eve.json: {ours.cpu:.2f} CPU-s, "
        f"{1e6 * ours.cpu / flows:.1f} us per flow (start-up included), {ours.rss_mib:.0f} MiB"
    )
    print(
        f"  of which start-up ({STARTUP_FLOWS} records): {startup.cpu:.2f} CPU-s; the loop "
        f"{1e6 * loop / flows:.1f} us per flow ({loop / suricata_cpu:.2f}x suricata's)"
    )
    ratio = ours.cpu / suricata_cpu
    print(f"netanomd / suricata CPU per flow: {ratio:.2f}x (goal <= 0.1x)")
    row(
        f"netanomd score vs Suricata 7 producing the flows ({flows:,}-flow pcap), CPU per flow",
        f"{ratio:.2f}x Suricata's ({1e6 * ours.cpu / flows:.1f} vs {1e6 * suricata_cpu / flows:.1f}"
        f" us; goal <= 0.1x); without start-up ({startup.cpu:.2f} CPU-s) "
        f"{loop / suricata_cpu:.2f}x",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
