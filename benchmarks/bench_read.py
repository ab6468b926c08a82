"""Reading speed and peak memory: a generated 1M-row Zeek TSV conn.log, and the same flows as
Zeek JSON, one core. Usage: ``python benchmarks/bench_read.py [--rows N]``."""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"


def child(path: str) -> None:
    from netanomd.sources.files import open_source

    os.sched_setaffinity(0, {0})
    start = time.perf_counter()
    src = open_source(path)
    n = sum(len(b) for b in src.batches())
    secs = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"  {src.name.split(':')[0]:<11} {n:>10,} rows {secs:6.2f}s {n / secs:>11,.0f} rows/s "
        f"peak RSS {rss:6.1f} MiB"
    )


def to_json(tsv: Path, out: Path) -> None:
    import orjson

    from netanomd.sources.files import open_source

    with open(out, "wb") as fh:
        for b in open_source(tsv).batches():
            for row in b.table.to_pylist():
                rec = {
                    ("id." + k if k in ("orig_h", "orig_p", "resp_h", "resp_p") else k): v
                    for k, v in row.items()
                    if v is not None and k not in ("source",)
                }
                fh.write(orjson.dumps(rec) + b"\n")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    tsv = OUT / f"conn-{args.rows}.log"
    if not tsv.exists():
        subprocess.run(
            [sys.executable, str(HERE / "gen_connlog.py"), str(args.rows), str(tsv)], check=True
        )
    js = OUT / f"conn-{args.rows}.json"
    if not js.exists():
        to_json(tsv, js)
    print("reading (one core, batches of 65,536)")
    for path in (tsv, js):
        subprocess.run([sys.executable, __file__, "--child", str(path)], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
