"""Where ``netanomd score`` spends its time: a stage table from a py-spy raw profile.

Usage::

    py-spy record -r 50 -f raw -o prof.txt -- python -m netanomd score --model M --input LOG ...
    python benchmarks/stages.py prof.txt

Each sample's stack is put in the first stage whose marker it contains (most specific first);
the table gives each stage's share of all samples.
"""

from __future__ import annotations

import sys
from collections import Counter

#: (stage, markers): a stack containing any marker belongs to the stage; checked in order.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("start-up (imports, model load)", ("_find_and_load", "Model.load", "build_parser")),
    ("alerts: explain", ("Baselines.explain",)),
    ("alerts: build", ("make_alerts", "AlertBatch")),
    ("store: SQLite", ("sinks/sqlite.py",)),
    ("host features", ("features/host_block.py",)),
    ("flow features", ("features/",)),
    ("forest", ("detectors/",)),
    ("host behaviour", ("behaviour/windows.py", "behaviour/pipeline.py", "behaviour/detectors")),
    ("incidents", ("behaviour/incidents.py", "Stream._link_named")),
    ("read", ("sources/",)),
)


def table(path: str) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            stage = next(
                (name for name, marks in STAGES if any(m in stack for m in marks)), "other"
            )
            counts[stage] += int(n)
    return counts.most_common()


def main() -> int:
    for path in sys.argv[1:]:
        rows = table(path)
        total = sum(n for _, n in rows) or 1
        print(f"{path}: {total} samples")
        for stage, n in rows:
            print(f"  {stage:<32} {n / total:6.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
