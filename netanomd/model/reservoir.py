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
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from netanomd.behaviour.incidents import FLOW_ALERTS, Incident
from netanomd.decision import Alert
from netanomd.errors import InputError
from netanomd.flow import FLOW_SCHEMA, FlowBatch
from netanomd.fsutil import FILE_MODE
from netanomd.model.drift import DriftMonitor

log = logging.getLogger(__name__)

SUFFIX = ".parquet"
#: The day file's metadata key holding the flows each hour saw (JSON: hour -> count).
SEEN_KEY = b"netanomd.seen"
#: An hour's small parts (fewer rows than this) are merged as they come (:class:`_Hour`).
SEAL_ROWS = 1024
#: ... and at the latest when there are this many of them.
LOOSE_PARTS = 16


class _Hour:
    """Algorithm R over one hour's flows: at most ``cap`` kept of the ``seen`` so far.

    A batch costs what it brings, not what the hour holds: the rows it has taken
    (:meth:`choose`) are copied into a new part (:meth:`append`: one copy of the batch's
    rows taken, sliced by hour), and ``slots`` (the numbers of the kept rows, in arrival
    order: every row stored gets the next number, so the parts in order hold consecutive
    numbers from ``base``) drop the numbers they replace and end with theirs. Replaced rows
    stay in their parts until the hour's table is built (:meth:`table`, when read or
    written), which keeps just the slots' rows. Parts of fewer than :data:`SEAL_ROWS` rows
    are merged, so the hour holds few small tables: a batch copies its taken rows, at most
    twice, and fewer than ``SEAL_ROWS`` more."""

    def __init__(self, cap: int, kept: pa.Table | None = None, seen: int = 0) -> None:
        self.cap = cap
        kept = kept if kept is not None else FLOW_SCHEMA.empty_table()
        #: numbers of the kept rows; more than ``cap`` only when a day written with a larger
        #: ``per_day`` is read back (replacements then go to the first ``cap`` slots)
        self.slots = np.empty(max(cap, kept.num_rows), dtype=np.int64)
        self.parts: list[pa.Table] = []
        self.sealed = 0  # parts[:sealed] are large enough to stay as they are
        self.base = self.next = self.held = 0
        self._reset(kept)
        self.seen = max(seen, self.held)

    def _reset(self, table: pa.Table) -> None:
        """Hold exactly ``table``'s rows, one part, numbered on from the last number."""
        self.held = table.num_rows
        self.base = self.next
        self.slots[: self.held] = self.next + np.arange(self.held)
        self.next += self.held
        self.parts = [table] if self.held else []
        self.sealed = len(self.parts)

    def choose(self, at: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sample the rows ``at`` (a batch's positions, in arrival order): the positions taken,
        in arrival order, whose rows the caller hands to :meth:`append`."""
        n = len(at)
        if not n:
            return at
        k = self.held
        free = max(0, min(self.cap - k, n))
        # (slot, row) of each row taken, in arrival order: the first ``free`` fill the empty
        # slots, then Algorithm R: the row seen ``t``-th replaces slot j < cap, j in [0, t]
        slot, pos = np.arange(k, k + free), np.arange(free)
        rest = np.arange(free, n)
        if rest.size:
            j = rng.integers(0, self.seen + rest + 1)
            hit = j < self.cap
            slot, pos = np.concatenate([slot, j[hit]]), np.concatenate([pos, rest[hit]])
        self.seen += n
        self.held = k + free
        if not pos.size:
            return at[:0]
        # a slot taken twice in the batch keeps the later row; the earlier is never copied
        last = len(slot) - 1 - np.unique(slot[::-1], return_index=True)[1]
        last.sort()
        # the slots stay in arrival order: those replaced leave, the batch's rows go last
        stay = np.ones(k, dtype=np.bool_)
        stay[slot[last][slot[last] < k]] = False
        new = self.next + np.arange(len(last))
        self.slots[: self.held] = np.concatenate([self.slots[:k][stay], new])
        self.next += len(last)
        return at[pos[last]]

    def append(self, taken: pa.Table) -> None:
        """The rows :meth:`choose` took, as the last part; the small parts at the end (less
        than :data:`SEAL_ROWS` rows before these) are merged once they are
        :data:`LOOSE_PARTS` or together large enough to keep."""
        self.parts.append(taken)
        loose = self.parts[self.sealed :]
        rows = sum(t.num_rows for t in loose)
        if len(loose) >= LOOSE_PARTS or (rows >= SEAL_ROWS and len(loose) > 1):
            merged = pa.concat_tables(loose).combine_chunks()
            self.parts[self.sealed :] = [merged]
        if rows >= SEAL_ROWS:
            self.sealed = len(self.parts)

    def table(self) -> pa.Table:
        """The kept rows in arrival order (built once; the hour then holds just them)."""
        if len(self.parts) != 1 or self.next - self.base != self.held:
            whole = pa.concat_tables(self.parts) if self.parts else FLOW_SCHEMA.empty_table()
            self._reset(whole.take(pa.array(self.slots[: self.held] - self.base)))
        return self.parts[0] if self.parts else FLOW_SCHEMA.empty_table()

    def keep(self, rows: np.ndarray) -> None:
        """Keep only the rows of :meth:`table` where ``rows`` is true (its slots freed)."""
        self._reset(self.table().filter(pa.array(rows)))


class Reservoir:
    """What the daemon keeps of the traffic it scored, for retraining and drift."""

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
        if not len(batch):
            return
        self.recent.observe(batch, scores)
        open_incidents = list(open_incidents)
        keep = self._clean(batch, alerts, open_incidents)
        self.excluded += int((~keep).sum())
        rows = np.flatnonzero(keep)
        ts = np.nan_to_num(
            batch.numeric("ts", fill=np.nan)[rows], nan=time.time(), posinf=0, neginf=0
        )
        hour = (ts // 3600).astype(np.int64)
        with self._lock:
            chosen = []
            for h in np.unique(hour):
                day = dt.datetime.fromtimestamp(int(h) * 3600, dt.UTC).date()
                hours = self._day(day)
                slot = hours.get(int(h) % 24)
                if slot is None:
                    slot = hours[int(h) % 24] = _Hour(self.per_day // 24)
                chosen.append((slot, slot.choose(rows[hour == h], self.rng)))
                self._dirty.add(day)
            chosen = [(slot, at) for slot, at in chosen if len(at)]
            if chosen:  # one copy of the rows taken, whatever the hours they go to
                taken = batch.table.take(pa.array(np.concatenate([at for _, at in chosen])))
                start = 0
                for slot, at in chosen:
                    slot.append(taken.slice(start, len(at)))
                    start += len(at)
            self.kept += len(rows)
            self._incidents.update((inc.id, inc) for inc in _named(open_incidents))
        if self.clock() - self._last_flush >= self.flush_seconds:
            try:
                self.flush()
            except OSError as exc:  # a full disk must not stop scoring
                log.error("reservoir: could not write %s: %s", self.root, exc)

    @staticmethod
    def _clean(
        batch: FlowBatch, alerts: Iterable[Alert], open_incidents: Iterable[Incident]
    ) -> np.ndarray:
        """The flows to sample: neither alerted nor one of an open incident's
        (:meth:`~netanomd.behaviour.incidents.Incident.members`: its host's flows of its kind
        in its span; the host's other traffic stays). An "anomalous flows" incident's flows
        are its flow alerts, left out as alerts."""
        keep = np.ones(len(batch), dtype=bool)
        uids = {a.flow.uid for a in alerts if a.flow.uid}
        if uids:
            member = pc.is_in(batch.column("uid"), pa.array(list(uids), pa.string()))
            keep &= ~np.asarray(pc.fill_null(member, False))
        placed = batch.placed()
        for inc in _named(open_incidents):
            keep &= ~(inc.members(batch) & placed)
        return keep

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
                for h in np.unique(hour):
                    part = old.filter(pa.array(hour == h))
                    hours[int(h)] = _Hour(self.per_day // 24, part, seen.get(int(h), 0))
            self._days[day] = hours
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
            for slot in self._day(day).values():
                if not slot.held:
                    continue
                batch = FlowBatch(slot.table())
                out = np.zeros(len(batch), dtype=np.bool_)
                for inc in near:
                    out |= inc.members(batch)
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
            dirty = {d: _day_table(self._days[d]) for d in sorted(self._dirty)}
            self._dirty = set()
            newest = max(self._days, default=None)
            self._days = {d: h for d, h in self._days.items() if d == newest}
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


def _day_table(hours: dict[int, _Hour]) -> pa.Table:
    """A day's kept flows, hour by hour, with each hour's seen count as metadata."""
    table = pa.concat_tables([hours[h].table() for h in sorted(hours)])
    seen = json.dumps({str(h): hours[h].seen for h in sorted(hours)}).encode()
    return table.replace_schema_metadata({**(table.schema.metadata or {}), SEEN_KEY: seen})


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
