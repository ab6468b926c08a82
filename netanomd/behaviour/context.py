"""Host context of flow alerts: what the alerting flow's originator had been doing when it came.

Owns :class:`ContextPart` and :func:`for_alerts`. The host windows count, per originator, the
new destinations of the widest window and the attempts at each peer and port of the second one
(:data:`~netanomd.behaviour.windows.CONTEXT_COLUMNS`, asked for with ``HostWindows.update(...,
context=rows)``); :func:`for_alerts` turns those rows into sentence parts of the alert's reason
("host's 412th new destination this hour", "3rd unanswered attempt at this peer and port in 10
minutes"), each keeping the count and the learned limit it compares with as numbers (the model's
stream makes them the alert's contributions). Sentences are built for all alerts at once (numpy
string operations); only the part objects are made one per alert.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netanomd.behaviour import reasons
from netanomd.behaviour.detectors import Thresholds
from netanomd.behaviour.windows import Context
from netanomd.flow import FlowBatch

#: Fewest failed attempts at one peer and port before they are worth a sentence.
MIN_FAILED = 2


@dataclass(frozen=True, slots=True)
class ContextPart:
    """One sentence part of an alert's host context, with its numbers."""

    feature: str  # "host.new_destinations", "host.failed_attempts"
    sentence: str
    observed: float  # the count
    limit: float  # the learned limit it compares with
    limit_name: str  # "learned limit per 60 min"


def for_alerts(
    context: Context, rows: np.ndarray, batch: FlowBatch, thresholds: Thresholds
) -> list[tuple[ContextPart, ...]]:
    """Host context for the alerted ``rows`` of ``batch``, in their order, from the context rows
    the windows gave for them (rows without any are given none)."""
    out: list[tuple[ContextPart, ...]] = [() for _ in range(len(rows))]
    if not len(rows) or not len(context["row"]):
        return out
    # each row's last context row (a row split across pieces is given again), as numpy arrays
    row = np.asarray(context["row"], dtype=np.int64)
    uniq, from_end = np.unique(row[::-1], return_index=True)
    last = len(row) - 1 - from_end
    want = np.asarray(rows, dtype=np.int64)
    pos = np.minimum(np.searchsorted(uniq, want), len(uniq) - 1)
    have = np.flatnonzero(uniq[pos] == want)
    at = last[pos[have]]

    def c(name: str, dtype: type) -> np.ndarray:
        return np.asarray(context[name], dtype=dtype)[at]

    wide = float(c("new_peers_window", float)[0]) if len(at) else 0.0
    near = float(c("near_window", float)[0]) if len(at) else 0.0
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, str, float, np.ndarray]] = []
    new = c("new_peer", np.bool_)
    count = c("new_peers", float)
    parts.append(
        (
            new,
            reasons.host_context(count, wide),
            count,
            "host.new_destinations",
            wide,
            np.full(len(at), thresholds.host_limit(wide, "orig", "new_peers")),
        )
    )
    failed = c("failed_tries", float)
    retried = c("unanswered", np.bool_) & (failed >= MIN_FAILED)
    limit = np.zeros(len(at))
    if retried.any():  # the learned limit of each one's service (few: the failing ones)
        sub = batch.take(np.asarray(rows, dtype=np.int64)[have[retried]])
        proto = sub.column("proto").fill_null("").to_pylist()
        port = sub.numeric("resp_p", fill=-1, dtype=np.int64).tolist()
        limit[retried] = [
            thresholds.pair_limit(near, "orig", p, q) for p, q in zip(proto, port, strict=True)
        ]
    parts.append(
        (
            retried,
            reasons.failed_attempts(failed, near),
            failed,
            "host.failed_attempts",
            near,
            limit,
        )
    )
    for mask, sentence, observed, feature, window, base in parts:
        name = f"learned limit per {reasons.duration(window)}"
        for i in np.flatnonzero(mask).tolist():
            out[int(have[i])] += (
                ContextPart(feature, str(sentence[i]), float(observed[i]), float(base[i]), name),
            )
    return out
