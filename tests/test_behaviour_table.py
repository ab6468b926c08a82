"""Table row matching (netanomd.behaviour.table) on the windows of a real capture."""

from __future__ import annotations

import numpy as np

from netanomd.behaviour.table import distinct, last_match, row_codes
from netanomd.behaviour.windows import Closed, HostWindows
from netanomd.flow import FlowBatch


def closed(batch: FlowBatch) -> Closed:
    w = HostWindows()
    parts = [w.update(batch.slice(o, 200)) for o in range(0, len(batch), 200)]
    return Closed.concat([*parts, w.flush()])


def test_row_codes_are_equal_exactly_when_the_rows_are(remcos: FlowBatch) -> None:
    """Codes of (scale, role, host, start) over the window rows and then the pair rows of a
    capture: two rows share a code exactly when their tuples are equal; a row's last match is
    the last window row with its tuple, as a dict of tuples gives it."""
    c = closed(remcos)
    names = ("scale", "role", "host", "start")
    cols = [np.concatenate([c.hosts[x], c.pairs[x]]) for x in names]
    code = row_codes(*cols)
    rows = list(zip(*(x.tolist() for x in cols), strict=True))
    first: dict[tuple[object, ...], int] = {}
    for r, k in zip(rows, code.tolist(), strict=True):
        assert first.setdefault(r, k) == k
    assert len(set(first.values())) == len(first) > 1
    n = len(c.hosts)
    last = {r: i for i, r in enumerate(rows[:n])}
    got = last_match(code[:n], code[n:])
    assert got.tolist() == [last.get(r, -1) for r in rows[n:]]
    assert (got >= 0).any() and last_match(code[:0], code[n:]).tolist() == [-1] * (len(rows) - n)


def test_distinct_strings_keep_first_appearance_and_none() -> None:
    names, codes = distinct(np.array(["tcp", "udp", None, "tcp"], dtype=object))
    assert names == ["tcp", "udp", None] and codes.tolist() == [0, 1, 2, 0]
    names, codes = distinct(np.array([600.0, 60.0, 600.0]))
    assert names == [60.0, 600.0] and codes.tolist() == [1, 0, 1]
