"""Zeek notice sink: every alert goes back to Zeek as a ``NetAnom::verdict`` event, which the
Zeek package turns into a ``NetAnom::Anomalous_Flow`` notice (and a netanom.log line).

Publishes over whichever transport the daemon uses (WebSocket or native Broker). When no Zeek
is connected the verdicts are dropped and counted (``verdicts_dropped``): notices are only
useful while the connection is fresh, and the alerts themselves are kept by the other sinks.
"""

from __future__ import annotations

from collections.abc import Sequence

from netanomd.decision import Alert
from netanomd.zeek.transport import ZeekTransport


class ZeekNoticeSink:
    name = "zeek"

    def __init__(self, transport: ZeekTransport) -> None:
        self.transport = transport

    def write(self, alerts: Sequence[Alert]) -> None:
        if alerts:
            self.transport.send_verdicts(alerts)

    def flush(self) -> None:
        """Verdicts are sent as they are written; nothing is buffered here."""

    def close(self) -> None:
        """The transport is owned (and closed) by whoever created it."""
