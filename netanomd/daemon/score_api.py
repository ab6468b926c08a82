"""The scoring API's request side: flows from JSON, checked field by field, scored and decided.

Owns what ``POST /v1/score`` answers (:func:`score_json`): one flow (JSON object) or many (JSON
array) with conn.log field names (``id.orig_h`` or ``orig_h``...), each field checked against
the flow schema with an error naming it (``[0].id.resp_p: expected an integer ...``). The flows
are scored through :meth:`netanomd.model.Model.stream` like every other flow, as a stream of
their own (fresh host state: ad-hoc flows never disturb the live stream's); each flow's answer
carries the score, the threshold in force, the verdict and, for an anomalous flow, the alert's
reasons, and the incidents (closed at the request's end) that hold it.
"""

from __future__ import annotations

import json
import math
import reprlib
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from netanomd.decision import above_threshold
from netanomd.flow import FIELD_NAMES, FLOW_SCHEMA, FlowBatch, FlowRecord
from netanomd.model import Model
from netanomd.sources import int_range
from netanomd.zeek.brokerjson import timestamp

if TYPE_CHECKING:
    from netanomd.feedback.suppress import Suppressor

#: Later than any plausible flow (year 5138): a larger ``ts`` is not in seconds.
MAX_EPOCH_SECONDS = 1e11


def _field(where: str, name: str, value: Any) -> Any:
    """``value`` checked against the flow schema's type for ``name`` (``ts`` may also be an
    ISO 8601 time, as Zeek writes with ``JSON::TS_ISO8601``)."""
    if value is None:
        return None
    t = FLOW_SCHEMA.field(name).type
    shown = reprlib.repr(value)
    if name == "ts" and isinstance(value, str):
        try:
            return timestamp(value)
        except ValueError:
            raise ValueError(
                f"{where}: expected epoch seconds or an ISO 8601 time, got {shown}"
            ) from None
    finite = (isinstance(value, float) and math.isfinite(value)) or (
        isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**64
    )
    if pa.types.is_floating(t):
        if not finite:
            raise ValueError(f"{where}: expected a number, got {shown}")
        if name == "ts" and value > MAX_EPOCH_SECONDS:
            raise ValueError(
                f"{where}: {shown} is not epoch seconds (milliseconds, as JSON::TS_MILLIS "
                "writes? send seconds or ISO 8601)"
            )
        return float(value)
    if pa.types.is_integer(t):
        low, top = int_range(name)
        if not finite or value != int(value) or not low <= value <= top:
            raise ValueError(f"{where}: expected an integer from {low} to {top}, got {shown}")
        return int(value)
    if pa.types.is_boolean(t):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {shown}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a string, got {shown}")
    return value


def records_from_json(payload: Any) -> list[FlowRecord]:
    """Flows given as conn.log-like JSON objects (``id.orig_h`` or ``orig_h``)."""
    items = payload if isinstance(payload, list) else [payload]
    out = []
    for i, obj in enumerate(items):
        if not isinstance(obj, dict):
            raise ValueError(f"[{i}]: expected a JSON object")
        values: dict[str, Any] = {}
        for key, value in obj.items():
            name = key.removeprefix("id.")
            if name in FIELD_NAMES:
                values[name] = _field(f"[{i}].{key}", name, value)
        if "orig_h" not in values or "resp_h" not in values:
            raise ValueError(f"[{i}]: id.orig_h and id.resp_h are required")
        values.setdefault("uid", f"api-{i}")
        values.setdefault("source", "api")
        values.setdefault("ts", time.time())
        try:
            fields: dict[str, Any] = {k: values.get(k) for k in FIELD_NAMES}
            out.append(FlowRecord(**fields))
        except TypeError as exc:
            raise ValueError(f"[{i}]: {exc}") from None
    return out


def parse_body(body: bytes) -> Any:
    """A request body: one JSON value (an object or an array of flows), or NDJSON, one flow per
    line, as Zeek writes its JSON logs (``head -3 conn.log | curl --data-binary @- ...``)."""
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        if not exc.msg.startswith("Extra data"):
            raise
    flows = []
    for n, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            flows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {n}: {exc.msg} (column {exc.colno})") from None
    return flows


def score_json(
    model: Model,
    threshold: float | None,
    payload: Any,
    *,
    max_rows: int | None = None,
    suppress: Suppressor | None = None,
) -> list[dict[str, Any]]:
    """Score the flows of a request on the daemon's path (:meth:`Model.stream`), as a stream of
    their own, and answer one verdict per flow, explained when anomalous, with the incidents
    (closed at the request's end) that hold the flow; more than ``max_rows`` flows are refused
    (ValueError) before any is read. With ``suppress``, an anomalous flow an allowlist rule
    covers is answered ``suppressed`` with the rule's name."""
    if max_rows is not None and isinstance(payload, list) and len(payload) > max_rows:
        raise ValueError(f"{len(payload)} flows in one request; at most {max_rows}")
    batch = FlowBatch.from_records(records_from_json(payload))
    stream = model.stream()
    stream.suppress = suppress
    scores, alerts, _ = stream.process(batch, threshold)
    quiet = dict(suppress.last) if suppress is not None else {}
    held: list[list[dict[str, Any]]] = [[] for _ in range(len(batch))]
    for inc in stream.finish():
        brief = {
            "id": inc.id,
            "behaviour": inc.behaviour,
            "title": inc.title,
            "severity": inc.severity,
        }
        for i in np.flatnonzero(inc.members(batch)).tolist():
            held[i].append(brief)
    t = model.threshold_for(threshold)
    reported = [i for i in above_threshold(scores, t).tolist() if i not in quiet]
    anomalous = dict(zip(reported, alerts, strict=True))
    out = []
    uids = batch.column("uid").to_pylist()
    for i, (uid, score) in enumerate(zip(uids, scores.tolist(), strict=True)):
        alert = anomalous.get(i)
        out.append(
            {
                "uid": uid,
                "score": score,
                "threshold": t,
                "verdict": "normal" if alert is None else "anomalous",
                "model": model.model_id,
                "reason": "" if alert is None else alert.reason,
                "explanation": [] if alert is None else [c.to_dict() for c in alert.contributions],
                "incidents": held[i],
            }
        )
        if i in quiet:  # anomalous, but an allowlist rule covers it
            out[-1] |= {"verdict": "suppressed", "suppressed_by": quiet[i]}
    return out
