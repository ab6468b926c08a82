"""Shared machinery for line-oriented flow files: opening (gzip by magic), reading in blocks of
lines with line numbers, and turning delimited text into typed Arrow columns.

Parsing is columnar. A file is read in blocks of whole lines kept as bytes
(:func:`data_blocks`); a block without comment lines (a trailing ``#close`` is cut off) goes
straight to :func:`pyarrow.csv.read_csv` with each column's type, nulls and booleans declared,
so Arrow parses it typed in one pass and checks every line's field count
(:meth:`DelimitedParser.parse_data`). Anything that pass refuses (a comment or short line, a
value that is not its type, a count out of range) sends the block down the careful path: lines
checked one by one, columns parsed as strings and cast one by one, and only a column whose cast
fails checked value by value, to name the bad line and drop it.
"""

from __future__ import annotations

import functools
import gzip
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from netanomd.errors import InputError
from netanomd.flow import FLOW_SCHEMA
from netanomd.sources import ReadStats, int_range

log = logging.getLogger(__name__)

#: Rows per batch unless a caller asks otherwise. 32,768: a batch's columns, features and scores
#: are most of the peak memory above the imports (`netanomd score` on 1M / 10M rows: 373 / 400 MiB
#: peak RSS, against 412 / 454 MiB at 65,536 rows, for ~3-6% more CPU; the grouping does not
#: depend on the batch size).
DEFAULT_BATCH = 32_768
#: Bytes read at a time (lines are never split across blocks).
BLOCK_BYTES = 2 << 20
GZIP_MAGIC = b"\x1f\x8b"


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a file for reading bytes, transparently un-gzipping by magic number."""
    try:
        fh: IO[bytes] = open(path, "rb")  # noqa: SIM115 - returned to the caller
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from exc
    if fh.read(2) == GZIP_MAGIC:
        fh.seek(0)
        return gzip.open(fh, "rb")  # type: ignore[return-value]
    fh.seek(0)
    return fh


def head(path: str | Path, n: int = 64 << 10) -> bytes:
    """The first ``n`` (decompressed) bytes of a file."""
    with open_binary(path) as fh:
        try:
            return fh.read(n)
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: unreadable ({exc})") from exc


class LineSplitter:
    """Cuts a byte stream into complete lines and counts the exact bytes they took.

    ``feed`` returns the complete lines of what has arrived so far (without ``\\n`` and a
    trailing ``\\r``) and keeps an unterminated tail for the next call; ``end`` is the byte
    offset just past the last complete line (CRLF counted as two bytes), which is where a
    follower may resume. ``finish`` returns the unterminated tail of a file that has ended.
    """

    def __init__(self, offset: int = 0) -> None:
        self.end = offset
        self._rest = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._rest + chunk if self._rest else chunk
        cut = buf.rfind(b"\n")
        if cut < 0:
            self._rest = buf
            return []
        self._rest = buf[cut + 1 :]
        self.end += cut + 1
        lines = buf[:cut].split(b"\n")
        if lines[0].endswith(b"\r") or lines[-1].endswith(b"\r") or b"\r" in buf[:4096]:
            lines = [ln.rstrip(b"\r") for ln in lines]
        return lines

    def finish(self) -> list[bytes]:
        rest, self._rest = self._rest, b""
        self.end += len(rest)
        return [rest.rstrip(b"\r")] if rest else []

    @property
    def pending(self) -> int:
        """Bytes of an unterminated line held back."""
        return len(self._rest)


def line_blocks(
    fh: IO[bytes], max_lines: int, first_line: int = 1
) -> Iterator[tuple[int, list[bytes]]]:
    """Yield ``(line number of the first line, lines)`` with at most ``max_lines`` lines each.

    Lines have their ``\\n`` (and a trailing ``\\r``) removed.
    """
    lineno = first_line
    splitter = LineSplitter()
    pending: list[bytes] = []
    while True:
        chunk = fh.read(BLOCK_BYTES)
        pending.extend(splitter.feed(chunk) if chunk else splitter.finish())
        while len(pending) >= max_lines or (pending and not chunk):
            yield lineno, pending[:max_lines]
            lineno += min(max_lines, len(pending))
            pending = pending[max_lines:]
        if not chunk:
            return


def data_blocks(
    fh: IO[bytes], max_lines: int, first_line: int = 1, skip: int = 0
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line number of the first line, block)``: blocks of ``max_lines`` whole lines
    (the last one may have fewer), as read (each line ends in ``\n``; one is added to an
    unterminated last line), after skipping the first ``skip`` lines. Lines are never copied
    one by one, and the blocks are the same whatever the read size, so a file is cut into the
    same batches as :func:`line_blocks` cuts it. Memory: one read and a block being filled;
    nothing of a yielded block is kept while the consumer holds it."""
    lineno = first_line
    # Whole lines of the block being filled: views of the reads (copied once, by the join).
    pending: list[bytes | memoryview] = []
    have = 0  # how many
    partial = b""  # a line begun in an earlier read
    while True:
        chunk = fh.read(BLOCK_BYTES)
        if not chunk:
            if partial:
                pending.append(partial + b"\n")
                have += 1
            if have and not skip:
                yield lineno, _drain(pending)
            return
        view = memoryview(chunk)
        newline = np.frombuffer(chunk, dtype=np.uint8) == 10
        count = int(np.count_nonzero(newline))
        if not skip and have + count < max_lines:
            # The usual read: wholly inside the block being filled, so only its last line
            # end is needed, not every one.
            if count:
                cut = chunk.rfind(b"\n") + 1
                if partial:
                    pending.append(partial)
                pending.append(view[:cut])
                partial, have = chunk[cut:], have + count
            else:
                partial += chunk
            continue
        ends = np.flatnonzero(newline)
        pos = idx = 0
        if skip and count:
            k = min(skip, count)
            pos, idx, partial = int(ends[k - 1]) + 1, k, b""
            skip -= k
            lineno += k
        while idx < count:
            take = min(max_lines - have, count - idx)
            cut = int(ends[idx + take - 1]) + 1
            if partial:
                pending.append(partial)
            pending.append(view[pos:cut])
            partial, pos, idx, have = b"", cut, idx + take, have + take
            if have == max_lines:
                yield lineno, _drain(pending)
                lineno += have
                have = 0
        partial += chunk[pos:]


