"""Zeek conn.log readers: ASCII/TSV (with its ``#`` header), JSON lines, and IoT-23's CSV export.

TSV: the header's ``#separator`` (escaped, e.g. ``\\x09``), ``#unset_field``, ``#empty_field``
and ``#fields`` are honoured; ``#close`` and other ``#`` lines are skipped anywhere. The
IoT-23 variant, whose last three fields (``tunnel_parents label detailed-label``) are separated
by runs of spaces instead of the separator, is recognised from its ``#fields`` line.
Field names map to :data:`~netanomd.flow.FLOW_SCHEMA` by dropping ``id.``; label columns
(``label``/``Label``, ``detailedlabel``/``detailed-label``) go to ``label``/``detailed_label``.

JSON is decoded column-wise: a block of lines in one typed ``pyarrow.json`` pass; a block with
any line that pass would read differently from a JSON parser is decoded line by line
(:func:`_json_rows`), which names each bad line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from netanomd.errors import InputError
from netanomd.flow import FIELD_NAMES, FlowBatch
from netanomd.sources import ReadStats, out_of_range
from netanomd.sources._text import (
    DelimitedParser,
    FileSource,
    convert,
    data_blocks,
    expected,
    head,
    line_blocks,
    open_binary,
    parse_type,
    split_lines,
    string_scalar,
    typed_column,
)

log = logging.getLogger(__name__)

_LABEL_NAMES = {
    "label": "label",
    "detailedlabel": "detailed_label",
    "detailed-label": "detailed_label",
    "detailed_label": "detailed_label",
}
_IOT23_SPACES = re.compile(rb" {2,}")


def canonical_name(field: str) -> str | None:
    """FLOW_SCHEMA name for a Zeek field name, or None when it is not one we keep."""
    low = field.strip().lower()
    if low in _LABEL_NAMES:
        return _LABEL_NAMES[low]
    name = field.strip().removeprefix("id.")
    if name in FIELD_NAMES and name not in ("source", "flow_id"):
        return name
    return None


def _separator(text: bytes, where: str) -> bytes:
    """The byte a ``#separator`` line names (``\\x09``); one ASCII character other than a line
    end, as the columnar parser needs."""
    try:
        sep = text.decode("ascii").encode().decode("unicode_escape").encode("latin-1")
    except UnicodeError:
        sep = b""
    if len(sep) != 1 or not sep.isascii() or sep in b"\r\n":
        raise InputError(f"{where}: #separator {text[:20]!r} is not one ASCII character")
    return sep


@dataclass
class ZeekTsvHeader:
    """What a Zeek ASCII log's ``#`` header says."""

    separator: bytes
    unset: str
    empty: str
    fields: list[str]
    path: str | None
    #: IoT-23 variant: the last fields are separated by runs of spaces.
    space_tail: bool = False
    lines: int = 0

    @classmethod
    def parse(cls, lines: Sequence[bytes], where: str = "<input>") -> ZeekTsvHeader:
        """Parse the header lines (those starting with ``#``) at the top of a log."""
        sep = b"\t"
        unset, empty, path = "-", "(empty)", None
        fields: list[str] | None = None
        space_tail = False
        count = 0
        for raw in lines:
            if not raw.startswith(b"#"):
                break
            count += 1
            if raw.startswith(b"#separator "):
                sep = _separator(raw[len(b"#separator ") :], where)
                continue
            key, _, value = raw[1:].partition(sep)
            text = value.decode("utf-8", "replace")
            if key == b"unset_field":
                unset = text
            elif key == b"empty_field":
                empty = text
            elif key == b"path":
                path = text
            elif key == b"fields":
                parts = text.split(sep.decode("latin-1"))
                if any(re.search(r"\s", p) for p in parts):
                    space_tail = True
                    parts = [q for p in parts for q in p.split()]
                fields = parts
        if fields is None:
            raise InputError(f"{where}: Zeek log header has no #fields line")
        if "uid" not in fields and "id.orig_h" not in fields:
            raise InputError(f"{where}: not a Zeek conn log (no uid or id.orig_h in #fields)")
        return cls(sep, unset, empty, fields, path, space_tail, count)

    def parser(self, where: str) -> DelimitedParser:
        mapping = {}
        for f in self.fields:
            canon = canonical_name(f)
            if canon is not None:
                mapping[canon] = f
        sep = self.sep_for_lines()

        def fix(line: bytes) -> bytes:
            return _IOT23_SPACES.sub(sep, line)

        return DelimitedParser(
            where,
            self.fields,
            sep,
            mapping,
            null_values=(self.unset,),
            empty_value=self.empty,
            line_filter=fix if self.space_tail else None,
        )

    def sep_for_lines(self) -> bytes:
        return self.separator


def _finish(table: pa.Table | None, source: str) -> FlowBatch | None:
    if table is None or table.num_rows == 0:
        return None
    table = table.append_column("source", pa.repeat(string_scalar(source), table.num_rows))
    return FlowBatch.from_table(table)


