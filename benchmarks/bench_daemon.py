"""The running daemon end to end, one core: flows per daemon CPU-second (and per wall second)
from a Suricata EVE unix socket, the Zeek WebSocket source and a Redis list into SQLite, where
the daemon's CPU went (its source thread, its scoring thread), and the p99 time from a flow's
arrival to its alert being written at a steady 10,000 flows/s (target <= 50 ms, issue 16):
from the daemon's read of it, and from its send (the sender writes its send time into the
record's label), so time spent queued in the socket counts.

The daemon (``netanomd.daemon.service.Daemon``, the same object ``netanomd run`` drives) runs in
this process pinned to core 0; the sender runs in another process on core 1:

* EVE: real Suricata flow records (``../shared/data/suricata/test6-malicious.suricata.json``
  flow events, or the repository's test subset) sent one record per datagram, as Suricata's
  ``unix_dgram`` output does, to the daemon's socket (a unix datagram socket blocks the sender
  when the daemon's receive queue is full, so nothing is lost; it holds
  ``net.unix.max_dgram_qlen`` datagrams, 10 by default, so the daemon wakes every few records);
  ``eve-stream``: the same records a line each on one ``unix_stream`` connection, as Suricata's
  ``unix_stream`` output writes them;
* WebSocket: ``NetAnom::flows`` frames of 100 flows from the peer in ``tests/zeek_ws_server.py``;
* Redis: the same EVE records pushed to a list (``LPUSH``, as Suricata's ``mode: list``) of a
  local ``redis-server`` before the daemon starts; the daemon pops the backlog.

CPU is the daemon's process time over the run (its threads only: the senders are other
processes); the split comes from each thread's ``/proc`` counters.

The model is the demo model with its stored threshold; the alerts it raises on these captures
are written to SQLite (the count is printed). The pipeline keeps its defaults but for batch size,
timeout and queue length: de-duplication by community id is on, and each replayed EVE record
carries a community id of its own (a capture replayed again would otherwise be all duplicates).
Usage: ``python benchmarks/bench_daemon.py [--flows N] [--only eve ws redis latency]``.

Where the daemon's CPU goes, per thread and stage (a py-spy profile of one run)::

    py-spy record -r 100 -f raw -o prof.txt -- python benchmarks/bench_daemon.py --only eve
    python benchmarks/bench_daemon.py --stages prof.txt

The source thread's samples split into its I/O (socket, Redis client, WebSocket and asyncio),
decoding records into batches, and the hand-off to the scoring queue; the scoring thread's into
the stream's stages (as ``stages.py`` names them), the sinks and the rest of the pipeline; the
training reservoir's thread's into leaving out the open incidents' flows, the drift sample,
writing day files and the sample itself. Samples of the benchmark's own threads (start-up, the
senders' set-up, its polling) are left out.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import multiprocessing as mp
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import ensure_model, row

from netanomd.daemon.service import Daemon
from netanomd.sdnotify import Notifier

ROOT = Path(__file__).resolve().parent.parent

#: The EVE records sent: the whole capture from the shared data (``$SHARED_DATA``, default
#: ``../shared/data`` beside the repository), else the repository's 400-line subset. Which one
#: was used is printed: their flows cost differently (the whole capture's 3,512 flows span more
#: hours a batch), so compare runs on the same one.
EVE = [
    Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared/data"))
    / "suricata/test6-malicious.suricata.json",
    ROOT / "tests/data/eve/test6-malicious-head400.json",
]


#: The label of a sent record holds its send time (``time.monotonic``, one clock for every
#: process of the machine), so the latency run measures from send, not from the daemon's read:
#: time spent in the socket's queue counts too. Labels are never features.
SENT = b'"label": "%20.6f"'
UNSENT = SENT % 0.0


def eve_records(n: int) -> list[bytes]:
    src = next(p for p in EVE if p.exists())
    print(f"  (EVE records: {n:,} from the {src.name} flows, {src})")
    flows = [ln for ln in src.read_bytes().splitlines() if b'"event_type":"flow"' in ln]
    out = []
    for i in range(n):
        ev = json.loads(flows[i % len(flows)])
        ev["flow_id"] = 10_000_000 + i
        # each replayed record a flow of its own, as the deduplicator (on by default) sees it
        ev["community_id"] = "1:" + base64.b64encode(hashlib.sha1(b"%d" % i).digest()).decode()
        ev["label"] = "LABEL"
        out.append(json.dumps(ev).encode().replace(b'"label": "LABEL"', UNSENT))
    return out


def eve_sender(path: str, records: list[bytes], rate: float, go: Any, kind: str = "dgram") -> None:
    """Send the records as Suricata does: a datagram each (``unix_dgram``), or a line each on
    one connection (``unix_stream``)."""
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})
    if kind == "dgram":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
    go.wait()
    start = time.perf_counter()
    for i, rec in enumerate(records):
        if rate:
            due = start + i / rate
            while time.perf_counter() < due:
                pass
            rec = rec.replace(UNSENT, SENT % time.monotonic())
        if kind == "dgram":
            s.sendto(rec, path)
        else:
            s.sendall(rec + b"\n")
    s.close()


class Cpu:
    """The daemon process's CPU time over a run, and each of its threads' share: the scoring
    loop (``pipeline``), the sources, the training reservoir's feeder and the rest (threads that
    start during the run, e.g. the reservoir's on the first batch, count from 0)."""

    def __init__(self, d: Daemon) -> None:
        self.d = d
        self.start = time.process_time()
        self.threads = {t.native_id: _thread_cpu(t.native_id) for t in threading.enumerate()}

    def done(self) -> tuple[float, dict[str, float]]:
        total = time.process_time() - self.start
        sources = {t.native_id for t, _ in self.d.threads.values() if t.name != "pipeline"}
        split: dict[str, float] = {}
        for t in threading.enumerate():
            used = _thread_cpu(t.native_id) - self.threads.get(t.native_id, 0.0)
            kind = (
                "scoring"
                if t.name == "pipeline"
                else "source"
                if t.native_id in sources
                else "reservoir"
                if t.name == "reservoir"
                else "other"
            )
            split[kind] = split.get(kind, 0.0) + used
        return total, split


