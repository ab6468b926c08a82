"""The suppression hook of the decision path: flow alerts and incidents an allowlist rule covers
are dropped from what a stream reports, and counted per rule.

Owns :class:`Suppressor`, which :class:`netanomd.model.stream.Stream` calls (its ``suppress``
attribute) on every batch's alerted flows and on the incidents the batch opened or updated. The
rules are read once per batch at the wall clock (a rule's expiry is wall time); swap them with
:meth:`Suppressor.use` when they change.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from netanomd.feedback.rules import RuleSet
from netanomd.flow import FlowBatch

if TYPE_CHECKING:
    from netanomd.behaviour.incidents import Incident


class Suppressor:
    """Drops what the rules cover; ``counts[(rule, "alerts" | "incidents")]`` says how much."""

    def __init__(self, rules: RuleSet, clock: Callable[[], float] = time.time) -> None:
        self.rules = rules
        self._clock = clock
        self.counts: Counter[tuple[str, str]] = Counter()
        #: The same counts since this suppressor was made (never reset: the daemon's metrics).
        self.totals: Counter[tuple[str, str]] = Counter()
        #: The last batch's suppressed rows: row index in the batch -> rule name.
        self.last: dict[int, str] = {}
        self._incidents_seen: set[int] = set()

    def use(self, rules: RuleSet) -> None:
        self.rules = rules

    def flows(self, batch: FlowBatch, rows: np.ndarray) -> np.ndarray:
        """Which of ``rows`` (alerted rows of ``batch``) to keep (bool per row)."""
        self.last = {}
        if not len(rows):
            return np.ones(0, dtype=np.bool_)
        rules, which = self.rules.flow_rules(self._clock(), batch.take(rows))
        keep = which < 0
        names = [r.name for r in rules]
        dropped = which[~keep].tolist()
        self.last = dict(zip(rows[~keep].tolist(), [names[k] for k in dropped], strict=True))
        for k, n in zip(*np.unique(which[~keep], return_counts=True), strict=True):
            self.counts[(rules[k].name, "alerts")] += int(n)
            self.totals[(rules[k].name, "alerts")] += int(n)
        return keep

    def incidents(self, incidents: Iterable[Incident]) -> list[Incident]:
        """The incidents no rule covers (each suppressed incident counted once)."""
        now = self._clock()
        out = []
        for inc in incidents:
            rule = self.rules.incident_rule(
                now, inc.host, inc.role, inc.peer, inc.port, inc.proto, inc.behaviour
            )
            if rule is None:
                out.append(inc)
            elif inc.id not in self._incidents_seen:
                self._incidents_seen.add(inc.id)
                self.counts[(rule.name, "incidents")] += 1
                self.totals[(rule.name, "incidents")] += 1
        return out

    def take_counts(self) -> Counter[tuple[str, str]]:
        """The counts since the last call (to add to a store), and reset them (another thread
        may call this while the stream counts: the swap is one assignment, and an increment
        racing it lands in the counter handed out, a moment late at worst)."""
        counts, self.counts = self.counts, Counter()
        return counts
