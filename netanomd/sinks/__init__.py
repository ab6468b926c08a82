"""Sinks: where verdicts go (SQLite, Elasticsearch, Zeek notices, metrics).

Contract (:class:`Sink`): ``write(alerts)`` accepts a batch of alerts and must not block
scoring for long; a sink that cannot deliver keeps or drops by its own policy and logs, it
never raises into the pipeline for a delivery failure. ``flush()`` pushes out what is
buffered, ``close()`` flushes and releases resources.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from netanomd.decision import Alert


@runtime_checkable
class Sink(Protocol):
    name: str

    def write(self, alerts: Sequence[Alert]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...
