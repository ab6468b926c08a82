"""The wire contract with the Zeek package, mirroring ``zeek-scripts/api.zeek`` exactly.

Declared once, as zeek-client declares its events: each event with its fully qualified name and
its arguments' names and Zeek types, in order. Both codecs (:mod:`netanomd.zeek.brokerjson` for
the WebSocket JSON API, :mod:`netanomd.zeek.brokerpy` for native Broker) build and parse every
event from these declarations, so no argument list is ordered by hand anywhere else.
``tests/test_zeek_scripts.py`` parses ``api.zeek`` and fails when the two files drift apart.

Every event carries the contract's version as its first argument; a peer whose major version
differs is refused with a message saying which side to upgrade (:func:`version_problem`).

This module uses nothing but the standard library: the btest stand-ins in
``zeek-tests/Scripts`` load it by path where netanomd itself is not installed.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass

#: Version of the contract (``NetAnom::version``); a different major version is refused.
VERSION = "2.1"

#: The Broker data type (``@data-type`` in the JSON API) of each Zeek type the contract uses.
BROKER_TYPES = {
    "string": "string",
    "double": "real",
    "count": "count",
    "addr": "address",
    "port": "port",
    "interval": "timespan",
}


@dataclass(frozen=True)
class EventSpec:
    name: str
    #: (argument name, Zeek type) in order; ``vector of T`` for per-flow columns.
    args: tuple[tuple[str, str], ...]

    @property
    def arg_names(self) -> tuple[str, ...]:
        return tuple(a for a, _ in self.args)

    def position(self, arg: str) -> int:
        """Where ``arg`` travels in the event's argument list."""
        return self.arg_names.index(arg)


def element_type(zeek_type: str) -> str:
    """``vector of addr`` -> ``addr``; a scalar type is its own element type."""
    return zeek_type.removeprefix("vector of ")


def is_vector(zeek_type: str) -> bool:
    return zeek_type.startswith("vector of ")


#: A batch of finished connections as parallel vectors (Zeek -> daemon).
FLOWS = EventSpec(
    "NetAnom::flows",
    (
        ("contract", "string"),
        ("uid", "vector of string"),
        ("ts", "vector of double"),
        ("orig_h", "vector of addr"),
        ("orig_p", "vector of port"),
        ("resp_h", "vector of addr"),
        ("resp_p", "vector of port"),
        ("proto", "vector of string"),
        ("service", "vector of string"),
        ("duration", "vector of interval"),
        ("orig_bytes", "vector of count"),
        ("resp_bytes", "vector of count"),
        ("conn_state", "vector of string"),
        ("missed_bytes", "vector of count"),
        ("history", "vector of string"),
        ("orig_pkts", "vector of count"),
        ("orig_ip_bytes", "vector of count"),
        ("resp_pkts", "vector of count"),
        ("resp_ip_bytes", "vector of count"),
        ("community_id", "vector of string"),
    ),
)

#: The daemon's verdict on one anomalous connection (daemon -> Zeek).
VERDICT = EventSpec(
    "NetAnom::verdict",
    (
        ("contract", "string"),
        ("uid", "string"),
        ("orig_h", "addr"),
        ("orig_p", "port"),
        ("resp_h", "addr"),
        ("resp_p", "port"),
        ("score", "double"),
        ("threshold", "double"),
        ("model", "string"),
        ("reason", "string"),
    ),
)

#: One incident the daemon opened or updated: grouped alerts or a host behaviour (daemon -> Zeek).
INCIDENT = EventSpec(
    "NetAnom::incident",
    (
        ("contract", "string"),
        ("id", "string"),
        ("role", "string"),
        ("host", "string"),
        ("peer", "string"),
        ("behaviour", "string"),
        ("severity", "count"),
        ("flow_count", "count"),
        ("first_seen", "double"),
        ("last_seen", "double"),
        ("title", "string"),
        ("evidence", "string"),
        ("uids", "vector of string"),
    ),
)

#: Zeek asks to be told once every flow published before it has been answered (Zeek -> daemon).
DRAIN = EventSpec("NetAnom::drain", (("contract", "string"), ("token", "count")))

#: The daemon has answered every flow it received before the drain with that token.
DRAINED = EventSpec("NetAnom::drained", (("contract", "string"), ("token", "count")))

EVENTS: tuple[EventSpec, ...] = (FLOWS, VERDICT, INCIDENT, DRAIN, DRAINED)
#: What the daemon sends (and the Zeek package handles).
OUTBOUND: tuple[EventSpec, ...] = (VERDICT, INCIDENT, DRAINED)
BY_NAME = {e.name: e for e in EVENTS}

#: Default topics (``NetAnom::flows_topic`` / ``NetAnom::verdicts_topic`` in config.zeek).
FLOWS_TOPIC = "netanom/flows"
VERDICTS_TOPIC = "netanom/verdicts"


def major(version: str) -> str:
    return version.split(".", 1)[0]


def version_problem(theirs: object, event: str) -> str | None:
    """Why an event with contract version ``theirs`` is refused, or None when it is accepted."""
    if not isinstance(theirs, str) or not major(theirs).isascii() or not major(theirs).isdigit():
        return (
            f"{event} carries no netanomd contract version (got {reprlib.repr(theirs)}): the Zeek "
            f"package predates contract {VERSION}; install the package from this netanomd release"
        )
    if major(theirs) != major(VERSION):
        older = "this daemon" if int(major(theirs)) > int(major(VERSION)) else "the Zeek package"
        return (
            f"{event} speaks netanomd contract {theirs}, this daemon speaks {VERSION}: refused "
            f"(major versions differ); upgrade {older} so both come from one netanomd release"
        )
    return None
