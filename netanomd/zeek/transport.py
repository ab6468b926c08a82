"""What the two Zeek transports (Broker WebSocket JSON, native Broker) have in common.

A transport subscribes to the flow topics, decodes each ``NetAnom::flows`` event into a
FlowBatch and hands it to ``on_batch``; :meth:`ZeekTransport.send_verdicts` publishes
``NetAnom::verdict`` events back (the Zeek notice sink calls it). ``run()`` blocks, reconnecting
as needed, until ``stop()``. Counters are plain integers the metrics module reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from netanomd.decision import Alert
from netanomd.flow import FlowBatch


@dataclass
class Counters:
    #: Messages received (frames on WebSocket, Broker messages natively).
    messages: int = 0
    flows: int = 0
    malformed: int = 0
    #: Error messages the server sent (WebSocket ``{"type": "error"}``).
    server_errors: int = 0
    verdicts_sent: int = 0
    #: Verdicts that could not be sent because no peer was connected.
    verdicts_dropped: int = 0
    connects: int = 0
    disconnects: int = 0


OnBatch = Callable[[FlowBatch], None]


class ZeekTransport(Protocol):
    counters: Counters

    def run(self) -> None: ...

    def stop(self) -> None: ...

    def send_verdicts(self, alerts: Sequence[Alert]) -> int: ...


def log_malformed(log: logging.Logger, counters: Counters, what: object) -> None:
    """Count a malformed message; log the first 20 and then every 1000th."""
    counters.malformed += 1
    n = counters.malformed
    if n <= 20 or n % 1000 == 0:
        log.warning("skipped a malformed message (%d so far): %s", n, what)
