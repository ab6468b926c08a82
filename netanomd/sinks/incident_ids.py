"""Stable incident ids: the same incident gets the same id in every sink, run and restart.

Owns :class:`IncidentIds`. The behaviour tracker numbers incidents with a process-local counter
(:attr:`Incident.id`), which restarts at 1 with the daemon: stored under that number, a
restarted daemon's incident 1 would overwrite yesterday's incident 1 in Elasticsearch. The id
kept by the sinks is instead a digest of what names the incident: the observer (the sensor),
the incident's key (role, host, behaviour group, detail) and when it was first seen. Replaying
the same traffic on the same sensor gives the same ids, so an upsert stays idempotent.

An incident's ``first_seen`` can move earlier while it lasts (a longer window closes later
with earlier flows in it), so the id is fixed the first time it is asked for and kept for as long
as the incident object lives (remembered by identity, not by the tracker's number, which two
trackers, one per scored file, both start at 1). Each sink of a run sees incidents in the same
order, so every sink derives the same ids.
"""

from __future__ import annotations

import hashlib
import socket
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from netanomd.behaviour.incidents import Incident

#: Families judged on one (host, peer, service) pair share one incident (as the tracker keys
#: them), whichever of them names it at the moment.
_PAIR_FAMILIES = frozenset({"brute force", "failed connections", "flood", "beaconing"})


def incident_key(incident: Incident) -> tuple[str, str, str, str]:
    """What names an incident while it lasts: (role, host, behaviour group, detail)."""
    family = incident.family
    pair = family in _PAIR_FAMILIES and incident.role != "service"
    return (incident.role, incident.host, "pair" if pair else family, incident.detail)


def digest(observer: str, key: tuple[str, ...], first_seen: float) -> str:
    """32 hex digits naming one incident of one observer."""
    text = "\x1f".join((observer, *key, f"{first_seen:.6f}"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class IncidentIds:
    """Stable ids for the incidents of one run (see the module docstring)."""

    def __init__(self, observer: str | None = None) -> None:
        self.observer = observer if observer is not None else socket.gethostname()
        # id(incident) -> (a weak reference to it, its stable id); an entry goes with its
        # incident.
        self._seen: dict[int, tuple[weakref.ref[Incident], str]] = {}

    def __call__(self, incident: Incident) -> str:
        key = id(incident)
        entry = self._seen.get(key)
        if entry is not None and entry[0]() is incident:
            return entry[1]
        sid = digest(self.observer, incident_key(incident), incident.first_seen)
        seen = self._seen

        def forget(ref: weakref.ref[Incident]) -> None:
            if seen.get(key, (None, ""))[0] is ref:
                del seen[key]

        seen[key] = (weakref.ref(incident, forget), sid)
        return sid

    def __len__(self) -> int:
        return len(self._seen)
