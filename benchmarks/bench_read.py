"""Reading speed and peak memory, whole process on one core: netanomd's reader on a generated
1M-row Zeek TSV conn.log and on the same flows as Zeek JSON, and a bare typed ``pyarrow.csv``
parse of the TSV (``peers/arrow_parse.py``, in this interpreter) in the same run.
Usage: ``python benchmarks/bench_read.py [--rows N]``."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from _common import HERE, Usage, ensure_log, measure, out_dir, row


def child(path: str) -> None:
    from netanomd.sources.files import open_source

    src = open_source(path)
    print(f"rows {sum(len(b) for b in src.batches())}")


def to_json(tsv: Path, out: Path) -> None:
    import orjson

    from netanomd.sources.files import open_source

    tmp = out.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        for b in open_source(tsv).batches():
            for rec in b.table.to_pylist():
                rec = {
                    ("id." + k if k in ("orig_h", "orig_p", "resp_h", "resp_p") else k): v
                    for k, v in rec.items()
                    if v is not None and k not in ("source",)
                }
                fh.write(orjson.dumps(rec) + b"\n")
    tmp.rename(out)


def rows_of(use: Usage) -> int:
    return int(use.stdout.rsplit("rows ", 1)[1].split()[0])


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "--to-json":
        to_json(Path(sys.argv[2]), Path(sys.argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    tsv = ensure_log(args.rows)
    js = out_dir() / f"conn-{args.rows}.json"
    if not js.exists():
        # In a process of its own: a child's peak RSS counts its parent's at the fork.
        subprocess.run([sys.executable, __file__, "--to-json", str(tsv), str(js)], check=True)
    print("reading, whole process, one core (rows per CPU-second, start-up included)")
    arrow = measure([sys.executable, str(HERE / "peers" / "arrow_parse.py"), str(tsv)])
    runs = {
        "Zeek TSV": measure([sys.executable, __file__, "--child", str(tsv)]),
        "Zeek JSON": measure([sys.executable, __file__, "--child", str(js)]),
        "bare typed pyarrow.csv (TSV)": arrow,
    }
    for name, use in runs.items():
        n = rows_of(use)
        print(
            f"  {name:<30} {n:>10,} rows {use.cpu:6.2f} CPU-s {n / use.cpu:>11,.0f} rows/CPU-s "
            f"peak RSS {use.rss_mib:6.1f} MiB"
        )
    tsv_use, js_use = runs["Zeek TSV"], runs["Zeek JSON"]
    n = rows_of(tsv_use)
    row(
        f"reading a {n:,}-row Zeek TSV / the same as Zeek JSON (whole process)",
        f"{n / tsv_use.cpu:,.0f} / {n / js_use.cpu:,.0f} rows/CPU-s; TSV at "
        f"{arrow.cpu / tsv_use.cpu:.2f}x a bare typed `pyarrow.csv` parse "
        f"({n / arrow.cpu:,.0f} rows/CPU-s); peak RSS {tsv_use.rss_mib:.0f} / "
        f"{js_use.rss_mib:.0f} MiB",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
