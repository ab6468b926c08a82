"""Zeek notice sink: every alert goes back to Zeek as a ``NetAnom::verdict`` event, which the
Zeek package turns into a ``NetAnom::Anomalous_Flow`` notice (and a netanom.log line).

Turns alerts into the verdict's plain values (:func:`verdict_values`, keyed by the argument
names of :data:`netanomd.zeek.api.VERDICT`) and hands them to the Zeek link, which publishes
them from its own thread: writing never waits on the network. When no Zeek is connected, or
the link's outbox is full, verdicts are dropped and counted by the link
(``verdicts_dropped``): notices are only useful while fresh, and the alerts themselves are kept
by the other sinks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from netanomd.decision import Alert
from netanomd.sources.zeek_link import ZeekLink


def verdict_values(alert: Alert) -> dict[str, Any]:
    """The ``NetAnom::verdict`` arguments of an alert (all but ``version``)."""
    f = alert.flow
    return {
        "uid": f.uid,
        "orig_h": f.orig_h,
        "orig_p": (f.orig_p or 0, f.proto),
        "resp_h": f.resp_h,
        "resp_p": (f.resp_p or 0, f.proto),
        "score": float(alert.score),
        "threshold": float(alert.threshold),
        "model": alert.model_id,
        "reason": alert.reason,
    }


class ZeekNoticeSink:
    name = "zeek"

    def __init__(self, link: ZeekLink) -> None:
        self.link = link

    def write(self, alerts: Sequence[Alert]) -> None:
        if alerts:
            self.link.publish_verdicts([verdict_values(a) for a in alerts])

    def open(self) -> None:
        """The link is opened (and stopped) by the daemon as a source."""

    def flush(self) -> None:
        """The link sends what it was handed; nothing is buffered here."""

    def close(self, timeout: float = 30.0) -> bool:
        """Wait (up to ``timeout``) until the link has sent the verdicts handed to it."""
        return self.link.flush(timeout)