def _drain(parts: list[bytes | memoryview]) -> bytes:
    """The parts joined, the list emptied: a generator yielding this keeps no reference to
    either while its consumer works on the block."""
    data = b"".join(parts)
    parts.clear()
    return data


def _comment_line(data: bytes, comment: bytes) -> int:
    """Offset of the first line of ``data`` (its first line aside) that starts with
    ``comment``, or -1. The comment's first byte is looked for with ``memchr`` (a two-byte
    ``\\n#`` needle is searched an order of magnitude slower); the few hits inside values are
    stepped over, and a block with many of them is searched for the line start directly."""
    at = data.find(comment[:1], 1)
    for _ in range(16):
        if at < 0:
            return -1
        if data[at - 1] == 10 and data.startswith(comment, at):
            return at
        at = data.find(comment[:1], at + 1)
    return -1 if at < 0 else data.find(b"\n" + comment, at - 1) + 1 or -1


def split_lines(data: bytes) -> list[bytes]:
    """The lines of a block from :func:`data_blocks`, without line ends (a ``\r`` before the
    ``\n`` goes too, as :class:`LineSplitter` does)."""
    lines = data[:-1].split(b"\n") if data.endswith(b"\n") else data.split(b"\n")
    if b"\r" in data:
        lines = [ln.rstrip(b"\r") for ln in lines]
    return lines


# -- typed conversion ----------------------------------------------------------------------
_TYPES: dict[str, pa.DataType] = {f.name: f.type for f in FLOW_SCHEMA}


def parse_type(name: str) -> pa.DataType:
    """The type Arrow parses the :data:`FLOW_SCHEMA` column ``name`` as (integers wide, then
    range-checked by :func:`typed_column`)."""
    typ = _TYPES[name]
    if pa.types.is_unsigned_integer(typ):
        return pa.uint64()
    if pa.types.is_integer(typ):
        return pa.int64()
    if pa.types.is_floating(typ):
        return pa.float64()
    return typ