def _thread_cpu(tid: int | None) -> float:
    """user + system seconds of one thread of this process (0 where /proc is missing)."""
    try:
        with open(f"/proc/self/task/{tid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(what: str, n: int, secs: float, cpu: tuple[float, dict[str, float]]) -> float:
    total, split = cpu
    per_cpu = n / total
    parts = ", ".join(f"{name} {100 * t / total:.0f}%" for name, t in sorted(split.items()))
    print(
        f"daemon, {what}: {per_cpu:,.0f} flows per daemon CPU-second "
        f"({n / secs:,.0f} flows/s wall, {n:,} flows; CPU: {parts})"
    )
    return per_cpu


#: ``model.reservoir_per_day`` for every run (None: the daemon's default); ``--reservoir 0``
#: measures the daemon without its training reservoir.
RESERVOIR: int | None = None


def config(tmp: Path, model: Path, sources: list[dict[str, Any]]) -> Path:
    reservoir = {} if RESERVOIR is None else {"reservoir_per_day": RESERVOIR}
    cfg = {
        "model": {"path": str(model), "reload_check_seconds": 0, **reservoir},
        "sources": sources,
        "pipeline": {
            "batch_size": 1000,
            "batch_timeout_ms": 20,
            "queue_size": 200_000,
        },
        "sinks": {
            "sqlite": {"path": str(tmp / "alerts.db")},
            "metrics": {"enabled": False},
            "zeek_notice": {"enabled": False},
        },
        "state_dir": str(tmp / "state"),
    }
    path = tmp / "netanomd.yaml"
    path.write_text(json.dumps(cfg))
    return path


def run_eve(
    tmp: Path, model: Path, n: int, rate: float, kind: str = "dgram"
) -> tuple[int, float, tuple[float, dict[str, float]], np.ndarray, np.ndarray, np.ndarray]:
    """Score ``n`` records sent at ``rate`` per second (0: as fast as they are taken) over a
    ``kind`` socket: flows scored, seconds, CPU, and per flow the time from its read (and, when
    paced, from its send) to its alert being written."""
    sock = tmp / f"eve-{kind}-{int(rate)}.sock"
    source = {"type": "suricata_socket", "path": str(sock), "kind": kind}
    d = Daemon(str(config(tmp, model, [source])), notifier=Notifier(env={}))
    lat: list[tuple[float, int]] = []
    #: per batch: arrived -> taken off the queue, taken -> scored, scored -> written
    stages: list[tuple[float, float, float]] = []
    sent: list[float] = []
    d.start()
    assert d.pipeline is not None
    inner = d.pipeline.on_batch

    def record(batch: Any, scores: Any, alerts: Any, arrived: float) -> None:
        now = time.monotonic()
        lat.append((now - arrived, len(batch)))
        t = d.pipeline.timing if d.pipeline is not None else None
        if t is not None:
            stages.append((t.taken - t.arrived, t.scored - t.taken, t.written - t.scored))
        if rate:
            sent.extend(now - float(x) for x in batch.column("label").to_pylist())
        if inner:
            inner(batch, scores, alerts, arrived)

    d.pipeline.on_batch = record
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    proc = ctx.Process(target=eve_sender, args=(str(sock), eve_records(n), rate, go, kind))
    proc.start()
    time.sleep(1.0)
    cpu = Cpu(d)
    t0 = time.perf_counter()
    go.set()
    while d.pipeline.stats.scored < n:
        time.sleep(0.005)
        if time.perf_counter() - t0 > 600:
            break
    secs = time.perf_counter() - t0
    used = cpu.done()
    proc.join(10)
    d.shutdown()
    w = np.repeat([x for x, _ in lat], [k for _, k in lat])
    print(f"  ({d.pipeline.stats.alerts:,} alerts written)")
    split = np.repeat(np.array(stages).reshape(-1, 3), [k for _, k in lat], axis=0)
    return d.pipeline.stats.scored, secs, used, w, np.array(sent), split


def run_ws(
    tmp: Path, model: Path, n_frames: int
) -> tuple[int, float, tuple[float, dict[str, float]]]:
    from benchmarks.bench_zeek_ws import frames, zeek_process

    ctx = mp.get_context("spawn")
    port_q, done_q, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    payload = frames(100, n_frames)
    proc = ctx.Process(target=zeek_process, args=(port_q, go, payload, done_q))
    proc.start()
    port = port_q.get(timeout=60)
    d = Daemon(
        str(config(tmp, model, [{"type": "zeek_ws", "url": f"ws://127.0.0.1:{port}"}])),
        notifier=Notifier(env={}),
    )
    d.start()
    assert d.pipeline is not None
    while not d.sources[0].counters.connects:  # type: ignore[attr-defined]
        time.sleep(0.01)
    cpu = Cpu(d)
    t0 = time.perf_counter()
    go.set()
    while d.pipeline.stats.scored < n_frames * 100 and time.perf_counter() - t0 < 600:
        time.sleep(0.005)
    secs = time.perf_counter() - t0
    used = cpu.done()
    done_q.put(0)
    d.shutdown()
    proc.join(10)
    return d.pipeline.stats.scored, secs, used


def run_redis(
    tmp: Path, model: Path, n: int
) -> tuple[int, float, tuple[float, dict[str, float]]] | None:
    """The daemon popping a backlog of ``n`` EVE records from a Redis list; None without
    ``redis-server``."""
    server = shutil.which("redis-server")
    if server is None:
        return None
    import redis

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp)]
    proc = subprocess.Popen([*args, "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        records = eve_records(n)
        for i in range(0, n, 10_000):
            client.lpush("suricata", *records[i : i + 10_000])
        d = Daemon(
            str(config(tmp, model, [{"type": "redis", "url": url, "key": "suricata"}])),
            notifier=Notifier(env={}),
        )
        d.start()
        assert d.pipeline is not None
        cpu = Cpu(d)  # from here: the model is loaded, the threads are running
        t0, before = time.perf_counter(), d.pipeline.stats.scored
        while d.pipeline.stats.scored < n and time.perf_counter() - t0 < 600:
            time.sleep(0.005)
        secs = time.perf_counter() - t0
        used = cpu.done()
        d.shutdown()
        return d.pipeline.stats.scored - before, secs, used
    finally:
        proc.terminate()
        proc.wait(10)


#: (stage, markers) of the source thread's samples, checked in order.
SOURCE_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("hand-off to the scoring queue", ("Pipeline.offer", "emitter.<locals>.emit")),
    ("decode into a batch", ("suricata_eve.py", "brokerjson.py", "brokerpy.py", "attach")),
    ("read (socket, Redis, WebSocket)", ("",)),
)
#: (stage, markers) of the training reservoir's thread, checked in order.
RESERVOIR_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("waiting for scored batches", ("Condition.wait", "Condition.__enter__")),
    ("open incidents' flows left out", ("Reservoir._clean",)),
    ("drift sample", ("DriftMonitor",)),
    ("day files written", ("Reservoir.flush",)),
    ("Algorithm R, the row store", ("",)),
)
#: What marks a stack as the source thread's (its ``run``), the scoring thread's, or the
#: reservoir's.
SOURCE_RUNS = ("EveSocket.run", "ZeekWebSocketClient.run", "RedisInput.run", "ZeekBroker")
SCORING_RUN = "Pipeline.run"
RESERVOIR_RUN = "Sampler._run"


