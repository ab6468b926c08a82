"""Which series the metrics source reads, and how they are named in a reason.

Owns :class:`Series`, the default set (:data:`DEFAULT_SERIES`: node-exporter's CPU, memory,
network throughput, errors and drops, netanomd's own intake, queue and drops, and Suricata's or
Zeek's capture drops when an exporter publishes them) and the series file (:func:`load_series`).

A series is a PromQL expression returning one value per entity (``by``: ``instance`` by
default, ``name`` or ``container`` for cAdvisor's containers); ``$window`` in it stands for the
rate window the command chooses from its step. An ``instance`` label's port is dropped
(:func:`entity_of`), so node-exporter on ``host:9100`` and netanomd on ``host:9464`` describe
one entity, ``host``: its row carries both the machine's load and the sensor's health.

The series file is YAML, a list of mappings with the fields of :class:`Series`::

    - name: receive_bytes
      query: sum by (instance) (rate(node_network_receive_bytes_total[$window]))
      words: receive throughput
      unit: B/s
      floor: 10000
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from netanomd.errors import InputError

#: Units a value is written in: bytes and bytes per second are scaled (kB, MB, ...).
UNITS = ("B", "B/s", "cores", "/s", "flows", "flows/s", "packets/s", "%", "ms", "s", "")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Series:
    """One series: its column name, its query, and how a reason names and writes it."""

    name: str
    #: PromQL returning one value per entity (``$window``: the rate window).
    query: str
    #: The series in words ("receive throughput").
    words: str
    #: How a value is written (:data:`UNITS`).
    unit: str = ""
    #: The smallest change that matters, in the series' unit: the robust baseline's spread is
    #: never taken below it (a series that is always 0 is not infinitely surprised by 1).
    floor: float = 0.0
    #: The label naming the entity (instance, container).
    by: str = "instance"

    def promql(self, window: str) -> str:
        return self.query.replace("$window", window)


def _rate(metric: str, by: str = "instance", match: str = "") -> str:
    return f"sum by ({by}) (rate({metric}{match}[$window]))"


#: What ``--series default`` reads: node-exporter per instance, and the sensor's health.
DEFAULT_SERIES: tuple[Series, ...] = (
    Series(
        "cpu_busy",
        _rate("node_cpu_seconds_total", match='{mode!="idle"}'),
        "CPU busy",
        "cores",
        0.05,
    ),
    Series(
        "memory_used",
        "max by (instance) (node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes)",
        "memory in use",
        "B",
        32e6,
    ),
    Series(
        "receive_bytes",
        _rate("node_network_receive_bytes_total"),
        "receive throughput",
        "B/s",
        1e4,
    ),
    Series(
        "transmit_bytes",
        _rate("node_network_transmit_bytes_total"),
        "transmit throughput",
        "B/s",
        1e4,
    ),
    Series("receive_errors", _rate("node_network_receive_errs_total"), "receive errors", "/s", 0.1),
    Series(
        "transmit_errors", _rate("node_network_transmit_errs_total"), "transmit errors", "/s", 0.1
    ),
    Series("receive_drops", _rate("node_network_receive_drop_total"), "receive drops", "/s", 0.1),
    Series(
        "sensor_flows",
        _rate("netanomd_flows_received_total"),
        "flows netanomd received",
        "flows/s",
        1.0,
    ),
    Series(
        "sensor_queue",
        "max by (instance) (netanomd_queue_flows)",
        "netanomd's queue",
        "flows",
        100.0,
    ),
    Series(
        "sensor_dropped",
        _rate("netanomd_flows_dropped_total"),
        "flows netanomd dropped",
        "flows/s",
        0.1,
    ),
    Series(
        "capture_drops",
        _rate('{__name__=~"suricata_capture_kernel_drops_total|zeek_.*dropped.*_total"}'),
        "capture drops (Suricata or Zeek)",
        "packets/s",
        1.0,
    ),
)


def entity_of(labels: dict[str, str], by: str) -> str:
    """The entity a result's labels name: the ``by`` label, an instance without its port."""
    value = labels.get(by, "")
    if by == "instance":
        host, sep, port = value.rpartition(":")
        if sep and port.isdigit():
            return host.strip("[]")
    return value


def load_series(spec: str) -> tuple[Series, ...]:
    """``"default"`` (:data:`DEFAULT_SERIES`) or the series of a YAML file (module docstring)."""
    if spec == "default":
        return DEFAULT_SERIES
    path = Path(spec)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError(f"--series {spec}: cannot read it ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not YAML ({exc})") from exc
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: expected a list of series (name, query, words, ...)")
    out = tuple(_series(item, f"{path}: series {i + 1}") for i, item in enumerate(data))
    check_unique(out, str(path))
    return out


def _series(item: Any, where: str) -> Series:
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected a mapping, got {type(item).__name__}")
    known = {f.name for f in fields(Series)}
    unknown = sorted(set(item) - known)
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {sorted(known)})")
    for key in ("name", "query", "words"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise InputError(f"{where}: {key!r} is required (a non-empty string)")
    name = item["name"]
    if not _NAME.match(name):
        raise InputError(f"{where}: name {name!r}: lower-case letters, digits and _ only")
    unit = item.get("unit", "")
    if unit not in UNITS:
        raise InputError(f"{where} ({name}): unit {unit!r} is not one of {list(UNITS)}")
    floor = item.get("floor", 0.0)
    if isinstance(floor, bool) or not isinstance(floor, int | float) or floor < 0:
        raise InputError(f"{where} ({name}): floor must be a number >= 0, got {floor!r}")
    by = item.get("by", "instance")
    if not isinstance(by, str) or not by:
        raise InputError(f"{where} ({name}): 'by' must be a label name")
    return Series(name, item["query"], item["words"], unit, float(floor), by)


def check_unique(series: Sequence[Series], where: str) -> None:
    """Refuse two series of one name (they would be one column)."""
    seen: set[str] = set()
    for s in series:
        if s.name in seen:
            raise InputError(f"{where}: series {s.name!r} is given twice")
        seen.add(s.name)


def fmt(value: float, unit: str) -> str:
    """A value for people, in its unit: ``"38.0 MB/s"``, ``"1.20 cores"``, ``"12 flows"``."""
    v = float(value)
    if unit in ("B", "B/s"):
        per = "/s" if unit == "B/s" else ""
        for prefix in ("", "k", "M", "G", "T"):
            if abs(v) < 1000 or prefix == "T":
                return f"{v:.0f} B{per}" if not prefix else f"{v:.1f} {prefix}B{per}"
            v /= 1000
    if unit == "cores":
        return f"{v:.2f} cores"
    digits = 0 if abs(v) >= 100 else 1 if abs(v) >= 10 else 2
    text = f"{v:,.{digits}f}"
    if not unit:
        return text
    return f"{text}{unit}" if unit in ("%", "/s") else f"{text} {unit}"
