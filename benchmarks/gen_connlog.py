"""Write a realistic N-row Zeek TSV conn.log by resampling real rows.

Rows are drawn (with replacement) from the bundled real clean-baseline capture -- or, with
``--with-attacks``, from it and the bundled attack captures (about 20% attack rows) -- and given
fresh uids and increasing timestamps.
Usage: ``python benchmarks/gen_connlog.py N OUT [--with-attacks]``.
"""

from __future__ import annotations

import gzip
import random
import sys
from pathlib import Path

import _common  # noqa: F401  (this checkout first on sys.path)

from netanomd.data import attack_files, baseline_files

CHUNK = 100_000


def real_rows(with_attacks: bool) -> tuple[list[bytes], list[list[bytes]]]:
    header: list[bytes] = []
    rows: list[list[bytes]] = []
    for path in [*baseline_files(), *(attack_files() if with_attacks else [])]:
        with gzip.open(path, "rb") as fh:
            lines = fh.read().split(b"\n")
        hdr = [ln for ln in lines if ln.startswith(b"#") and not ln.startswith(b"#close")]
        if not header:
            header = hdr
        rows += [ln.split(b"\t") for ln in lines if ln and not ln.startswith(b"#")]
    return header, rows


def main() -> int:
    n, out = int(sys.argv[1]), Path(sys.argv[2])
    header, rows = real_rows("--with-attacks" in sys.argv[3:])
    rng = random.Random(42)
    ts = 1_700_000_000.0
    with open(out, "wb") as fh:
        fh.write(b"\n".join(header) + b"\n")
        done = 0
        while done < n:
            k = min(CHUNK, n - done)
            buf = []
            for i in range(k):
                row = list(rng.choice(rows))
                ts += rng.expovariate(1000.0)
                row[0] = b"%.6f" % ts
                row[1] = b"C%016x" % (done + i)
                buf.append(b"\t".join(row))
            fh.write(b"\n".join(buf) + b"\n")
            done += k
        fh.write(b"#close\t2026-11-23-00-00-00\n")
    print(f"wrote {n:,} rows to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