def typed_column(name: str, col: pa.Array) -> pa.Array | None:
    """A column Arrow parsed as :func:`parse_type` of ``name``, in its :data:`FLOW_SCHEMA`
    type: integers range-checked (None when a value is out of :func:`int_range`: the careful
    path names it) and narrowed, non-finite floats made null; others as they are."""
    typ = _TYPES[name]
    if pa.types.is_integer(typ):
        lo, hi = int_range(name)
        low, high = pc.min_max(col).values()
        if low.is_valid and (low.as_py() < lo or high.as_py() > hi):
            return None
        return col.cast(typ)
    if pa.types.is_floating(typ) and col.null_count < len(col):
        finite = pc.is_finite(col)
        if not pc.all(finite).as_py():
            return pc.if_else(finite, col, pa.nulls(1, col.type)[0])
    return col


def to_float(col: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, list[int]]:
    """Cast strings to float64; returns (column, indices of values that are not numbers).

    Bad values become null, and so do ``inf``/``Infinity``/``NaN`` (CICFlowMeter writes them).
    """
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    bad: list[int] = []
    try:
        arr = np.asarray(
            pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        values = col.to_pylist()
        arr = np.full(len(values), np.nan)
        for i, v in enumerate(values):
            if v is None:
                continue
            try:
                arr[i] = float(v)
            except ValueError:
                bad.append(i)
    finite = np.isfinite(arr)
    return pa.array(arr, mask=~finite), bad


def expected(name: str) -> str:
    """What a value of the :data:`FLOW_SCHEMA` column ``name`` must be, for messages."""
    typ = _TYPES[name]
    if pa.types.is_integer(typ):
        lo, hi = int_range(name)
        return f"an integer from {lo} to {hi}"
    if pa.types.is_floating(typ):
        return "a finite number"
    return f"a valid {typ}"


def convert(name: str, col: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, list[int]]:
    """Cast a string column to the :data:`FLOW_SCHEMA` type of ``name``.

    Returns the typed column and the row indices whose value could not be converted.
    """
    typ = _TYPES[name]
    if pa.types.is_string(typ):
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        return (col if col.type == pa.string() else pc.cast(col, pa.string())), []
    if pa.types.is_boolean(typ):
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        t = pc.equal(col, "T")
        f = pc.equal(col, "F")
        truth = pc.or_(t, pc.equal(col, "true"))
        known = pc.or_(pc.or_(truth, f), pc.equal(col, "false"))
        return pc.if_else(known, truth, pa.nulls(len(col), pa.bool_())), []
    floats, bad = to_float(col)
    if pa.types.is_floating(typ):
        return floats, bad
    arr = np.asarray(floats.to_numpy(zero_copy_only=False), dtype=np.float64)
    valid = ~np.isnan(arr)
    lo, hi = int_range(name)
    neg = valid & ((arr < lo) | (arr > hi) | (arr != np.floor(arr)))
    if neg.any():
        bad = sorted(set(bad) | set(np.flatnonzero(neg).tolist()))
        valid &= ~neg
    out = pa.array(np.where(valid, arr, 0).astype(typ.to_pandas_dtype()), mask=~valid)
    return out, bad


@functools.lru_cache(maxsize=64)
def string_scalar(text: str) -> pa.Scalar:
    """``text`` as an Arrow string scalar, built from buffers: pyarrow's conversion of a Python
    value (``pa.scalar``, ``pa.array`` of a list, ``pc.equal(col, "text")``) imports pandas the
    first time, about 0.35 CPU-s, which the readers otherwise never need."""
    data = text.encode()
    offsets = np.array([0, len(data)], dtype=np.int32)
    array = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return array[0]


def _replace_empty(col: pa.Array | pa.ChunkedArray, empty: str) -> pa.Array | pa.ChunkedArray:
    """``col`` with each value ``empty`` (Zeek's ``(empty)``) made ``""``; the column itself
    when it holds none (the usual case: one comparison, no copy)."""
    hit = pc.equal(col, string_scalar(empty))
    if not pc.any(hit).as_py():
        return col
    return pc.if_else(hit, string_scalar(""), col)


class DelimitedParser:
    """Parses blocks of delimited lines (Zeek TSV, CSV) into canonical flow columns.

    ``fields`` are the file's column names; ``mapping`` maps a canonical FLOW_SCHEMA name to
    the file's column name; ``transforms`` post-process a converted canonical column.
    """

    def __init__(
        self,
        where: str,
        fields: Sequence[str],
        sep: bytes,
        mapping: dict[str, str],
        null_values: Sequence[str] = ("-",),
        empty_value: str | None = None,
        line_filter: Callable[[bytes], bytes] | None = None,
        comment: bytes | None = b"#",
    ) -> None:
        self.where = where
        self.fields = list(fields)
        self.sep = sep
        self.mapping = {k: v for k, v in mapping.items() if v in self.fields}
        self.null_values = list(null_values)
        self.empty_value = empty_value
        self.line_filter = line_filter
        self.comment = comment
        self._nsep = len(self.fields) - 1
        # Arrow needs unique column names.
        self._names = [f"c{i}" for i in range(len(self.fields))]
        self._include = [self._names[self.fields.index(v)] for v in self.mapping.values()]
        self._parse_options = pacsv.ParseOptions(
            delimiter=self.sep.decode(), quote_char=False, newlines_in_values=False
        )
        self._typed_options = pacsv.ConvertOptions(
            column_types={
                self._names[self.fields.index(f)]: parse_type(c) for c, f in self.mapping.items()
            },
            include_columns=self._include,
            null_values=self.null_values,
            strings_can_be_null=True,
            true_values=["T", "true"],
            false_values=["F", "false"],
        )

    def parse_data(self, first_line: int, data: bytes, stats: ReadStats) -> pa.Table | None:
        """Typed canonical columns of the good lines of a block from :func:`data_blocks`: the
        block in one typed Arrow pass when it has no comment lines and Arrow accepts every
        line (field counts, types) and every value; else line by line (:meth:`parse`)."""
        comment = self.comment
        clean = self.line_filter is None  # no comment line (after a trailing #close is cut)
        if comment is not None and clean:
            if data.startswith(comment):
                clean = False
            elif (cut := _comment_line(data, comment)) > 0:
                tail = split_lines(data[cut:])
                clean = all(not ln or ln.startswith(comment) for ln in tail)
                data = data[:cut] if clean else data  # a log's #close carries no flows
        if clean:
            typed = self._typed(data)
            if typed is not None:
                return typed
        return self.parse(first_line, split_lines(data), stats)

    def parse(self, first_line: int, lines: list[bytes], stats: ReadStats) -> pa.Table | None:
        """Typed canonical columns of the good lines (None when there are none)."""
        if self.line_filter is None and lines and lines[-1]:
            data = b"\n".join(lines)
            if self._well_formed(data, len(lines)):
                return self._convert(data, range(first_line, first_line + len(lines)), stats)
        good, numbers = self._checked_lines(first_line, lines, stats)
        if not good:
            return None
        return self._convert(b"\n".join(good), numbers, stats)

    def _well_formed(self, data: bytes, nlines: int) -> bool:
        """Whether every one of the ``nlines`` lines of ``data`` is a well-formed data line
        (the common case), checked with a few whole-block operations instead of a loop."""
        if not data or data.count(self.sep) != self._nsep * nlines or b"\n\n" in data:
            return False
        return self.comment is None or not (
            data.startswith(self.comment) or b"\n" + self.comment in data
        )

    def _read_options(self, data: bytes) -> pacsv.ReadOptions:
        """One Arrow block for the whole of ``data``."""
        return pacsv.ReadOptions(
            column_names=self._names, block_size=len(data) + 1, use_threads=False
        )

    def _typed(self, data: bytes) -> pa.Table | None:
        """The block parsed typed in one Arrow pass, or None when any value needs a look."""
        try:
            table = pacsv.read_csv(
                pa.BufferReader(data),
                read_options=self._read_options(data),
                parse_options=self._parse_options,
                convert_options=self._typed_options,
            )
        except (pa.ArrowInvalid, UnicodeDecodeError):
            return None
        columns: dict[str, pa.Array] = {}
        empty = self.empty_value
        if empty is not None and empty.encode() not in data:
            empty = None  # the usual block: nothing to replace
        for canon, field in self.mapping.items():
            col = table.column(self._names[self.fields.index(field)]).combine_chunks()
            typ = _TYPES[canon]
            if pa.types.is_string(typ):
                if empty is not None:
                    col = _replace_empty(col, empty)
            else:
                col = typed_column(canon, col)
                if col is None:
                    return None
            columns[canon] = col
        return pa.table(columns)

    def _checked_lines(
        self, first_line: int, lines: list[bytes], stats: ReadStats
    ) -> tuple[list[bytes], list[int]]:
        sep, nsep, comment, lf = self.sep, self._nsep, self.comment, self.line_filter
        good: list[bytes] = []
        numbers: list[int] = []
        for offset, line in enumerate(lines):
            if not line or (comment is not None and line.startswith(comment)):
                continue
            if lf is not None:
                line = lf(line)
            if line.count(sep) != nsep:
                n = line.count(sep) + 1
                self._problem(stats, first_line + offset, f"expected {nsep + 1} fields, found {n}")
                continue
            good.append(line)
            numbers.append(first_line + offset)
        return good, numbers

    def _convert(self, data: bytes, numbers: Sequence[int], stats: ReadStats) -> pa.Table | None:
        """Typed columns of good lines joined in ``data``; ``numbers`` are their line numbers."""
        typed = self._typed(data)
        if typed is not None:
            return typed
        try:
            table = pacsv.read_csv(
                pa.BufferReader(data),
                read_options=self._read_options(data),
                parse_options=self._parse_options,
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(self._include, pa.string()),
                    include_columns=self._include,
                    null_values=self.null_values,
                    strings_can_be_null=True,
                ),
            )
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            # Arrow could not parse the block (e.g. invalid UTF-8): fall back line by line.
            return self._parse_slowly(data.split(b"\n"), numbers, stats, exc)
        columns: dict[str, pa.Array] = {}
        bad_rows: dict[int, str] = {}
        for canon, field in self.mapping.items():
            col = table.column(self._names[self.fields.index(field)])
            if self.empty_value is not None and pa.types.is_string(_TYPES[canon]):
                col = _replace_empty(col, self.empty_value)
            typed, bad = convert(canon, col)
            for i in bad:
                bad_rows.setdefault(
                    i,
                    f"{field}: {table.column(self._names[self.fields.index(field)])[i]}"
                    f" is not {expected(canon)}",
                )
            columns[canon] = typed
        out = pa.table(columns)
        if bad_rows:
            for i in sorted(bad_rows):
                self._problem(stats, numbers[i], bad_rows[i])
            keep = np.ones(out.num_rows, dtype=bool)
            keep[list(bad_rows)] = False
            out = out.filter(pa.array(keep))
        return out

    def _parse_slowly(
        self, good: list[bytes], numbers: Sequence[int], stats: ReadStats, exc: Exception
    ) -> pa.Table | None:
        ok_lines, ok_numbers = [], []
        for line, n in zip(good, numbers, strict=True):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                self._problem(stats, n, "not valid UTF-8 text")
                continue
            ok_lines.append(line)
            ok_numbers.append(n)
        if len(ok_lines) == len(good):  # pragma: no cover - Arrow failed for another reason
            for n in numbers:
                self._problem(stats, n, f"unparseable ({exc})")
            return None
        parts = []
        for line, n in zip(ok_lines, ok_numbers, strict=True):
            t = self.parse(n, [line], stats)
            if t is not None:
                parts.append(t)
        return pa.concat_tables(parts) if parts else None

    def _problem(self, stats: ReadStats, lineno: int, what: str) -> None:
        stats.bad_line(f"{self.where}:{lineno}: {what}")


class FileSource:
    """Common state of the file readers: path, name, batch size, statistics."""

    kind: ClassVar[str] = "file"

    def __init__(self, path: str | Path, batch_size: int = DEFAULT_BATCH) -> None:
        self.path = str(path)
        self.name = f"{self.kind}:{self.path}"
        self.batch_size = batch_size
        self.stats = ReadStats()
