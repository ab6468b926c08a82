"""The floor: a bare typed ``pyarrow.csv`` parse of a Zeek TSV conn.log, streamed in blocks
(types from the ``#types`` header; ``-`` and ``(empty)`` are nulls), nothing else.

Usage: ``python arrow_parse.py CONN_LOG``; prints ``rows N``.
"""

from __future__ import annotations

import sys

import pyarrow as pa
import pyarrow.csv as pacsv

ZEEK_TYPES = {
    "time": pa.float64(),
    "interval": pa.float64(),
    "double": pa.float64(),
    "count": pa.int64(),
    "int": pa.int64(),
    "port": pa.int32(),
    "bool": pa.bool_(),
}


def header(path: str) -> tuple[int, list[str], list[str]]:
    lines, names, types = 0, [], []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.startswith("#"):
                break
            lines += 1
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "#fields":
                names = parts[1:]
            elif parts[0] == "#types":
                types = parts[1:]
    return lines, names, types


def main() -> int:
    path = sys.argv[1]
    skip, names, types = header(path)
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(
            skip_rows=skip, column_names=names, block_size=8 << 20, use_threads=False
        ),
        parse_options=pacsv.ParseOptions(
            delimiter="\t", quote_char=False, invalid_row_handler=lambda row: "skip"
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={
                n: ZEEK_TYPES.get(t, pa.string()) for n, t in zip(names, types, strict=True)
            },
            null_values=["-", "(empty)"],
            strings_can_be_null=True,
            true_values=["T"],
            false_values=["F"],
        ),
    )
    rows = sum(batch.num_rows for batch in reader)
    print(f"rows {rows}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