def zeek_tsv_lines_to_batch(
    lines: list[bytes], header: ZeekTsvHeader, stats: ReadStats, where: str, first_line: int = 1
) -> FlowBatch | None:
    """Turn appended data lines of a Zeek TSV log into a batch (for log followers)."""
    batch = _finish(header.parser(where).parse(first_line, lines, stats), "zeek")
    if batch is not None:
        stats.rows += len(batch)
    return batch


class ZeekTsvSource(FileSource):
    """A Zeek ASCII (TSV) conn.log, plain or gzipped."""

    kind = "zeek-tsv"

    def batches(self) -> Iterator[FlowBatch]:
        start = head(self.path)
        if not start:
            raise InputError(f"{self.path}: empty file")
        header = ZeekTsvHeader.parse(split_lines(start), self.path)
        parser = header.parser(self.path)
        with open_binary(self.path) as fh:
            for first, data in data_blocks(fh, self.batch_size, skip=header.lines):
                batch = _finish(parser.parse_data(first, data, self.stats), "zeek")
                del data  # the text is parsed: not kept while the batch is scored
                if batch is not None:
                    self.stats.rows += len(batch)
                    yield batch


def _chain(
    first: tuple[int, list[bytes]], rest: Iterator[tuple[int, list[bytes]]]
) -> Iterator[tuple[int, list[bytes]]]:
    yield first
    yield from rest


class ZeekCsvSource(FileSource):
    """IoT-23's CSV export of conn.log (header row, ``-`` became empty, ``(empty)`` kept)."""

    kind = "zeek-csv"

    def batches(self) -> Iterator[FlowBatch]:
        with open_binary(self.path) as fh:
            blocks = line_blocks(fh, self.batch_size)
            first = next(blocks, None)
            if first is None or not first[1]:
                raise InputError(f"{self.path}: empty file")
            fields = first[1][0].decode("utf-8", "replace").split(",")
            mapping = {c: f for f in fields if (c := canonical_name(f)) is not None}
            if "orig_h" not in mapping:
                raise InputError(f"{self.path}: CSV has no id.orig_h column: not a Zeek conn log")
            parser = DelimitedParser(
                self.path,
                fields,
                b",",
                mapping,
                null_values=("", "-"),
                empty_value="(empty)",
                comment=None,
            )
            start, lines = first
            for s, ls in _chain((start + 1, lines[1:]), blocks):
                batch = _finish(parser.parse(s, ls, self.stats), "zeek")
                if batch is not None:
                    self.stats.rows += len(batch)
                    yield batch


# -- JSON ----------------------------------------------------------------------------------
#: canonical column -> the JSON keys that may carry it, in order of preference.
_JSON_KEYS: dict[str, tuple[str, ...]] = {
    "ts": ("ts",),
    "uid": ("uid",),
    "orig_h": ("id.orig_h",),
    "orig_p": ("id.orig_p",),
    "resp_h": ("id.resp_h",),
    "resp_p": ("id.resp_p",),
    "proto": ("proto",),
    "service": ("service",),
    "duration": ("duration",),
    "orig_bytes": ("orig_bytes",),
    "resp_bytes": ("resp_bytes",),
    "conn_state": ("conn_state",),
    "local_orig": ("local_orig",),
    "local_resp": ("local_resp",),
    "missed_bytes": ("missed_bytes",),
    "history": ("history",),
    "orig_pkts": ("orig_pkts",),
    "orig_ip_bytes": ("orig_ip_bytes",),
    "resp_pkts": ("resp_pkts",),
    "resp_ip_bytes": ("resp_ip_bytes",),
    "community_id": ("community_id",),
    "label": ("label", "Label"),
    "detailed_label": ("detailedlabel", "detailed-label", "detailed_label"),
}


_NESTED: dict[type, str] = {dict: "object", list: "array"}


def zeek_json_lines_to_batch(
    lines: Sequence[bytes], stats: ReadStats, where: str, first_line: int = 1
) -> FlowBatch | None:
    """Parse Zeek JSON log lines (one object per line) into a batch; bad lines are counted."""
    if lines and all(lines):  # blank lines (a follower's skipped ones) go the careful way
        table = _json_typed(b"\n".join(lines) + b"\n", len(lines))
        if table is not None:
            return _counted(table, stats)
    return _json_rows(lines, stats, where, first_line)


def zeek_json_block_to_batch(
    data: bytes, stats: ReadStats, where: str, first_line: int = 1
) -> FlowBatch | None:
    """:func:`zeek_json_lines_to_batch` for a block from :func:`data_blocks`."""
    nlines = int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == 10))
    table = _json_typed(data, nlines)
    if table is not None:
        return _counted(table, stats)
    return _json_rows(split_lines(data), stats, where, first_line)


#: Every key :data:`_JSON_KEYS` names, with the type Arrow parses its value as.
_JSON_SCHEMA = pa.schema(
    [pa.field(key, parse_type(canon)) for canon, keys in _JSON_KEYS.items() for key in keys]
)
_JSON_PARSE = pajson.ParseOptions(explicit_schema=_JSON_SCHEMA, unexpected_field_behavior="ignore")


