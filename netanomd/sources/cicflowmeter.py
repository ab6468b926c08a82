"""CICFlowMeter CSV reader (CIC-IDS2017, CSE-CIC-IDS2018 and their derivatives), for training
and evaluation only.

Owns the column spellings: a header name is matched by its letters and digits only, case
ignored (``" Total Fwd Packets"``, ``"Tot Fwd Pkts"``, ``"tot_fwd_pkts"`` are one name), against
the spellings of CIC-IDS2017's CSVs (CICFlowMeter 3, with or without leading spaces),
CICFlowMeter 4 (``Total Fwd Packet``, ``Total Bwd packets``, ``Total Length of Fwd Packet``), the
CSE-CIC-IDS2018 / CICFlowMeter-V3 abbreviations (``Tot Fwd Pkts``, ``TotLen Fwd Pkts``, ``Dst
Port``) and the Python cicflowmeter's snake case. Mapped (absent ones stay null):

* ``Flow ID`` -> uid (without one, ``<file name>#<n>`` for the file's n-th flow, so every
  flow has its own alert id); ``Source IP``/``Src IP`` -> orig_h, ``Source Port`` -> orig_p,
  ``Destination IP`` -> resp_h, ``Destination Port`` -> resp_p; ``Protocol`` (IANA number) ->
  proto; ``Timestamp`` (day/month/year as CIC-IDS2017 writes it, taken as UTC) -> ts;
* ``Flow Duration`` (microseconds) -> duration; forward/backward packet counts -> orig_pkts /
  resp_pkts; forward/backward payload lengths -> orig_bytes / resp_bytes;
* the label (:func:`label_columns`): ``Label``/``label``, else ``Labelb`` (0/1), else
  ``Attack``/``Attack Type``; ``0`` and ``1`` read as benign and malicious; an ``Attack`` column
  beside another label column becomes detailed_label.

A file needs ``Flow Duration`` and the forward packet count. Published derivatives often drop
addresses, ports and time (a 1% sample of CIC-IDS2017 with ``Labelb``): such a file is scored on
what it has, and the source says once which of them are missing (:attr:`CicFlowMeterSource.missing`,
and a log line). CICFlowMeter writes ``Infinity`` and ``NaN`` in rate columns; they become null.
There is no conn_state or history: those features stay "other".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from netanomd.errors import InputError
from netanomd.flow import FlowBatch
from netanomd.sources._text import DelimitedParser, FileSource, line_blocks, open_binary

log = logging.getLogger(__name__)


def column_key(name: str) -> str:
    """A header name as it is matched: letters and digits, lower case (``" Tot Fwd Pkts"`` ->
    ``"totfwdpkts"``)."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


#: Canonical column -> the spellings it has (as :func:`column_key` gives them), first wins.
COLUMNS: dict[str, tuple[str, ...]] = {
    "uid": ("flowid",),
    "orig_h": ("sourceip", "srcip"),
    "orig_p": ("sourceport", "srcport"),
    "resp_h": ("destinationip", "dstip", "destip"),
    "resp_p": ("destinationport", "dstport", "destport"),
    "proto": ("protocol",),
    "ts": ("timestamp",),
    "duration": ("flowduration",),
    "orig_pkts": ("totalfwdpackets", "totalfwdpacket", "totfwdpkts", "totalforwardpackets"),
    "resp_pkts": (
        "totalbackwardpackets",
        "totalbwdpackets",
        "totalbwdpacket",
        "totbwdpkts",
    ),
    "orig_bytes": (
        "totallengthoffwdpackets",
        "totallengthoffwdpacket",
        "totlenfwdpkts",
        "fwdpktslentotal",
    ),
    "resp_bytes": (
        "totallengthofbwdpackets",
        "totallengthofbwdpacket",
        "totlenbwdpkts",
        "bwdpktslentotal",
    ),
}
#: Label columns, first present wins: a named label, a 0/1 one, the attack name.
LABELS = ("label", "labelb", "attack", "attacktype")
#: Columns naming the attack: the detailed label when another column is the label.
ATTACK_NAMES = ("attack", "attacktype")
#: What a file must have to be read as CICFlowMeter output.
REQUIRED = ("duration", "orig_pkts")
#: What a file may lack and still be scored (said once).
OPTIONAL = ("orig_h", "orig_p", "resp_h", "resp_p", "ts", "proto")
_PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp"}
_REQUIRED_NAMES = {
    "duration": "'Flow Duration'",
    "orig_pkts": "forward packet count ('Total Fwd Packets', 'Tot Fwd Pkts', ...)",
}
_OPTIONAL_NAMES = {
    "orig_h": "source address",
    "orig_p": "source port",
    "resp_h": "destination address",
    "resp_p": "destination port",
    "ts": "timestamp",
    "proto": "protocol",
}


def _by_key(names: Iterable[str]) -> dict[str, str]:
    """:func:`column_key` -> the first header name with that key."""
    out: dict[str, str] = {}
    for name in names:
        out.setdefault(column_key(name), name)
    return out


def find_columns(names: Iterable[str]) -> dict[str, str]:
    """Canonical column -> the file's column name (``label``/``detailed_label`` included) for
    the header ``names`` (as written, spaces and all)."""
    by_key = _by_key(names)
    out: dict[str, str] = {}
    for canon, keys in COLUMNS.items():
        found = next((by_key[k] for k in keys if k in by_key), None)
        if found is not None:
            out[canon] = found
    label, detailed = label_columns(by_key.values())
    if label is not None:
        out["label"] = label
    if detailed is not None:
        out["detailed_label"] = detailed
    return out


