"""Zeek WebSocket transport throughput: flows/s from received frames to verdicts sent, one core.

A WebSocket peer speaking Broker's JSON API as Zeek does (``tests/zeek_ws_server.py``) runs in
a separate process on another core and sends ``NetAnom::flows`` frames of 100 flows (the
bundled real benign baseline day, as the Zeek package would publish it; about 0.5% of its flows
reach the alert threshold, as on a sensor) as fast as the connection takes them. The daemon side
runs in this process, pinned to one core:
``ZeekWebSocketClient`` receives and decodes each frame, the model scores the batch, and the
Zeek notice sink sends one ``NetAnom::verdict`` frame per alert. The clock runs from the first
frame received to the last frame handled. Floor (issue 7): 150,000 flows/s.

First, the source's decoding alone: the same frames handed to the client as micro-batches of
40 frames (what it does with the frames it receives: decode, check, build one FlowBatch),
in CPU microseconds per flow; the daemon's source thread may spend ~1.2 us per flow in all
for 250,000 flows per daemon CPU-second (issue 16).

Usage: ``python benchmarks/bench_zeek_ws.py [--frames N] [--batch 100]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import threading
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import _common  # noqa: F401  (this checkout first on sys.path)
import orjson

from netanomd.data import attack_files, baseline_files, demo_model
from netanomd.flow import FlowBatch
from netanomd.sinks.zeek_notice import ZeekNoticeSink
from netanomd.sources import Ack, ReadStats
from netanomd.sources.files import read_batches
from netanomd.sources.zeek_ws import ZeekWebSocketClient
from tests.zeek_wire import flows_message


def frames(batch_size: int, n_frames: int) -> list[bytes]:
    flows = FlowBatch.concat(list(read_batches(baseline_files(), ReadStats())))
    out = []
    for i in range(n_frames):
        off = (i * batch_size) % max(1, len(flows) - batch_size)
        msg = flows_message(flows.slice(off, batch_size), topic="netanom/flows/0")
        out.append(orjson.dumps(msg))
    return out


def decode_cost(payload: list[bytes], per_batch: int = 40, rounds: int = 3) -> float:
    """CPU microseconds per flow to turn ``payload`` into FlowBatches, as the client does
    with frames that arrive together."""
    flows = [0]

    def emit(batch: FlowBatch, ack: Ack | None = None) -> bool:
        flows[0] += len(batch)
        return True

    client = ZeekWebSocketClient("ws://127.0.0.1:9", emit)
    client.take_frames(payload[:per_batch])  # warm up
    flows[0] = 0
    start = time.process_time()
    for _ in range(rounds):
        for i in range(0, len(payload), per_batch):
            client.take_frames(payload[i : i + per_batch])
    return 1e6 * (time.process_time() - start) / max(1, flows[0])


def zeek_process(port_q: mp.Queue, go: mp.Event, payload: list[bytes], done_q: mp.Queue) -> None:
    from websockets.frames import Frame, Opcode

    from tests.zeek_ws_server import FakeZeek

    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})
    zeek = FakeZeek(ping_interval=30)
    zeek.start()
    port_q.put(zeek.port)
    while not zeek.clients:
        time.sleep(0.01)
    go.wait()
    ws = zeek.clients[0][0]
    # The frames are serialised up front (unmasked text frames, as a server sends them) and
    # written straight to the socket, so the peer is not what limits the measurement.
    wire = b"".join(Frame(Opcode.TEXT, f).serialize(mask=False) for f in payload)
    start = time.perf_counter()
    ws.socket.sendall(wire)
    print(f"  (peer sent {len(payload):,} frames in {time.perf_counter() - start:.2f}s)")
    deadline = time.monotonic() + 120
    expected = done_q.get(timeout=300)
    while len(zeek.received) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    done_q.put((len(zeek.received), len(zeek.errors_sent)))
    zeek.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    model = demo_model()
    payload = frames(args.batch, args.frames)
    n_flows = args.frames * args.batch
    print(
        f"zeek websocket decoding: {decode_cost(payload):.2f} CPU-us per flow "
        f"(frames of {args.batch} -> FlowBatches, micro-batches of 40 frames)"
    )

    ctx = mp.get_context("spawn")
    port_q: mp.Queue = ctx.Queue()
    done_q: mp.Queue = ctx.Queue()
    go = ctx.Event()
    proc = ctx.Process(target=zeek_process, args=(port_q, go, payload, done_q))
    proc.start()
    port = port_q.get(timeout=60)

    first: list[float] = []
    last = [0.0]
    sinks: list[ZeekNoticeSink] = []
    alerts = [0]

    def on_batch(batch: FlowBatch, ack: Ack | None = None) -> bool:
        if not first:
            first.append(time.perf_counter())
        found = model.run(batch)[1]
        alerts[0] += len(found)
        sinks[0].write(found)
        last[0] = time.perf_counter()
        return True

    client = ZeekWebSocketClient(f"ws://127.0.0.1:{port}", on_batch)
    sinks.append(ZeekNoticeSink(client))
    model.run(FlowBatch.concat(list(read_batches(attack_files(), ReadStats()))))  # warm up

    def serve() -> None:
        if not os.environ.get("BENCH_PROFILE"):
            client.run()
            return
        import cProfile

        prof = cProfile.Profile()
        prof.runcall(client.run)
        prof.dump_stats(os.environ["BENCH_PROFILE"])

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    while client.counters.connects == 0:
        time.sleep(0.01)
    go.set()
    deadline = time.monotonic() + 600
    while client.counters.flows < n_flows and time.monotonic() < deadline:
        time.sleep(0.01)
    client.flush(30)
    last[0] = time.perf_counter()  # verdicts are sent by the client's loop: wait for them
    done_q.put(client.counters.verdicts_sent)
    time.sleep(0.5)
    received, errors = done_q.get(timeout=300)
    client.stop()
    t.join(5)
    proc.join(10)
    secs = last[0] - first[0]
    rate = client.counters.flows / secs
    print(
        f"zeek websocket: {client.counters.flows:,} flows in {args.frames:,} frames of "
        f"{args.batch} -> {client.counters.verdicts_sent:,} verdicts sent "
        f"({received:,} received by the peer, {errors} protocol errors)"
    )
    print(
        f"  {rate:,.0f} flows/s on one core (frames received -> verdicts sent), "
        f"{secs:.2f}s; floor 150,000: {'met' if rate >= 150_000 else 'NOT met'}"
    )
    return 0 if client.counters.flows == n_flows and errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