def _json_typed(data: bytes, nlines: int) -> pa.Table | None:
    """The ``nlines`` lines of ``data`` decoded column-wise in one Arrow pass, or None when
    any line needs the careful path (:func:`_json_rows`): one that is not a JSON object with
    ``id.orig_h`` on a line of its own, a value that is not of its column's type or out of
    range, a key given twice, a blank line, an object with two spellings of a label key, or
    text that is not UTF-8. One leniency remains: Arrow takes ``NaN``, ``Infinity`` and numbers
    beyond a double's range (not JSON) in keys no column reads, where the careful path calls
    the line invalid JSON; in the keys it reads they go the careful way."""
    try:
        table = pajson.read_json(
            pa.BufferReader(data),
            read_options=pajson.ReadOptions(use_threads=False, block_size=len(data) + 1),
            parse_options=_JSON_PARSE,
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if table.num_rows != nlines or table.column("id.orig_h").null_count:
        return None
    if not data.isascii():  # Arrow does not check UTF-8 (in the keys it skips, not at all)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    columns: dict[str, pa.Array] = {}
    for canon, keys in _JSON_KEYS.items():
        col = table.column(keys[0]).combine_chunks()
        others = [k for k in keys[1:] if table.column(k).null_count < table.num_rows]
        if others:
            # The first of the other spellings an object has stands in for a missing or null
            # one: ambiguous (so left to the careful path) when an object may have two.
            if len(others) > 1 or any(
                f'"{k}"'.encode() in data for k in keys[1:] if k != others[0]
            ):
                return None
            col = pc.coalesce(col, table.column(others[0]).combine_chunks())
        if pa.types.is_floating(col.type) and not pc.all(pc.is_finite(col)).as_py():
            return None  # NaN, Infinity or an overflow: Arrow takes them, JSON has none
        typed = typed_column(canon, col)
        if typed is None:
            return None
        columns[canon] = typed
    return pa.table(columns)


def _counted(table: pa.Table, stats: ReadStats) -> FlowBatch | None:
    batch = _finish(table, "zeek")
    if batch is not None:
        stats.rows += len(batch)
    return batch


def _json_rows(
    lines: Sequence[bytes], stats: ReadStats, where: str, first_line: int = 1
) -> FlowBatch | None:
    """The careful path: each line decoded on its own, every bad line counted and named."""
    cols: dict[str, list[object]] = {c: [] for c in _JSON_KEYS}
    linenos: list[int] = []
    n = 0
    for offset, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            _problem(stats, where, first_line + offset, f"invalid JSON ({exc})")
            continue
        if not isinstance(obj, dict) or "id.orig_h" not in obj:
            _problem(stats, where, first_line + offset, "not a Zeek conn record (no id.orig_h)")
            continue
        values = []
        for keys in _JSON_KEYS.values():
            value = obj.get(keys[0])
            if value is None and len(keys) > 1:
                value = next((obj[k] for k in keys[1:] if k in obj), None)
            values.append(value)
        nested = [(k, v) for k, v in zip(_JSON_KEYS, values, strict=True) if type(v) in _NESTED]
        if nested:
            name, value = nested[0]
            what = f"{name}: a JSON {_NESTED[type(value)]} where a value belongs"
            _problem(stats, where, first_line + offset, what)
            continue
        for column, value in zip(cols.values(), values, strict=True):
            column.append(value)
        linenos.append(first_line + offset)
        n += 1
    if n == 0:
        return None
    arrays = {}
    bad_rows: set[int] = set()
    schema = FlowBatch.empty().table.schema
    for canon, values in cols.items():
        typ = schema.field(canon).type
        try:
            arrays[canon] = pa.array(values, type=typ)
            bad = out_of_range(canon, arrays[canon]) if pa.types.is_integer(typ) else []
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            text = pa.array([None if v is None else str(v) for v in values], pa.string())
            arrays[canon], bad = convert(canon, text)
        for i in bad:
            _problem(
                stats, where, linenos[i], f"{canon}: {values[i]!r:.80} is not {expected(canon)}"
            )
        bad_rows.update(bad)
    table = pa.table(arrays)
    if bad_rows:
        keep = [i not in bad_rows for i in range(n)]
        table = table.filter(pa.array(keep))
    return _counted(table, stats)


def _problem(stats: ReadStats, where: str, lineno: int, what: str) -> None:
    stats.bad_line(f"{where}:{lineno}: {what}")


class ZeekJsonSource(FileSource):
    """A Zeek conn.log written with ``LogAscii::use_json=T`` (plain or gzipped)."""

    kind = "zeek-json"

    def batches(self) -> Iterator[FlowBatch]:
        with open_binary(self.path) as fh:
            for start, data in data_blocks(fh, self.batch_size):
                batch = zeek_json_block_to_batch(data, self.stats, self.path, start)
                del data  # decoded: not kept while the batch is scored
                if batch is not None:
                    yield batch