def stage_table(path: str) -> dict[str, dict[str, int]]:
    """Samples of a py-spy raw profile per thread (source, scoring, reservoir) and stage."""
    from stages import STAGES

    scoring = (
        ("waiting for a batch, concatenating", ("Pipeline._take", "FlowBatch.concat")),
        ("acknowledging to the source (Redis)", ("_send_acks",)),
        *STAGES,
        ("sinks", ("sinks/",)),
        ("training reservoir", ("Reservoir.add",)),
        ("stream, other", ("Stream.process",)),
        ("pipeline, other", ("",)),
    )
    out: dict[str, dict[str, int]] = {"source": {}, "scoring": {}, "reservoir": {}}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if any(r in stack for r in SOURCE_RUNS) and SCORING_RUN not in stack:
                thread, marks = "source", SOURCE_STAGES
            elif SCORING_RUN in stack:
                thread, marks = "scoring", scoring
            elif RESERVOIR_RUN in stack:
                thread, marks = "reservoir", RESERVOIR_STAGES
            else:
                continue
            stage = next(name for name, ms in marks if any(m in stack for m in ms))
            out[thread][stage] = out[thread].get(stage, 0) + int(n)
    return out


def print_stages(path: str) -> None:
    table = stage_table(path)
    total = sum(sum(t.values()) for t in table.values()) or 1
    print(f"{path}: {total} samples in the daemon's threads")
    for thread, stages in table.items():
        print(f"  {thread} thread {sum(stages.values()) / total:6.1%}")
        for stage, n in sorted(stages.items(), key=lambda kv: -kv[1]):
            print(f"    {stage:<40} {n / total:6.1%}")


