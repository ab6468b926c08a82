"""Several daemons on one Redis list: throughput of 1 and of 2 real ``netanomd run`` processes
sharing one list (the reliable queue of ``netanomd.sources.redis_list``), measured in one run so
the ratio is fair on a shared machine.

A local ``redis-server`` holds the list. The daemons start first and register; then the whole
backlog appears at once (records pushed to a staging key, then ``RENAME``\\d onto the list) and
the clock runs until the list and every processing list are empty: every record moved, scored,
written to SQLite and acknowledged. Also printed per daemon: flows per CPU-second (its process
time over the run), peak memory (``VmHWM``), and the Redis server's CPU per 100k flows.

The records are real Suricata flow events (``../shared/data/suricata/test6-malicious.suricata.json``
or the repository's test subset), replayed with shifted ``flow_id``\\s as distinct flows. The
model is the demo model with its stored threshold.
Usage: ``python benchmarks/bench_scale.py [--flows N] [--daemons 1 2 1 2]`` (alternating: each
ratio is against the 1-daemon run just before it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (this checkout first on sys.path)

from netanomd.data import demo_model

ROOT = Path(__file__).resolve().parent.parent
EVE = [
    ROOT.parent / "shared/data/suricata/test6-malicious.suricata.json",
    ROOT / "tests/data/eve/test6-malicious-head400.json",
]
KEY = "suricata"
TICK = os.sysconf("SC_CLK_TCK")


def records(n: int) -> list[bytes]:
    path = next(p for p in EVE if p.exists())
    flows = [json.loads(line) for line in path.read_bytes().splitlines() if b'"flow"' in line]
    flows = [f for f in flows if f.get("event_type") == "flow"]
    out: list[bytes] = []
    k = 0
    while len(out) < n:
        for f in flows[: n - len(out)]:
            out.append(json.dumps({**f, "flow_id": int(f["flow_id"]) + (k << 40)}).encode())
        k += 1
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def daemon_config(home: Path, model: Path, url: str, name: str) -> Path:
    cfg: dict[str, Any] = {
        "model": {"path": str(model), "reload_check_seconds": 0},
        "sources": [{"type": "redis", "url": url, "key": KEY, "consumer": name}],
        "sinks": {
            "sqlite": {"path": str(home / f"{name}.db")},
            "metrics": {"listen": f"127.0.0.1:{free_port()}"},
            "zeek_notice": {"enabled": False},
        },
        "state_dir": str(home / f"state-{name}"),
    }
    path = home / f"{name}.yaml"
    path.write_text(json.dumps(cfg))
    return path


def run(n_daemons: int, recs: list[bytes], model: Path, client: Any, url: str, home: Path) -> None:
    client.flushdb()
    names = [f"bench{n_daemons}-{i}" for i in range(n_daemons)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "netanomd",
                "run",
                "-c",
                str(daemon_config(home, model, url, n)),
            ],
            stdout=(home / f"{n}.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        for n in names
    ]
    try:
        while len(client.hgetall(f"{KEY}:consumers")) < n_daemons:
            if any(p.poll() is not None for p in procs):
                raise SystemExit(f"a daemon exited; see {home}")
            time.sleep(0.1)
        pipe = client.pipeline(transaction=False)
        for i in range(0, len(recs), 1000):
            pipe.lpush("staging", *recs[i : i + 1000])
        pipe.execute()
        redis_pid = int(client.info("server")["process_id"])
        cpu0 = [cpu_seconds(p.pid) for p in procs]
        rcpu0 = cpu_seconds(redis_pid)
        t0 = time.perf_counter()
        client.rename("staging", KEY)
        plists = [f"{KEY}:processing:{n}" for n in names]
        while client.llen(KEY) or any(client.llen(p) for p in plists):
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        cpu = [cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0, strict=True)]
        rcpu = cpu_seconds(redis_pid) - rcpu0
        mem = [peak_mib(p.pid) for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
    n = len(recs)
    print(
        f"{n_daemons} daemon(s): {n} flows in {wall:.2f}s = {n / wall:,.0f} flows/s; "
        f"{n / sum(cpu):,.0f} flows per daemon CPU-s (CPU-s per daemon "
        f"{', '.join(f'{c:.2f}' for c in cpu)}), peak {', '.join(f'{m:.0f}' for m in mem)} MiB; "
        f"redis-server {rcpu / n * 1e5:.2f} CPU-s per 100k flows",
        flush=True,
    )
    RESULTS.append((n_daemons, n / wall))


#: (daemons, flows/s) of each run, in order.
RESULTS: list[tuple[int, float]] = []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--daemons", type=int, nargs="+", default=[1, 2, 1, 2])
    args = ap.parse_args()
    import redis

    server = shutil.which("redis-server")
    if server is None:
        print("redis-server not found: skipped")
        return 0
    home = Path(tempfile.mkdtemp(prefix="bench_scale-"))
    model = home / "model.npz"
    demo_model().save(model)
    port = free_port()
    redis_proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        recs = records(args.flows)
        print(f"{os.cpu_count()} cores; {len(recs)} EVE flow records per run", flush=True)
        for k in args.daemons:
            run(k, recs, model, client, url, home)
        # Each run against the 1-daemon run just before it (alternating runs share the noise).
        one = 0.0
        for k, rate in RESULTS:
            if k == 1:
                one = rate
            elif one:
                print(f"{k} daemons / 1 daemon (the run before): {rate / one:.2f}x")
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
