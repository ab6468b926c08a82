"""CICFlowMeter CSV reader (CIC-IDS2017 and similar), for training and evaluation only.

Mapped columns (header names are matched after stripping spaces; absent ones stay null):
``Flow ID`` -> uid, ``Source IP``/``Src IP`` -> orig_h, ``Source Port`` -> orig_p,
``Destination IP``/``Dst IP`` -> resp_h, ``Destination Port``/``Dst Port`` -> resp_p,
``Protocol`` (IANA number) -> proto, ``Timestamp`` (day/month/year as CIC-IDS2017 writes it,
taken as UTC) -> ts, ``Flow Duration`` (microseconds) -> duration,
``Total Fwd Packets``/``Total Backward Packets`` -> orig_pkts/resp_pkts,
``Total Length of Fwd Packets``/``Total Length of Bwd Packets`` (payload) ->
orig_bytes/resp_bytes, ``Label`` -> label. CICFlowMeter writes ``Infinity`` and ``NaN`` in rate
columns; they become null. There is no conn_state or history: those features stay "other".
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from netanomd.errors import InputError
from netanomd.flow import FlowBatch
from netanomd.sources._text import DelimitedParser, FileSource, line_blocks, open_binary

_COLUMNS = {
    "uid": ("Flow ID",),
    "orig_h": ("Source IP", "Src IP"),
    "orig_p": ("Source Port", "Src Port"),
    "resp_h": ("Destination IP", "Dst IP"),
    "resp_p": ("Destination Port", "Dst Port"),
    "proto": ("Protocol",),
    "ts": ("Timestamp",),
    "duration": ("Flow Duration",),
    "orig_pkts": ("Total Fwd Packets", "Tot Fwd Pkts"),
    "resp_pkts": ("Total Backward Packets", "Tot Bwd Pkts"),
    "orig_bytes": ("Total Length of Fwd Packets", "TotLen Fwd Pkts"),
    "resp_bytes": ("Total Length of Bwd Packets", "TotLen Bwd Pkts"),
    "label": ("Label",),
}
_PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp"}


def _proto(text: str) -> str | None:
    """An IANA protocol number (``6``) as its name (``tcp``); None when it is not one."""
    number = text.strip()
    if not (number.isascii() and number.isdigit()) or int(number) > 255:
        return None
    return _PROTO_NAMES.get(int(number), number.lstrip("0") or "0")


def looks_like_cic(header: str) -> bool:
    names = {h.strip() for h in header.split(",")}
    return "Flow Duration" in names and ("Total Fwd Packets" in names or "Tot Fwd Pkts" in names)


class CicFlowMeterSource(FileSource):
    """A CICFlowMeter CSV file."""

    kind = "cicflowmeter"

    def batches(self) -> Iterator[FlowBatch]:
        with open_binary(self.path) as fh:
            blocks = line_blocks(fh, self.batch_size)
            first = next(blocks, None)
            if first is None or not first[1]:
                raise InputError(f"{self.path}: empty file")
            header = first[1][0].decode("utf-8", "replace")
            if not looks_like_cic(header):
                raise InputError(f"{self.path}: not a CICFlowMeter CSV (no Flow Duration column)")
            fields = [h.strip() for h in header.split(",")]
            mapping: dict[str, str] = {}
            for canon, names in _COLUMNS.items():
                for n in names:
                    if n in fields:
                        mapping[canon] = n
                        break
            # Time and protocol are converted here, not by the generic parser.
            special: dict[str, str] = {k: mapping.pop(k) for k in ("ts", "proto") if k in mapping}
            parser = DelimitedParser(
                self.path, fields, b",", mapping, null_values=("",), comment=None
            )
            start, lines = first
            for s, ls in ((start + 1, lines[1:]), *blocks):
                table = parser.parse(s, ls, self.stats)
                if table is None:
                    continue
                n = table.num_rows
                cols = {name: table.column(name) for name in table.column_names}
                if "duration" in cols:
                    cols["duration"] = pc.divide(cols["duration"], 1e6)
                if special:
                    raw = self._raw_columns(ls, fields, special, n)
                    if "ts" in raw:
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