def main() -> int:
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--flows", type=int, default=200_000)
    runs = ("eve", "eve-512", "eve-stream", "ws", "redis", "latency")
    ap.add_argument(
        "--only", nargs="+", choices=runs, default=runs, help="the runs to make (default: all)"
    )
    ap.add_argument(
        "--reservoir",
        type=int,
        default=None,
        help="model.reservoir_per_day (default: the daemon's; 0: no training reservoir)",
    )
    ap.add_argument(
        "--dgram-qlen",
        type=int,
        default=None,
        help="set net.unix.max_dgram_qlen first (in a network namespace of its own: eve-512 "
        "runs this script so under `unshare -n`)",
    )
    ap.add_argument(
        "--stages",
        metavar="PROFILE",
        help="print the per-thread stage table of a py-spy raw profile of a run, and stop",
    )
    args = ap.parse_args()
    if args.stages:
        print_stages(args.stages)
        return 0
    global RESERVOIR
    RESERVOIR = args.reservoir
    if args.dgram_qlen is not None:
        QLEN.write_text(str(args.dgram_qlen))
        if qlen() != args.dgram_qlen:
            raise SystemExit(f"{QLEN} stays {qlen()}: not in a network namespace of our own?")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        model = ensure_model()  # the model `netanomd train` makes with its default flags
        eve = eve_512 = eve_stream = ws = red = None
        if "eve" in args.only:
            n, secs, cpu, *_ = run_eve(tmp, model, args.flows, 0)
            eve = report(
                f"Suricata EVE unix_dgram (qlen {qlen()}) -> score -> SQLite", n, secs, cpu
            )
        if "eve-512" in args.only:
            eve_512 = dgram_in_namespace(args.flows, 512)
        if "eve-stream" in args.only:
            n, secs, cpu, *_ = run_eve(tmp, model, args.flows, 0, "stream")
            eve_stream = report("Suricata EVE unix_stream -> score -> SQLite", n, secs, cpu)
        if "ws" in args.only:
            n, secs, cpu = run_ws(tmp, model, args.flows // 100)
            ws = report("Zeek WebSocket frames of 100 -> score -> SQLite", n, secs, cpu)
        if "redis" in args.only:
            got = run_redis(tmp, model, args.flows)
            red = report("Redis list (backlog) -> score -> SQLite", *got) if got else None
        if "latency" in args.only:
            latency(tmp, model)
        goals = [
            (f"EVE unix_dgram, net.unix.max_dgram_qlen {qlen()}", eve, 150_000),
            ("EVE unix_dgram, net.unix.max_dgram_qlen 512 (README)", eve_512, 150_000),
            ("EVE unix_stream", eve_stream, 150_000),
            ("Zeek WS", ws, 250_000),
            ("Redis", red, 150_000),
        ]
        for what, got_rate, goal in goals:
            if got_rate is not None:
                print(f"  {what}: {got_rate / goal:.2f} x the goal of {goal:,} per CPU-second")
                row(
                    f"daemon, {what} -> score -> SQLite, flows per daemon CPU-second",
                    f"{got_rate:,.0f} ({got_rate / goal:.2f}x the goal of {goal:,})",
                )
    return 0


QLEN = Path("/proc/sys/net/unix/max_dgram_qlen")


def qlen() -> int:
    """This network namespace's ``net.unix.max_dgram_qlen``: how many datagrams wait on a unix
    socket before the sender blocks (Suricata drops)."""
    return int(QLEN.read_text())


def dgram_in_namespace(flows: int, length: int) -> float | None:
    """The unix_dgram run with ``net.unix.max_dgram_qlen`` at ``length``, as the README tells
    operators to set it, in a network namespace of its own (``unshare -n``: the machine's
    setting is left alone); None, saying why, where one cannot be made."""
    cmd = ["unshare", "-n", sys.executable, __file__, "--only", "eve", "--flows", str(flows)]
    proc = subprocess.run(
        [*cmd, "--dgram-qlen", str(length)], capture_output=True, text=True, check=False
    )
    got = re.search(r"^daemon, Suricata EVE unix_dgram .*?: ([\d,]+) flows per", proc.stdout, re.M)
    if proc.returncode != 0 or got is None:
        why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        print(f"  EVE unix_dgram with qlen {length}: not measured ({why})")
        return None
    print(next(ln for ln in proc.stdout.splitlines() if ln.startswith("daemon, Suricata EVE")))
    return float(got.group(1).replace(",", ""))


def latency(tmp: Path, model: Path) -> None:
    """The sent -> alert written percentiles at a steady 10,000 EVE records a second."""
    _n, secs, (used, _), read, sent, split = run_eve(tmp, model, 50_000, 10_000)
    p50, p99 = np.percentile(read, [50, 99]) * 1000
    s50, s99 = np.percentile(sent, [50, 99]) * 1000
    print(
        f"at 10,000 flows/s ({100 * used / secs:.0f}% of a core): read -> alert written "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms; sent -> alert written p50 {s50:.1f} ms, "
        f"p99 {s99:.1f} ms (target <= 50 ms: {'met' if s99 <= 50 else 'NOT met'})"
    )
    waited, scoring, writing = (np.percentile(split, [50, 99], axis=0) * 1000).T
    print(
        "  where a flow's batch spent it (p50 / p99 ms): read -> taken off the queue (the "
        f"batch window, or behind the batch before) {waited[0]:.1f} / {waited[1]:.1f}, scored "
        f"{scoring[0]:.1f} / {scoring[1]:.1f}, alerts written {writing[0]:.1f} / {writing[1]:.1f}"
    )
    row(
        "daemon at 10,000 flows/s (EVE unix_dgram): sent -> alert written",
        f"p50 {s50:.1f} ms, p99 {s99:.1f} ms (goal p99 <= 50 ms); {100 * used / secs:.0f}% "
        "of a core",
    )


if __name__ == "__main__":
    raise SystemExit(main())
