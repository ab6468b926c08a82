"""End to end: ``netanomd score`` on a generated Zeek conn.log, one core.

Prints flows/s (read + features + score + decide + store alerts) and the peak RSS of the
scoring process, for 1M rows and, with ``--big``, for 10M rows too (peak memory must not grow
with file length). Usage: ``python benchmarks/bench_e2e.py [--rows N] [--big]``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
NETANOMD = [sys.executable, "-m", "netanomd"]


def ensure_log(rows: int, attacks: bool = False) -> Path:
    path = OUT / f"conn-{rows}{'-attacks' if attacks else ''}.log"
    if not path.exists():
        OUT.mkdir(exist_ok=True)
        extra = ["--with-attacks"] if attacks else []
        subprocess.run(
            [sys.executable, str(HERE / "gen_connlog.py"), str(rows), str(path), *extra],
            check=True,
        )
    return path


def ensure_model() -> Path:
    model = OUT / "bench-model.npz"
    if not model.exists():
        from netanomd.data import baseline_files

        files = [str(p) for p in baseline_files()]
        subprocess.run(
            [*NETANOMD, "train", "--model", str(model), "--input", *files],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return model


def run_score(model: Path, log: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS MiB, summary line) of one `netanomd score` run pinned to core 0."""
    db = OUT / "bench-alerts.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    env = dict(
        os.environ,
        NUMBA_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        ARROW_NUM_THREADS="1",
    )
    cmd = [
        "taskset",
        "-c",
        "0",
        *NETANOMD,
        "score",
        "--model",
        str(model),
        "--input",
        str(log),
        "--db",
        str(db),
        "--top",
        "0",
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - start
    out = proc.stdout.read() if proc.stdout else ""
    if status != 0:
        raise SystemExit(f"netanomd score failed ({status}):\n{out}")
    return secs, usage.ru_maxrss / 1024, out.strip().replace("\n", " | ")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--big", action="store_true", help="also 10x the rows (memory check)")
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)  # a fresh clone has no benchmarks/out/ yet
    model = ensure_model()
    runs = [(args.rows, False), (args.rows, True)] + ([(args.rows * 10, False)] if args.big else [])
    print("netanomd score end to end (one core; read + features + score + decide + SQLite)")
    for rows, attacks in runs:
        log = ensure_log(rows, attacks)
        secs, rss, summary = run_score(model, log)
        # The process's own measured rate (excludes interpreter start-up and model load).
        m = re.search(r"([\d,]+) flows/s", summary)
        a = re.search(r"([\d,]+) alerts", summary)
        inner = m.group(1) if m else "?"
        kind = "benign+attacks" if attacks else "benign"
        print(
            f"  {rows:>11,} rows ({kind:<14}) {a.group(1) if a else '?':>7} alerts  wall "
            f"{secs:6.2f}s {rows / secs:>10,.0f} flows/s (wall) {inner:>10} flows/s "
            f"(scoring loop)  peak RSS {rss:7.1f} MiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
