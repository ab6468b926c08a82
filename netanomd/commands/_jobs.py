"""``netanomd score --jobs N``: score files in N processes (one per core), with the results of one.

Host behaviour must stay whole, so the work is split by originator, not by file: job ``j`` of
``N`` reads every input and keeps the flows whose originator address falls in its part
(:func:`part_of`: the address' last 32 bits modulo ``N``, as the Zeek package shards flows), in
their file order, through its own :meth:`Model.stream` as one part of the whole stream
(``Stream.process(batch, part=...)``): its clocks follow every flow, so windows turn and
incidents close when they would in one process. Each host's flows therefore meet the same
feature state, host windows and incidents as in one process, stamped with the same times.
The jobs hand back their alerts and incidents; the calling process writes them to the sinks
(SQLite, Elasticsearch), so there is one database, as with one process, and names each
incident by the first_seen it was first reported with, as one process's sinks do
(:func:`write_incidents`). Reading is repeated
by every job (it is the cheap part: scoring and host behaviour dominate), so the speed-up is
below N. What counts one responder or service across originators (an inbound scan, a flood
from many sources) sees each job's share of them only, as with sharded daemons.
"""

from __future__ import annotations

import ipaddress
import multiprocessing as mp
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from netanomd.behaviour.incidents import Incident
from netanomd.commands._scored import ScoreRun
from netanomd.decision import Alert
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.sinks import SinkSet
from netanomd.sources import ReadStats
from netanomd.sources.files import open_source


@lru_cache(maxsize=1 << 16)
def _low32(addr: str | None) -> int:
    if not addr:
        return 0
    try:
        return int.from_bytes(ipaddress.ip_address(addr).packed[-4:], "big")
    except ValueError:
        return 0  # not an address: the reader let it through; any fixed part keeps it whole


def part_of(orig: Sequence[str | None], jobs: int) -> np.ndarray:
    """The job (0 to ``jobs`` - 1) of each originator address."""
    return np.fromiter((_low32(a) % jobs for a in orig), np.int64, len(orig))


def _batches(
    inputs: Sequence[str], stats: ReadStats, job: int, jobs: int
) -> Iterator[tuple[FlowBatch, np.ndarray]]:
    """Every batch of the inputs, with the rows of job ``job`` in it (maybe none)."""
    for path in inputs:
        source = open_source(path)
        for batch in source.batches():
            yield batch, np.flatnonzero(part_of(batch.column("orig_h").to_pylist(), jobs) == job)
        stats.merge(source.stats)


@dataclass
class JobResult:
    """What one job scored: its flows' alerts and incidents (closed at the end)."""

    stats: ReadStats
    flows: int = 0
    alerts: list[Alert] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    #: Incident (tracker id) -> its first_seen when the stream first reported it: what one
    #: process's sinks name it by (netanomd.sinks.incident_ids), since it can move earlier.
    first_reported: dict[int, float] = field(default_factory=dict)


def score_part(
    model_path: str, inputs: Sequence[str], job: int, jobs: int, threshold: float | None
) -> JobResult:
    """Job ``job`` of ``jobs``: its originators' flows of every input, as one stream."""
    model = Model.load(model_path)
    res = JobResult(ReadStats())
    stream = model.stream()
    for batch, part in _batches(inputs, res.stats, job, jobs):
        _scores, alerts, changed = stream.process(batch, threshold, part=part)
        res.flows += len(part)
        res.alerts += alerts
        for inc in changed:
            res.first_reported.setdefault(inc.id, inc.first_seen)
    res.incidents = stream.finish()
    return res


def write_incidents(sinks: SinkSet, parts: Sequence[JobResult]) -> list[Incident]:
    """Write the jobs' incidents as one process's sinks end up with them: named (their stable
    id fixed) as first reported, then written as they finished."""
    incidents = [i for p in parts for i in p.incidents]
    final = [i.first_seen for i in incidents]
    for p in parts:
        for inc in p.incidents:
            inc.first_seen = p.first_reported.get(inc.id, inc.first_seen)
    sinks.write_incidents(incidents)
    for inc, first_seen in zip(incidents, final, strict=True):
        inc.first_seen = first_seen
    sinks.write_incidents(incidents)
    return incidents


@dataclass
class JobsRun(ScoreRun):
    """What scoring with several jobs found: a :class:`ScoreRun`, and how the work split."""

    #: Flows per job: how evenly the originators split.
    flows_per_job: list[int] = field(default_factory=list)


def score_jobs(
    model_path: str,
    inputs: Sequence[str],
    sinks: SinkSet,
    jobs: int,
    threshold: float | None = None,
) -> JobsRun:
    """Score ``inputs`` in ``jobs`` processes split by originator; write every alert and
    incident to ``sinks`` (alerts in time order) and close them."""
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, not {jobs}")
    start = time.perf_counter()
    try:
        ctx = mp.get_context("forkserver")
        with ctx.Pool(jobs) as pool:
            parts = pool.starmap(
                score_part, [(model_path, list(inputs), j, jobs, threshold) for j in range(jobs)]
            )
        alerts = sorted((a for p in parts for a in p.alerts), key=lambda a: (a.flow.ts, a.alert_id))
        sinks.write(alerts)
        incidents = write_incidents(sinks, parts)
    finally:
        sinks.close(timeout=60)
    stats = parts[0].stats  # every job read every file: one job's counts are the input's
    return JobsRun(
        stats,
        alerts=len(alerts),
        seconds=time.perf_counter() - start,
        incidents=incidents,
        flows_per_job=[p.flows for p in parts],
    )
