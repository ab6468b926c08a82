"""benchmarks/run.py: a benchmark's marked lines become the README table, between its markers,
with the machine, date and commit of the run; nothing else in the README changes."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def run() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        import run as module  # benchmarks/run.py

        return module
    finally:
        sys.path.remove(str(BENCH))


def test_rows_of_a_benchmark_become_the_readme_table(run: ModuleType, tmp_path: Path) -> None:
    script = tmp_path / "bench_x.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(BENCH)!r})\n"
        "from _common import row\n"
        "print('a line for people')\n"
        "row('reading, 1,000 rows', '5 rows/s')\n"
        "row('scoring', '7 flows/CPU-s: 0.50x the peer')\n"
    )
    rc, rows = run.run_one(script, [])
    assert rc == 0
    assert rows == [
        ("reading, 1,000 rows", "5 rows/s"),
        ("scoring", "7 flows/CPU-s: 0.50x the peer"),
    ]
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Benchmarks\n\n{run.BEGIN}\nold table\n{run.END}\n\n## Next\n")
    run.write_readme(readme, run.table(rows, "2026-12-01 00:00 UTC", "abc123", quick=False))
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# x\n") and text.endswith("## Next\n")
    assert "| reading, 1,000 rows | 5 rows/s |" in text
    assert "2026-12-01 00:00 UTC, commit `abc123`" in text and "cores" in text
    assert text.count(run.BEGIN) == text.count(run.END) == 1


def test_a_readme_without_markers_is_named(run: ModuleType, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no table here\n")
    with pytest.raises(SystemExit, match=r"README\.md: no <!-- bench:begin -->"):
        run.write_readme(readme, "table")


def test_the_project_readme_has_the_markers(run: ModuleType) -> None:
    text = (BENCH.parent / "README.md").read_text()
    assert text.count(run.BEGIN) == 1 and text.index(run.BEGIN) < text.index(run.END)