def label_columns(names: Iterable[str]) -> tuple[str | None, str | None]:
    """(label column, detailed label column) of a header, either None when absent: the first of
    ``Label``, ``Labelb`` (0/1), ``Attack``; ``Attack`` is the detailed label beside another."""
    by_key = _by_key(names)
    label = next((by_key[k] for k in LABELS if k in by_key), None)
    detailed = next((by_key[k] for k in ATTACK_NAMES if k in by_key), None)
    return label, detailed if detailed != label else None


def label_text(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Label values as text: surrounding spaces dropped, ``0`` benign and ``1`` malicious (the
    binary columns of derivatives such as ``Labelb``), other names as written."""
    text = pc.utf8_trim_whitespace(pc.cast(values, pa.string()))
    binary = pc.if_else(pc.equal(text, "1"), "malicious", text)
    return pc.if_else(pc.equal(text, "0"), "benign", binary)


def _proto(text: str) -> str | None:
    """An IANA protocol number (``6``) as its name (``tcp``); None when it is not one."""
    number = text.strip()
    if not (number.isascii() and number.isdigit()) or int(number) > 255:
        return None
    return _PROTO_NAMES.get(int(number), number.lstrip("0") or "0")


def looks_like_cic(header: str) -> bool:
    """Whether a CSV header line is CICFlowMeter's: a flow duration and a forward packet count,
    in any of the spellings of :data:`COLUMNS`."""
    found = find_columns(header.split(","))
    return all(k in found for k in REQUIRED)


class CicFlowMeterSource(FileSource):
    """A CICFlowMeter CSV file."""

    kind = "cicflowmeter"
    #: The :data:`OPTIONAL` columns the file lacks (known once the header was read).
    missing: tuple[str, ...] = ()

    def batches(self) -> Iterator[FlowBatch]:
        with open_binary(self.path) as fh:
            blocks = line_blocks(fh, self.batch_size)
            first = next(blocks, None)
            if first is None or not first[1]:
                raise InputError(f"{self.path}: empty file")
            header = first[1][0].decode("utf-8", "replace")
            fields = [h.strip() for h in header.split(",")]
            mapping = find_columns(fields)
            absent = [_REQUIRED_NAMES[k] for k in REQUIRED if k not in mapping]
            if absent:
                raise InputError(
                    f"{self.path}: not a CICFlowMeter CSV (no {' and no '.join(absent)} column)"
                )
            self.missing = tuple(k for k in OPTIONAL if k not in mapping)
            if self.missing:
                log.warning(
                    "%s: no %s column: flows are scored on what the file has; addresses, ports "
                    "and times show as '-'",
                    self.path,
                    ", ".join(_OPTIONAL_NAMES[k] for k in self.missing),
                )
            # Time and protocol are converted here, not by the generic parser.
            special: dict[str, str] = {k: mapping.pop(k) for k in ("ts", "proto") if k in mapping}
            parser = DelimitedParser(
                self.path, fields, b",", mapping, null_values=("",), comment=None
            )
            numbered = "uid" not in mapping
            name = Path(self.path).name
            start, lines = first
            for s, ls in ((start + 1, lines[1:]), *blocks):
                table = parser.parse(s, ls, self.stats)
                if table is None:
                    continue
                n = table.num_rows
                cols = {name: table.column(name) for name in table.column_names}
                if "duration" in cols:
                    cols["duration"] = pc.divide(cols["duration"], 1e6)
                if "label" in cols:
                    cols["label"] = label_text(cols["label"])
                if special:
                    raw = self._raw_columns(ls, fields, special, n)
                    if "ts" in raw:
                        # Here only: importing pandas costs about 0.4 CPU-s, more than
                        # reading a million Zeek rows, and no other format needs it.
                        import pandas as pd

                        parsed = pd.to_datetime(
                            pd.Series(raw["ts"]),
                            dayfirst=True,
                            errors="coerce",
                            format="mixed",
                            utc=True,
                        )
                        # In the parsed resolution: year 1 is beyond nanoseconds' range.
                        epoch = pd.Timestamp(0, tz="UTC").as_unit(parsed.dt.unit)
                        secs = (parsed - epoch).dt.total_seconds().to_numpy()
                        cols["ts"] = pa.array(
                            np.where(parsed.isna(), np.nan, secs), mask=parsed.isna().to_numpy()
                        )
                    if "proto" in raw:
                        cols["proto"] = pa.array([_proto(v) for v in raw["proto"]], pa.string())
                if numbered:
                    first_row = self.stats.rows + 1
                    rows = range(first_row, first_row + n)
                    cols["uid"] = pa.array([f"{name}#{i}" for i in rows], pa.string())
                cols["source"] = pa.array(["cicflowmeter"] * n, pa.string())
                self.stats.rows += n
                yield FlowBatch.from_table(pa.table(cols))

    def _raw_columns(
        self, lines: list[bytes], fields: list[str], special: dict[str, str], n: int
    ) -> dict[str, list[str]]:
        """Text of the special columns for the lines the parser kept (same field count)."""
        idx = {k: fields.index(v) for k, v in special.items()}
        out: dict[str, list[str]] = {k: [] for k in idx}
        nsep = len(fields) - 1
        for line in lines:
            if not line or line.count(b",") != nsep:
                continue
            parts = line.split(b",")
            for k, i in idx.items():
                out[k].append(parts[i].decode("utf-8", "replace"))
        # Rows dropped for bad numbers make lengths differ; then give up on these columns.
        return {k: v for k, v in out.items() if len(v) == n}
