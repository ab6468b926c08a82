"""The EVE sockets' reading: every datagram waiting on a socket at once
(netanomd.sources.datagrams: order, sizes, more waiting than the slots hold, nothing waiting,
a datagram as a line),
and stream connections whose records arrive cut anywhere."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from netanomd.sources import datagrams
from netanomd.sources.datagrams import DatagramReader
from netanomd.sources.evescan import block_of_text
from netanomd.sources.suricata_socket import EveSocket


@pytest.mark.parametrize("recvmmsg", [True, False], ids=["recvmmsg", "recv_into"])
def test_reads_every_waiting_datagram_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recvmmsg: bool
) -> None:
    """The same with one recvmmsg a call and, where libc has none, one recv_into a datagram."""
    if not recvmmsg:
        monkeypatch.setattr(datagrams, "_RECVMMSG", None)
    path = str(tmp_path / "d.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(path)
        srv.setblocking(False)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        reader = DatagramReader(srv, slots=4, size=100)
        assert reader.read() == 0  # nothing waiting: no wait, no error
        sent = [b"", b"x" * 100, b"y" * 150, *(b"%d" % i for i in range(6))]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as c:
            for d in sent:
                c.sendto(d, path)
        calls, lines = [], []
        while got := reader.read():
            calls.append(got)
            assert reader.read() == 0  # the slots are full: nothing read until taken
            block = reader.take()
            lines += [block.line(k) for k in range(len(block))]
        assert calls == [4, 4, 1]  # a full call: more may wait
        # a datagram longer than a slot is cut at the slot's end, as recv_into a buffer is
        assert lines == [b"", b"x" * 100, b"y" * 100, *sent[3:]]
        reader.close()


def test_datagrams_are_lines_as_in_text(tmp_path: Path) -> None:
    """A datagram is a line: a line end at its end (``\n``, ``\r\n``) is left out, as in
    text; one holding several lines is cut into them, in order."""
    path = str(tmp_path / "d.sock")
    sent = [b"a\r\n", b"b\n", b"c\r", b"\n", b"d", b"e\rf"]
    several = [b"g\nh\r\ni", b"j"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(path)
        srv.setblocking(False)
        reader = DatagramReader(srv, slots=8, size=64)
        got = []
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as c:
            for datagrams in (sent, several):
                for d in datagrams:
                    c.sendto(d, path)
                assert reader.read() == len(datagrams)
                block = reader.take()
                got.append([block.line(k) for k in range(len(block))])
                text = block_of_text(
                    b"".join(d if d.endswith(b"\n") else d + b"\n" for d in datagrams)
                )
                assert got[-1] == [text.line(k) for k in range(len(text))]
        reader.close()
    assert got == [[b"a", b"b", b"c", b"", b"d", b"e\rf"], [b"g", b"h", b"i", b"j"]]


def test_stream_connections_keep_their_own_unended_lines(tmp_path: Path) -> None:
    """Two unix_stream connections each sending records cut mid-line, interleaved, one closing
    without a final line end: every record decoded whole, once, in each connection's order."""
    import json
    import threading
    import time

    from netanomd.flow import FlowBatch
    from netanomd.sources.suricata_socket import EveSocket
    from tests.waiting import wait

    data = Path(__file__).parent / "data" / "eve" / "test6-malicious-head400.json"
    flows = [ln for ln in data.read_bytes().splitlines() if b'"event_type":"flow"' in ln]
    got: list[FlowBatch] = []

    def emit(batch: FlowBatch, ack: object = None, *, arrived: float | None = None) -> bool:
        got.append(batch)
        return True

    path = tmp_path / "eve.sock"
    src = EveSocket(path, "stream", emit, batch_lines=3, batch_wait=0.01)
    thread = threading.Thread(target=src.run, daemon=True)
    thread.start()
    assert src.ready.wait(5)
    a, b = (socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2))
    a.connect(str(path))
    b.connect(str(path))
    mine = {a: flows[0::2], b: flows[1::2]}
    texts = {c: b"\r\n".join(lines) for c, lines in mine.items()}  # b ends unended
    texts[a] += b"\n"
    cuts = {c: [*range(0, len(t), 97), len(t)] for c, t in texts.items()}
    for k in range(max(len(v) for v in cuts.values()) - 1):
        for c in (a, b):
            if k + 1 < len(cuts[c]):
                c.sendall(texts[c][cuts[c][k] : cuts[c][k + 1]])
        time.sleep(0.001)
    a.close()
    b.close()
    wait(lambda: sum(len(x) for x in got) == len(flows), 10, "every flow")
    src.stop()
    thread.join(10)
    ids = [i for x in got for i in x.column("flow_id").to_pylist()]
    assert sorted(ids) == sorted(json.loads(f)["flow_id"] for f in flows)
    for lines in mine.values():
        order = [json.loads(f)["flow_id"] for f in lines]
        assert [i for i in ids if i in order] == order
    assert src.stats.malformed == 0


def test_datagrams_decode_to_the_table_of_the_same_text(tmp_path: Path) -> None:
    """Records sent a datagram each (some ending in a line end) are decoded by the socket into
    the table the EVE text decoder makes of the same lines, with the same problems named."""
    import threading

    from netanomd.flow import FlowBatch
    from netanomd.sources import ReadStats
    from netanomd.sources.suricata_alerts import SignatureJoin
    from netanomd.sources.suricata_eve import eve_text_to_batch
    from tests.waiting import wait

    data = Path(__file__).parent / "data" / "eve" / "test6-malicious-head400.json"
    lines = data.read_bytes().splitlines()
    lines[5] += b"\n"
    lines[6] += b"\r\n"
    lines[7] = b'{"event_type": "flow", "src_port": "x"}'  # malformed
    datagrams = lines  # read where they lie (several lines in one: test above)
    got: list[FlowBatch] = []

    def emit(batch: FlowBatch, ack: object = None, *, arrived: float | None = None) -> bool:
        got.append(batch)
        return True

    path = tmp_path / "eve.sock"
    src = EveSocket(path, "dgram", emit, batch_lines=len(datagrams), batch_wait=5.0)
    thread = threading.Thread(target=src.run, daemon=True)
    thread.start()
    assert src.ready.wait(5)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as c:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        for d in datagrams:
            while True:
                try:
                    c.sendto(d, str(path))
                    break
                except BlockingIOError:  # the queue is full: the reader empties it
                    pass
    wait(lambda: src.stats.rows + src.stats.malformed > 0 and bool(got), 10, "the batch")
    src.stop()
    thread.join(10)
    stats = ReadStats()
    text = b"\n".join(ln.rstrip(b"\n") for ln in lines)
    want = eve_text_to_batch(text, stats, src.name, signatures=SignatureJoin(stats))
    assert want is not None and len(got) == 1
    assert got[0].table.equals(want.table)
    assert src.stats.problems == stats.problems and src.stats.skipped == stats.skipped
    assert src.stats.malformed == 1
