"""What scoring some files found (:class:`ScoreRun`), shared by ``score`` (one stream) and
``score --jobs`` (:mod:`netanomd.commands._jobs`), and reported by ``score`` and ``pcap``."""

from __future__ import annotations

from dataclasses import dataclass, field

from netanomd.behaviour.incidents import Incident
from netanomd.sources import ReadStats


@dataclass
class ScoreRun:
    """What scoring some files found."""

    stats: ReadStats
    alerts: int = 0
    seconds: float = 0.0
    #: Every incident of the stream, closed at its end.
    incidents: list[Incident] = field(default_factory=list)
    #: What allowlist rules kept out: (rule, "alerts" | "incidents") -> count.
    suppressed: dict[tuple[str, str], int] = field(default_factory=dict)
