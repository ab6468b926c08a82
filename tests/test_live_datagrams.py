"""Reading every datagram waiting on a socket (netanomd.sources.datagrams): order, sizes,
more waiting than one call reads, and nothing waiting."""

from __future__ import annotations

import socket
from pathlib import Path

from netanomd.sources.datagrams import DatagramReader


def test_reads_every_waiting_datagram_in_order(tmp_path: Path) -> None:
    path = str(tmp_path / "d.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(path)
        srv.setblocking(False)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        reader = DatagramReader(srv, slots=4, size=100)
        assert reader.read() == []  # nothing waiting: no wait, no error
        sent = [b"", b"x" * 100, b"y" * 150, *(b"%d" % i for i in range(6))]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as c:
            for d in sent:
                c.sendto(d, path)
        calls = []
        while got := reader.read():
            calls.append(got)
        assert [len(c) for c in calls] == [4, 4, 1]  # a full call: more may wait
        # a datagram longer than a slot is cut at the slot's end, as recv_into a buffer is
        assert [d for c in calls for d in c] == [b"", b"x" * 100, b"y" * 100, *sent[3:]]
        reader.close()
