"""Run every benchmark in this folder, one after another, and (with ``--readme``) write their
figures into the README's benchmark table, so the table is always one run's.

Usage: ``python benchmarks/run.py [--quick] [--readme README.md]`` (``make bench`` passes
``--readme``; ``--quick`` skips the 10x-rows runs). Each benchmark is a script ``bench_*.py``
run in its own process (so one's memory does not colour another's); the lines it marks with
:func:`_common.row` become rows of the table, which goes between the README's
``<!-- bench:begin -->`` and ``<!-- bench:end -->`` markers with the machine, the date and the
commit it was measured on. A benchmark that fails is named in the table, not left out.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import HERE, ROW_MARK

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def run_one(script: Path, extra: list[str]) -> tuple[int, list[tuple[str, str]]]:
    """Run a benchmark, echoing its output; (exit status, its table rows)."""
    rows: list[tuple[str, str]] = []
    proc = subprocess.Popen(
        [sys.executable, str(script), *extra], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert proc.stdout is not None
    for text in proc.stdout:
        if text.startswith(ROW_MARK):
            what, _, figure = text[len(ROW_MARK) :].rstrip("\n").partition("\t")
            rows.append((what, figure))
        else:
            print(text, end="", flush=True)
    return proc.wait(), rows


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(HERE), *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    sha = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{sha} (with uncommitted changes)" if dirty else sha


def table(rows: list[tuple[str, str]], when: str, sha: str, quick: bool) -> str:
    lines = [
        BEGIN,
        "<!-- written by `make bench` (benchmarks/run.py --readme); edits here are overwritten -->",
        f"One run of `make bench`{' (--quick)' if quick else ''} on {when}, commit `{sha}`; "
        f"{machine()}. Every figure is from this run; ratios compare processes measured in it.",
        "",
        "| what | figure |",
        "|---|---|",
    ]
    lines += [f"| {what} | {figure} |" for what, figure in rows]
    lines.append(END)
    return "\n".join(lines)


def write_readme(path: Path, block: str) -> None:
    text = path.read_text(encoding="utf-8")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} markers to put the table between")
    path.write_text(text[:start] + block + text[end + len(END) :], encoding="utf-8")
    print(f"wrote the benchmark table into {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="skip the 10x-rows runs")
    ap.add_argument("--readme", type=Path, help="write the table into this README")
    args = ap.parse_args()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sha = commit()
    failed: list[str] = []
    rows: list[tuple[str, str]] = []
    for script in sorted(HERE.glob("bench_*.py")):
        extra = ["--quick"] if args.quick and script.name == "bench_e2e.py" else []
        print(f"== {script.name} {' '.join(extra)}", flush=True)
        start = time.perf_counter()
        rc, found = run_one(script, extra)
        print(f"   ({time.perf_counter() - start:.0f}s, exit {rc})\n", flush=True)
        rows += found
        if rc:
            failed.append(script.name)
            rows.append((f"`{script.name}`", f"**failed** (exit {rc}); see the run's output"))
    if args.readme is not None:
        write_readme(args.readme, table(rows, when, sha, args.quick))
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
