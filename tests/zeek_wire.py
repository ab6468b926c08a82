"""Flow batches as the Zeek package puts them on the wire, for tests and benchmarks.

:func:`flow_values` is what ``main.zeek`` does with a conn.log record (unset counts travel as 0,
unset strings as ""); the events themselves are built by netanomd's codecs from the contract's
declaration, so nothing here orders arguments.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from netanomd.flow import FlowBatch
from netanomd.zeek import api, brokerjson, brokerpy

_TEXT = {"uid", "proto", "service", "conn_state", "history", "community_id"}


def flow_values(batch: FlowBatch) -> dict[str, list[Any]]:
    """The ``NetAnom::flows`` columns of a batch, as the Zeek package fills them."""
    rows = batch.table.to_pylist()
    out: dict[str, list[Any]] = {}
    for name, typ in api.FLOWS.args:
        if not api.is_vector(typ):
            continue
        kind = api.element_type(typ)
        if kind == "port":
            out[name] = [(r[name] or 0, r["proto"]) for r in rows]
        elif name in _TEXT:
            out[name] = [r[name] or "" for r in rows]
        elif kind in ("count", "interval"):
            out[name] = [r[name] or 0 for r in rows]
        else:
            out[name] = [r[name] for r in rows]
    return out


def flows_message(batch: FlowBatch, topic: str = api.FLOWS_TOPIC + "/0") -> dict[str, Any]:
    """``NetAnom::flows`` as a Broker JSON data message."""
    return brokerjson.encode_event(api.FLOWS, flow_values(batch), topic)


def flows_event(broker: ModuleType, batch: FlowBatch) -> Any:
    """``NetAnom::flows`` as a ``broker.zeek.Event``."""
    return brokerpy.encode_event(broker, api.FLOWS, flow_values(batch))
