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


class _Hour:
    """Algorithm R over one hour's flows: ``kept`` rows of at most ``cap``, ``seen`` so far."""

    def __init__(self, cap: int, kept: pa.Table | None = None, seen: int = 0) -> None:
        self.cap = cap
        self.kept = kept if kept is not None else FLOW_SCHEMA.empty_table()
        self.seen = max(seen, kept.num_rows if kept is not None else 0)

    def add(self, rows: pa.Table, rng: np.random.Generator) -> None:
        n = rows.num_rows
        if not n:
            return
        k = self.kept.num_rows
        free = max(0, min(self.cap - k, n))
        # slot of each kept row in [kept..., rows...]; Algorithm R for the rest
        slots = np.arange(k + free)
        pos = np.arange(free, n)
        if pos.size:
            j = rng.integers(0, self.seen + pos + 1)
            take = j < self.cap
            slots[j[take]] = k + pos[take]
        self.seen += n
        self.kept = pa.concat_tables([self.kept, rows]).take(pa.array(np.sort(slots)))


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
        rows = batch.table.filter(pa.array(keep))
        ts = np.nan_to_num(
            FlowBatch(rows).numeric("ts", fill=np.nan), nan=time.time(), posinf=0, neginf=0
        )
        hour = (ts // 3600).astype(np.int64)
        with self._lock:
            for h in np.unique(hour):
                day = dt.datetime.fromtimestamp(int(h) * 3600, dt.UTC).date()
                hours = self._day(day)
                slot = hours.setdefault(int(h) % 24, _Hour(self.per_day // 24))
                slot.add(rows.filter(pa.array(hour == h)), self.rng)
                self._dirty.add(day)
            self.kept += rows.num_rows
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
                if not slot.kept.num_rows:
                    continue
                batch = FlowBatch(slot.kept)
                out = np.zeros(len(batch), dtype=np.bool_)
                for inc in near:
                    out |= inc.members(batch)
                if out.any():
                    slot.kept = slot.kept.filter(pa.array(~out))
                    self.excluded += int(out.sum())
                    self._dirty.add(day)

    def path_of(self, day: dt.date) -> Path:
        return self.root / f"{day.isoformat()}{SUFFIX}"

    def flush(self) -> None:
        """Write the changed days, forget all but the newest in memory, prune old days."""
        with self._lock:
            self._purge()
            dirty = {d: self._days[d] for d in self._dirty}
            self._dirty = set()
            newest = max(self._days, default=None)
            self._days = {d: h for d, h in self._days.items() if d == newest}
            self._last_flush = self.clock()
        if not dirty:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        for day, hours in dirty.items():
            table = pa.concat_tables([hours[h].kept for h in sorted(hours)])
            seen = json.dumps({str(h): hours[h].seen for h in sorted(hours)}).encode()
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), SEEN_KEY: seen})
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
