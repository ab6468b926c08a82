"""The wire contract with the Zeek package, mirroring ``zeek-scripts/api.zeek`` exactly.

Every event that crosses the wire, with its fully qualified name and its arguments' names and
Zeek types, in order. ``tests/test_zeek_scripts.py`` parses ``api.zeek`` and fails when the two
drift apart, so a change to the contract has to be made in both files.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Version of the contract (``NetAnom::version``); a different major version is refused.
VERSION = "1.0"


@dataclass(frozen=True)
class EventSpec:
    name: str
    #: (argument name, Zeek type) in order.
    args: tuple[tuple[str, str], ...]

    @property
    def arg_names(self) -> tuple[str, ...]:
        return tuple(a for a, _ in self.args)


#: A batch of finished connections as parallel vectors (Zeek -> daemon).
FLOWS = EventSpec(
    "NetAnom::flows",
    (
        ("uid", "vector of string"),
        ("ts", "vector of time"),
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

EVENTS: tuple[EventSpec, ...] = (FLOWS, VERDICT)

#: Default topics (``NetAnom::flows_topic`` / ``NetAnom::verdicts_topic`` in config.zeek).
FLOWS_TOPIC = "netanom/flows"
VERDICTS_TOPIC = "netanom/verdicts"
