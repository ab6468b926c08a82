"""The daemon's training reservoir: a bounded, time-stratified sample of the flows it scored.

Owns ``<state_dir>/reservoir/YYYY-MM-DD.parquet`` (one file per UTC day of *flow* time, the
:data:`~netanomd.flow.FLOW_SCHEMA` columns), what ``netanomd retrain`` trains on when a site has
no Zeek log archive, so retraining works for every source.

* **Time-stratified**: each hour of a day keeps a uniform sample (Algorithm R) of at most
  ``per_day / 24`` flows, so a flood in one hour cannot crowd the rest of the day out. How
  many flows each hour saw is stored with the day (the file's ``netanomd.seen`` metadata), so
  a restarted daemon, or flows arriving for a day already written, go on sampling the hour
  uniformly instead of favouring the flows after the restart.
* **Bounded**: at most ``per_day`` flows a day, the newest ``keep_days`` days, and the oldest
  days are deleted while the directory is larger than ``max_bytes``.
* **Clean**: flows the daemon alerted on, and flows of hosts (or uids) in an incident still
  open, are not kept; an attack in progress does not become next week's normal. An incident
  is raised when its window closes, after its first flows were sampled: those already kept
  (the incident's hosts' flows between its first and last sighting, and its uids) are taken
  out again before the day is written, reading a day already written back if need be. Flows
  an analyst marked benign (:mod:`netanomd.feedback`) are added back by ``netanomd retrain``
  (:func:`netanomd.commands.retrain.benign_batch`), in time order with the rest.

Days are written atomically (temporary file + rename) every ``flush_seconds`` and on
:meth:`Reservoir.flush`; a restarted daemon merges into the day files already there. The
reservoir also keeps the recent flows, all of them, for drift
(:class:`~netanomd.model.drift.DriftMonitor`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from netanomd.behaviour.incidents import FLOW_ALERTS, Incident, covered
from netanomd.decision import Alert
from netanomd.errors import InputError
from netanomd.flow import FLOW_SCHEMA, FlowBatch
from netanomd.fsutil import FILE_MODE
from netanomd.model.drift import DriftMonitor

log = logging.getLogger(__name__)

SUFFIX = ".parquet"
#: The day file's metadata key holding the flows each hour saw (JSON: hour -> count).
SEEN_KEY = b"netanomd.seen"
#: Rows the store may hold beyond twice the kept ones before it is compacted (:meth:`add_all`).
COMPACT_SLACK = 65_536


class Scored(NamedTuple):
    """One scored batch as the reservoir takes it: its scores, its alerts and the incidents
    open when it was scored (these exclude the batch's own flows)."""

    batch: FlowBatch
    scores: np.ndarray
    alerts: Sequence[Alert]
    open_incidents: Sequence[Incident]


class _Hour:
    """Algorithm R over one hour's flows: at most ``cap`` kept of the ``seen`` so far.

    ``slots[:held]`` are the kept rows' numbers in the reservoir's row store (every row stored
    gets the next number, so numbers follow arrival order); a replacement overwrites a slot's
    number, and the replaced row stays in the store until it is compacted. ``offset`` is where
    the hour's rows lie, in arrival order, in the compacted store (None once they changed)."""

    __slots__ = ("cap", "day", "held", "offset", "seen", "slots")

    def __init__(self, cap: int, day: dt.date, numbers: np.ndarray, seen: int = 0) -> None:
        self.cap = cap
        self.day = day
        #: more than ``cap`` only when a day written with a larger ``per_day`` is read back
        #: (replacements then go to the first ``cap`` slots)
        self.slots = np.empty(max(cap, len(numbers)), dtype=np.int64)
        self.held = len(numbers)
        self.slots[: self.held] = numbers
        self.seen = max(seen, self.held)
        self.offset: int | None = None

    def keep(self, rows: np.ndarray) -> None:
        """Keep only the rows of the hour's table (arrival order) where ``rows`` is true."""
        numbers = np.sort(self.slots[: self.held])[rows]
        self.held = len(numbers)
        self.slots[: self.held] = numbers
        self.offset = None


def _choose(hours: list[_Hour], group: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Algorithm R for a batch's rows, each in hour ``hours[group[i]]`` (rows in arrival order),
    all hours at once: each row's slot in its hour, -1 for the rows not taken. The first rows
    fill an hour's free slots, then the row seen ``t``-th replaces slot j < cap, j uniform in
    [0, t]; a slot taken twice in the batch keeps the later row. Counts the rows as seen."""
    counts = np.bincount(group, minlength=len(hours))
    order = np.argsort(group, kind="stable")
    rank = np.empty(len(group), dtype=np.int64)  # rows of the same hour before this one
    rank[order] = np.arange(len(group)) - np.repeat(np.cumsum(counts) - counts, counts)
    held = np.array([h.held for h in hours], dtype=np.int64)
    seen = np.array([h.seen for h in hours], dtype=np.int64)
    cap = np.array([h.cap for h in hours], dtype=np.int64)
    free = np.maximum(cap - held, 0)
    slot: np.ndarray = held[group] + rank
    draw = rank >= free[group]
    if draw.any():
        g = group[draw]
        j = rng.integers(0, seen[g] + rank[draw] + 1)
        slot[draw] = np.where(j < cap[g], j, -1)
    for h, n, f in zip(hours, counts.tolist(), free.tolist(), strict=True):
        h.seen += n
        h.held += min(n, f)
    taken = np.flatnonzero(slot >= 0)
    width = max(len(h.slots) for h in hours)
    key = group[taken] * width + slot[taken]
    later = len(key) - 1 - np.unique(key[::-1], return_index=True)[1]
    replaced = np.ones(len(taken), dtype=np.bool_)
    replaced[later] = False
    slot[taken[replaced]] = -1
    return slot


class Reservoir:
    """What the daemon keeps of the traffic it scored, for retraining and drift.

    The rows kept live in one row store (``_chunks``: scored batches stored whole, or just the
    rows they gave, numbered on from 0), shared by every hour in memory: a batch costs
    one vectorised Algorithm R over its rows and at most one copy of them, whatever the hours
    it spans. The store is compacted (the kept rows copied, hour by hour in arrival order) when
    a day is written, and when it holds more than twice the kept rows (plus
    :data:`COMPACT_SLACK`)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        per_day: int = 200_000,
        keep_days: int = 30,
        max_bytes: int = 1 << 30,
        flush_seconds: float = 300.0,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        drift: DriftMonitor | None = None,
    ) -> None:
        if per_day < 24:
            raise InputError(
                f"model.reservoir_per_day: {per_day} is too few; 0 (no reservoir) or at least 24 "
                "(one flow an hour)"
            )
        self.root = Path(root)
        self.per_day = per_day
        self.keep_days = keep_days
        self.max_bytes = max_bytes
        self.flush_seconds = flush_seconds
        self.clock = clock
        self.rng = np.random.default_rng(seed)
        self.recent = drift if drift is not None else DriftMonitor()
        self._days: dict[dt.date, dict[int, _Hour]] = {}
        #: The same hours by epoch hour (flow time // 3600).
        self._hours: dict[int, _Hour] = {}
        self._chunks: list[pa.Table] = []
        self._next = 0
        #: Incidents seen open since the last flush, by id: their flows are taken out of the
        #: sample again before it is written (:meth:`_purge`).
        self._incidents: dict[int, Incident] = {}
        self._dirty: set[dt.date] = set()
        self._last_flush = clock()
        self._lock = threading.Lock()
        self.kept = 0
        self.excluded = 0

    def add(
        self,
        batch: FlowBatch,
        scores: np.ndarray,
        alerts: Iterable[Alert],
        open_incidents: Iterable[Incident],
    ) -> None:
        """Sample ``batch`` (scored ``scores``; its ``alerts``) into its days, leaving out the
        alerted flows and those of ``open_incidents``; flush when it is time."""
        self.add_all([Scored(batch, scores, list(alerts), list(open_incidents))])

    def add_all(self, parts: Sequence[Scored]) -> None:
        """Sample several scored batches at once, in their order, as one :meth:`add` each would
        (each batch's alerts and open incidents leave out its own flows), for the cost of one."""
        parts = [p for p in parts if len(p.batch)]
        if not parts:
            return
        if len(parts) == 1:
            batch, scores = parts[0].batch, parts[0].scores
        else:
            batch = FlowBatch.concat([p.batch for p in parts])
            scores = np.concatenate([p.scores for p in parts])
        self.recent.observe(batch, scores)
        keep = self._clean(batch, parts)
        self.excluded += int((~keep).sum())
        rows = np.flatnonzero(keep)
        ts = np.nan_to_num(
            batch.numeric("ts", fill=np.nan)[rows], nan=time.time(), posinf=0, neginf=0
        )
        keys, group = np.unique((ts // 3600).astype(np.int64), return_inverse=True)
        with self._lock:
            hours = [self._hour(int(k)) for k in keys.tolist()]
            slot = _choose(hours, group, self.rng) if len(rows) else rows
            taken = np.flatnonzero(slot >= 0)
            at = rows[taken]
            if not len(at):
                numbers = at
            elif 2 * len(at) >= len(batch):  # most rows taken: the batch is stored as it is
                numbers = self._store(batch.table) + at
            else:  # one copy of the rows taken, whatever the hours they go to
                numbers = self._store(batch.table.take(pa.array(at))) + np.arange(len(at))
            owner = group[taken]
            order = np.argsort(owner, kind="stable")
            bounds = np.searchsorted(owner[order], np.arange(len(hours) + 1)).tolist()
            for i, h in enumerate(hours):
                mine = order[bounds[i] : bounds[i + 1]]
                if len(mine):
                    h.slots[slot[taken[mine]]] = numbers[mine]
                    h.offset = None
                self._dirty.add(h.day)
            self.kept += len(rows)
            for p in parts:
                self._incidents.update((inc.id, inc) for inc in _named(p.open_incidents))
            stored = self._next
            if stored > COMPACT_SLACK and stored > 2 * self._live() + COMPACT_SLACK:
                self._compact()
        if self.clock() - self._last_flush >= self.flush_seconds:
            try:
                self.flush()
            except OSError as exc:  # a full disk must not stop scoring
                log.error("reservoir: could not write %s: %s", self.root, exc)

    @staticmethod
    def _clean(batch: FlowBatch, parts: Sequence[Scored]) -> np.ndarray:
        """The flows of ``batch`` (``parts``' batches end to end) to sample: neither alerted
        nor one of an open incident's (:func:`~netanomd.behaviour.incidents.covered`: its
        host's flows of its kind in its span; the host's other traffic stays), each part by
        its own alerts and open incidents. An "anomalous flows" incident's flows are its flow
        alerts, left out as alerts. The incidents are matched in one pass for every part."""
        keep = np.ones(len(batch), dtype=bool)
        sizes = [len(p.batch) for p in parts]
        starts = np.cumsum([0, *sizes[:-1]]).astype(np.int64)
        for p, start, size in zip(parts, starts.tolist(), sizes, strict=True):
            uids = {a.flow.uid for a in p.alerts if a.flow.uid}
            if uids:
                member = pc.is_in(p.batch.column("uid"), pa.array(list(uids), pa.string()))
                keep[start : start + size] &= ~np.asarray(pc.fill_null(member, False))
        union: dict[int, Incident] = {}  # (by object: two streams' ids may meet)
        named = [_named(p.open_incidents) for p in parts]
        for incs in named:
            union.update((id(inc), inc) for inc in incs)
        if union:
            index = {k: i for i, k in enumerate(union)}
            applies = np.zeros((len(union), len(parts)), dtype=np.bool_)
            for k, incs in enumerate(named):
                applies[[index[id(inc)] for inc in incs], k] = True
            inside = covered(union.values(), batch, (starts, applies))
            keep &= ~(inside & batch.placed())
        return keep

    # -- the row store (caller holds the lock) ----------------------------------------------
    def _store(self, table: pa.Table) -> int:
        """Add ``table``'s rows to the store; the number of its first row."""
        first = self._next
        if table.num_rows:
            self._chunks.append(table)
            self._next += table.num_rows
        return first

    def _live(self) -> int:
        return sum(h.held for h in self._hours.values())

    def _compact(self) -> None:
        """Copy the kept rows into one table, hour by hour in arrival order (each hour's
        ``offset``), and let the rest go."""
        hours = list(self._hours.values())
        numbers = [np.sort(h.slots[: h.held]) for h in hours]
        if self._chunks:
            index = np.concatenate(numbers) if numbers else np.empty(0, np.int64)
            table = pa.concat_tables(self._chunks).take(pa.array(index)).combine_chunks()
        else:
            table = FLOW_SCHEMA.empty_table()
        self._chunks = [table] if table.num_rows else []
        self._next = table.num_rows
        offset = 0
        for h in hours:
            h.slots[: h.held] = offset + np.arange(h.held)
            h.offset = offset
            offset += h.held

    def _table(self, hour: _Hour) -> pa.Table:
        """An hour's kept rows in arrival order."""
        if hour.offset is None:
            self._compact()
        assert hour.offset is not None
        if not self._chunks:
            return FLOW_SCHEMA.empty_table()
        return self._chunks[0].slice(hour.offset, hour.held)

    def _hour(self, key: int) -> _Hour:
        """The hour ``key`` (epoch hours), its day read back from its file if need be."""
        hour = self._hours.get(key)
        if hour is None:
            day = dt.datetime.fromtimestamp(key * 3600, dt.UTC).date()
            hours = self._day(day)
            hour = hours.get(key % 24)
            if hour is None:
                hour = hours[key % 24] = self._hours[key] = _Hour(
                    self.per_day // 24, day, np.empty(0, np.int64)
                )
        return hour

    def _day(self, day: dt.date) -> dict[int, _Hour]:
        """A day's hours, merged with its file when a previous run wrote one."""
        hours = self._days.get(day)
        if hours is None:
            hours = {}
            path = self.path_of(day)
            if path.exists():
                old, seen = _read(path)
                ts = FlowBatch(old).numeric("ts", fill=0.0)
                hour = ((ts // 3600) % 24).astype(np.int64)
                first = self._store(old)
                for h in np.unique(hour).tolist():
                    numbers = first + np.flatnonzero(hour == h)
                    hours[h] = _Hour(self.per_day // 24, day, numbers, seen.get(h, 0))
            self._days[day] = hours
            start = int(_day_start(day)) // 3600
            self._hours.update((start + h, slot) for h, slot in hours.items())
        return hours

    def _purge(self) -> None:
        """Take the flows of the incidents seen open since the last purge out of the sample
        (caller holds the lock): an incident is raised when its window closes, after its first
        flows were sampled, and it grows while open."""
        incidents, self._incidents = list(self._incidents.values()), {}
        if not incidents:
            return
        stored = set(self._days) | {d for d, _ in day_files(self.root)}
        for day in sorted(stored):
            start = _day_start(day)
            near = [i for i in incidents if i.span_start < start + 86400 and i.span_end >= start]
            if not near:
                continue
            hours = self._day(day)
            outs = []  # every hour's table read before any changes (one compaction)
            for slot in hours.values():
                if not slot.held:
                    continue
                batch = FlowBatch(self._table(slot))
                outs.append((slot, covered(near, batch)))
            for slot, out in outs:
                if out.any():
                    slot.keep(~out)
                    self.excluded += int(out.sum())
                    self._dirty.add(day)

    def path_of(self, day: dt.date) -> Path:
        return self.root / f"{day.isoformat()}{SUFFIX}"

    def flush(self) -> None:
        """Write the changed days, forget all but the newest in memory, prune old days."""
        with self._lock:
            self._purge()
            dirty = {d: self._day_table(self._days[d]) for d in sorted(self._dirty)}
            self._dirty = set()
            newest = max(self._days, default=None)
            self._days = {d: h for d, h in self._days.items() if d == newest}
            self._hours = {k: h for k, h in self._hours.items() if h.day == newest}
            if self._next > self._live():  # the days forgotten leave the store
                self._compact()
            self._last_flush = self.clock()
        if not dirty:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        for day, table in dirty.items():
            path = self.path_of(day)
            tmp = path.with_name(f".{path.name}.tmp")
            pq.write_table(table, tmp, compression="zstd")
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
        self.prune()

    def _day_table(self, hours: dict[int, _Hour]) -> pa.Table:
        """A day's kept flows, hour by hour, with each hour's seen count as metadata."""
        parts = [self._table(hours[h]) for h in sorted(hours)]
        table = pa.concat_tables(parts) if parts else FLOW_SCHEMA.empty_table()
        seen = json.dumps({str(h): hours[h].seen for h in sorted(hours)}).encode()
        return table.replace_schema_metadata({**(table.schema.metadata or {}), SEEN_KEY: seen})

    def prune(self) -> None:
        """Delete the days beyond ``keep_days`` and, oldest first, beyond ``max_bytes``."""
        files = day_files(self.root)
        for _, path in files[: max(0, len(files) - self.keep_days)]:
            path.unlink(missing_ok=True)
        files = files[max(0, len(files) - self.keep_days) :]
        total = sum(p.stat().st_size for _, p in files)
        while len(files) > 1 and total > self.max_bytes:
            _, path = files.pop(0)
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
            log.info("reservoir: %s deleted (over %d bytes)", path.name, self.max_bytes)


def _named(incidents: Iterable[Incident]) -> list[Incident]:
    """The incidents of a named behaviour (scan, brute force...): their members are the flows
    that make the behaviour. An "anomalous flows" incident's members would be every flow of
    its host in its span (a busy host with a few alerts a day: all its traffic)."""
    return [i for i in incidents if i.behaviour != FLOW_ALERTS]


def _day_start(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def day_files(root: Path) -> list[tuple[dt.date, Path]]:
    """The reservoir's day files, oldest first (other files are ignored)."""
    if not root.is_dir():
        return []
    out = []
    for path in root.glob(f"*{SUFFIX}"):
        try:
            out.append((dt.date.fromisoformat(path.stem), path))
        except ValueError:
            continue
    return sorted(out)


def _read(path: Path) -> tuple[pa.Table, dict[int, int]]:
    """A day file's flows (file order) and the flows each of its hours saw."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path}: not a reservoir day file ({exc})") from exc
    raw = (table.schema.metadata or {}).get(SEEN_KEY)
    try:
        seen = {int(h): int(n) for h, n in json.loads(raw).items()} if raw else {}
    except (ValueError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: bad {SEEN_KEY.decode()} metadata ({exc})") from exc
    return table.replace_schema_metadata(None), seen


def read_day(path: Path) -> FlowBatch:
    """One day file as a batch (flow time order)."""
    batch = FlowBatch.from_table(_read(path)[0])
    order = np.argsort(batch.numeric("ts", fill=0.0), kind="stable")
    return batch.take(order)
