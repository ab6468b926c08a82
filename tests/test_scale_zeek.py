"""Zeek shards over the WebSocket test peer (tests/zeek_ws_server.py): daemons' links built from
``shards`` / ``shard_of`` settings each get exactly their shards' flows, published as the Zeek
package publishes them (one topic per shard, chosen by originator), so every host's flows reach
one daemon; shard 1's subscription does not match shard 10."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from netanomd.config import ZeekWsSourceConfig
from netanomd.data import attack_files
from netanomd.errors import ConfigError
from netanomd.flow import FlowBatch
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches
from netanomd.sources.zeek_link import ZeekLink, flow_topics, shard_topic, zeek_source
from netanomd.zeek.api import FLOWS_TOPIC
from tests.waiting import wait
from tests.zeek_wire import flows_message
from tests.zeek_ws_server import FakeZeek


def zeek_shard(addr: str, shards: int) -> int:
    """``shard_of`` in zeek-scripts/main.zeek: the address' last 32 bits modulo the shards
    (``addr_to_counts`` splits an address into 32-bit counts in network order)."""
    packed = ipaddress.ip_address(addr).packed
    return int.from_bytes(packed[-4:], "big") % shards


def publish_as_zeek(zeek: FakeZeek, flows: FlowBatch, shards: int) -> None:
    """Each shard's flows to its topic, in frames of up to 100, as NetAnom::flows does."""
    orig = flows.column("orig_h").to_pylist()
    for k in range(shards):
        idx = [i for i, a in enumerate(orig) if zeek_shard(a, shards) == k]
        part = FlowBatch(flows.table.take(pa.array(idx, pa.int64())))
        for off in range(0, len(part), 100):
            zeek.publish(flows_message(part.slice(off, 100), topic=shard_topic(FLOWS_TOPIC, k)))


class Daemon:
    """A link as the daemon builds it, recording the flows it hands on."""

    def __init__(self, url: str, **shard: Any) -> None:
        self.uids: list[str] = []
        self.hosts: set[str] = set()
        self.cfg = ZeekWsSourceConfig("zeek_ws", url, **shard)
        self.link: ZeekLink = zeek_source(self.cfg, self.emit, name="zeek")
        self.thread = threading.Thread(target=self.link.run, daemon=True)
        self.thread.start()

    def emit(self, batch: FlowBatch, ack: Any = None, *, arrived: float | None = None) -> bool:
        self.uids += batch.column("uid").to_pylist()
        self.hosts |= set(batch.column("orig_h").to_pylist())
        return True

    def stop(self) -> None:
        self.link.stop()
        self.thread.join(5)


@pytest.fixture(scope="module")
def attacks() -> FlowBatch:
    """The bundled attack captures: 1,758 flows from 15 originators (IPv4 and IPv6)."""
    return FlowBatch.concat(list(read_batches(attack_files(), ReadStats())))


@pytest.fixture()
def zeek() -> Iterator[FakeZeek]:
    server = FakeZeek()
    server.start()
    yield server
    server.stop()


def run_daemons(
    zeek: FakeZeek, flows: FlowBatch, shards: int, settings: list[dict[str, Any]]
) -> list[Daemon]:
    url = f"ws://127.0.0.1:{zeek.port}"
    daemons = [Daemon(url, **s) for s in settings]
    try:
        wait(lambda: len(zeek.clients) == len(daemons), 10, "every link subscribed")
        publish_as_zeek(zeek, flows, shards)
        wait(lambda: sum(len(d.uids) for d in daemons) >= len(flows), 20, "every flow")
    finally:
        for d in daemons:
            d.stop()
    return daemons


@pytest.mark.parametrize(
    ("shards", "settings"),  # shards: NetAnom::shards in Zeek
    [
        (2, [{"shard_of": "0/2"}, {"shard_of": "1/2"}]),
        (4, [{"shards": (0, 3)}, {"shards": (1,)}, {"shards": (2,)}]),
        (12, [{"shard_of": f"{i}/3", "zeek_shards": 12} for i in range(3)]),
    ],
)
def test_each_host_reaches_one_daemon(
    zeek: FakeZeek, attacks: FlowBatch, shards: int, settings: list[dict[str, Any]]
) -> None:
    daemons = run_daemons(zeek, attacks, shards, settings)
    got = [uid for d in daemons for uid in d.uids]
    assert sorted(got) == sorted(attacks.column("uid").to_pylist())  # each flow once
    assert all(d.uids for d in daemons)  # the hosts are spread
    for a in daemons:  # no host split across daemons
        for b in daemons:
            assert a is b or not a.hosts & b.hosts
    for d in daemons:  # and each daemon has exactly the hosts of its shards
        mine = set(flow_topics(d.cfg))
        assert {shard_topic(FLOWS_TOPIC, zeek_shard(h, shards)) for h in d.hosts} <= mine


def test_shard_one_does_not_get_shard_ten(zeek: FakeZeek, attacks: FlowBatch) -> None:
    daemons = run_daemons(
        zeek, attacks, 12, [{"shards": (1,)}, {"shards": tuple(k for k in range(12) if k != 1)}]
    )
    orig = attacks.column("orig_h").to_pylist()
    assert {zeek_shard(a, 12) for a in orig} >= {1, 10}  # both shards carry flows
    assert {zeek_shard(h, 12) for h in daemons[0].hosts} <= {1}
    assert len(daemons[0].uids) == sum(zeek_shard(a, 12) == 1 for a in orig)


def test_shard_settings_are_checked() -> None:
    url = "ws://127.0.0.1:1"
    assert flow_topics(ZeekWsSourceConfig("zeek_ws", url)) == (FLOWS_TOPIC,)
    assert flow_topics(ZeekWsSourceConfig("zeek_ws", url, shard_of="2/4", zeek_shards=8)) == (
        "netanom/flows/2/",
        "netanom/flows/6/",
    )
    with pytest.raises(ConfigError, match="not both"):
        flow_topics(ZeekWsSourceConfig("zeek_ws", url, shards=(1,), shard_of="1/2"))
    with pytest.raises(ConfigError, match="i < n"):
        flow_topics(ZeekWsSourceConfig("zeek_ws", url, shard_of="4/4"))
