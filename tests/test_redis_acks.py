"""The Redis list's acknowledgements on a real redis-server (netanomd.sources.redis_list): a
batch's records leave the processing list only once its ack is called; the ack does not wait on
Redis while the reading thread is busy (it rides with that thread's next move); stopping sends
what was acknowledged; what was taken and not acknowledged is read again at the next start."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import redis

from netanomd.flow import FlowBatch
from netanomd.sources import Ack
from netanomd.sources.redis_list import RedisInput, processing_list
from tests.waiting import wait

EVE = Path(__file__).parent / "data" / "eve" / "test6-malicious-head400.json"
KEY = "suricata"
PROCESSING = processing_list(KEY, "c")


def flows(n: int) -> list[bytes]:
    """``n`` real Suricata flow records, each its own flow (the capture's replayed with the
    ``flow_id`` shifted, as often as needed)."""
    lines = [json.loads(ln) for ln in EVE.read_bytes().splitlines() if b'"event_type":"flow"' in ln]
    return [json.dumps({**lines[k % len(lines)], "flow_id": 1 + k}).encode() for k in range(n)]


def ids(lines: list[bytes]) -> list[int]:
    return [json.loads(ln)["flow_id"] for ln in lines]


def backlog(url: str, lines: list[bytes]) -> redis.Redis:
    client = redis.Redis.from_url(url)
    for line in lines:
        client.lpush(KEY, line)  # what Suricata's `mode: list` does
    return client


Emit = Callable[..., bool]


def start(url: str, emit: Emit) -> tuple[RedisInput, threading.Thread]:
    src = RedisInput(url, KEY, "list", emit, batch_lines=5, consumer="c", recover_dead=False)
    thread = threading.Thread(target=src.run, daemon=True)
    thread.start()
    return src, thread


def test_records_leave_only_with_their_ack_and_the_rest_is_read_again(redis_url: str) -> None:
    records = flows(23)
    client = backlog(redis_url, records)
    got: list[tuple[FlowBatch, Ack | None]] = []

    def emit(batch: FlowBatch, ack: Ack | None = None, *, arrived: float | None = None) -> bool:
        got.append((batch, ack))
        return True

    src, thread = start(redis_url, emit)
    wait(lambda: sum(len(b) for b, _ in got) == len(records), 10, "every record")
    assert client.llen(KEY) == 0
    assert client.llen(PROCESSING) == len(records)  # scored, nothing acknowledged
    # The reader waits for more (BLMOVE): an ack is sent at once, by the acknowledging thread.
    done = 0
    for batch, ack in got[:2]:
        assert ack is not None
        ack()
        done += len(batch)
        assert client.llen(PROCESSING) == len(records) - done
    src.stop()  # a stop with batches scored and not acknowledged, as a crash leaves them
    thread.join(10)
    assert client.llen(PROCESSING) == len(records) - done

    again: list[tuple[FlowBatch, Ack | None]] = []

    def emit_again(batch: FlowBatch, ack: Ack | None = None, **_: object) -> bool:
        again.append((batch, ack))
        return True

    src, thread = start(redis_url, emit_again)
    wait(lambda: sum(len(b) for b, _ in again) == len(records) - done, 10, "the rest again")
    assert src.resumed == len(records) - done
    read = [i for b, _ in again for i in b.column("flow_id").to_pylist()]
    assert read == ids(records)[done:]  # the unacknowledged records, oldest first, once
    for _, ack in again:
        assert ack is not None
        ack()
    assert client.llen(PROCESSING) == 0
    src.stop()
    thread.join(10)


def test_an_ack_rides_with_the_next_move_and_stop_sends_the_last(redis_url: str) -> None:
    """Acks called while the reader is busy are queued, not sent (the acknowledging thread does
    not wait on Redis); the reader's next move carries them; a reader held back by a full
    queue at shutdown (intake stopped) sends what was acknowledged when it is stopped."""
    records = flows(20)
    client = backlog(redis_url, records)
    seen: list[tuple[int, int]] = []  # (records emitted before, held in the processing list)
    acks: list[Ack] = []
    emitted = refused = 0

    def emit(batch: FlowBatch, ack: Ack | None = None, *, arrived: float | None = None) -> bool:
        nonlocal emitted, refused
        assert ack is not None
        if emitted == 15:  # the fourth batch: the pipeline's intake has stopped
            refused += 1
            return False
        seen.append((emitted, int(client.llen(PROCESSING))))
        if acks:
            acks.pop()()  # the batch before, written meanwhile: acknowledged from here
            assert client.llen(PROCESSING) == seen[-1][1]  # queued, not sent
        acks.append(ack)
        emitted += len(batch)
        return True

    src, thread = start(redis_url, emit)
    wait(lambda: refused > 0, 10, "three batches, and the fourth refused")
    # Each move took 5 more records and carried the ack of the batch two before it.
    assert seen == [(0, 5), (5, 10), (10, 10)]
    assert client.llen(PROCESSING) == 10  # the third batch, and the fourth (refused)
    acks.pop()()  # the third batch, written during the drain, while the reader is held back
    assert client.llen(PROCESSING) == 10  # queued
    src.stop()
    assert client.llen(PROCESSING) == 5  # only the batch the pipeline refused
    thread.join(10)
    assert client.lrange(PROCESSING, 0, -1) == records[15:][::-1]
