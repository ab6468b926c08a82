"""What a deployed sensor reports: metrics at the model's own operating point, no labels used.

Owns :func:`run_deployed`. For a labeled flow log (time order), under each protocol, a model is
trained exactly as ``netanomd train`` does with no flags (:func:`netanomd.model.train`: distinct
behaviours, the incident-budget threshold, the host-behaviour operating point), on the first
50% of the flows (``clean``: only their benign flows; ``contaminated``: all, labels unseen). The
rest of the capture is then fed through :meth:`Model.stream` in arrival order (by flow end, as
Zeek logs a flow when it ends; training sees its flows in that order too), as the daemon does,
and measured on the same test rows as :mod:`~netanomd.evaluation.protocols` (the last 35%; the
15% before them warm the windows up):

* flow level: precision, recall and F1 of the flow alerts at the model's own threshold;
* incident level: the same with "inside an incident" as the verdict (the share of malicious
  flows inside an incident is its recall; an "anomalous flows" incident, flow alerts grouped per
  host, holds its alerted flows, not every flow of the host in its span), the share of benign
  flows inside one, malicious hosts found (an originator of malicious flows with one of them
  inside an incident), time to first incident (from the first malicious test flow to the moment
  the stream first reported an incident holding a malicious flow) and false incidents (holding
  test flows, none malicious) per day of test traffic.

The label-tuned F1 of :mod:`~netanomd.evaluation.protocols` is kept beside these only as the
"oracle" column: a sensor never has labels to tune on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netanomd.behaviour.incidents import Incident
from netanomd.errors import ModelError
from netanomd.evaluation.data import LabeledData
from netanomd.evaluation.protocols import MIN_TRAIN, split
from netanomd.flow import FlowBatch
from netanomd.model import train

#: Flows per batch fed to the stream (the daemon's default micro-batch).
STEP = 1000


@dataclass
class Deployed:
    """One protocol's numbers at the deployed operating point."""

    protocol: str
    status: str = "ok"
    threshold: float | None = None
    train_rows: int = 0
    test_rows: int = 0
    test_benign: int = 0
    test_malicious: int = 0
    test_days: float = 0.0
    flow: dict[str, float | None] = field(default_factory=dict)
    incident: dict[str, float | None] = field(default_factory=dict)
    incidents: int = 0
    false_incidents: int = 0
    false_incidents_per_day: float | None = None
    malicious_hosts: int = 0
    hosts_found: int = 0
    time_to_first_incident: float | None = None
    #: The label-tuned F1 (validation labels choose the threshold): never what a sensor gets.
    oracle_f1: float | None = None
    #: The test window's incidents, most flows first (title, behaviour, severity, flows).
    top: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def prf(predicted: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    """Precision, recall, F1 of a verdict over labeled rows (y 1 malicious, 0 benign)."""
    tp = int((predicted & (y == 1)).sum())
    fp = int((predicted & (y == 0)).sum())
    fn = int((~predicted & (y == 1)).sum())
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    f1 = None
    if r is not None:
        pp = p or 0.0
        f1 = 2 * pp * r / (pp + r) if pp + r > 0 else 0.0
    benign = int((y == 0).sum())
    return {
        "precision": p,
        "recall": r,
        "f1": f1,
        "benign_share": fp / benign if benign else None,
    }


def run_deployed(data: LabeledData, protocol: str, seed: int = 0) -> Deployed:
    """Train as ``netanomd train`` does, stream the rest, measure (see the module docstring)."""
    res = Deployed(protocol)
    if data.batch is None or data.ts is None:
        res.status = "not a timed flow log: no stream to deploy on"
        return res
    batch = data.batch
    sp = split(data, seed)
    train_idx = np.sort(sp.train)
    if protocol == "clean":
        train_idx = train_idx[data.y[train_idx] == 0]
    res.train_rows = len(train_idx)
    if len(train_idx) < MIN_TRAIN:
        res.status = f"skipped: {len(train_idx)} training rows in the {protocol} window"
        return res
    training = batch.take(train_idx[_arrival(batch.take(train_idx))])
    try:
        model = train(
            (training.slice(o, STEP * 8) for o in range(0, len(training), STEP * 8)), seed=seed
        )
    except ModelError as exc:
        res.status = f"not trainable: {exc}"
        return res
    res.threshold = model.threshold
    rest = np.concatenate([np.sort(sp.valid), np.sort(sp.test)])
    tail = batch.take(rest)
    arrival = _arrival(tail)
    fed = tail.take(arrival)
    stream = model.stream()
    fed_scores = np.empty(len(fed))
    raised: dict[int, float] = {}
    for off in range(0, len(fed), STEP):
        part = fed.slice(off, STEP)
        s, _, changed = stream.process(part)
        fed_scores[off : off + len(part)] = s
        for inc in changed:
            raised.setdefault(inc.id, stream.clock)
    incidents = stream.finish()
    # Back to the rows' (start time) order, which the labels and the test split follow.
    scores = np.empty(len(fed))
    scores[arrival] = fed_scores
    n_test = len(sp.test)
    test = tail.slice(len(tail) - n_test)
    y = data.y[np.sort(sp.test)]
    keep = y >= 0
    res.test_rows, res.test_benign, res.test_malicious = (
        n_test,
        int((y == 0).sum()),
        int((y == 1).sum()),
    )
    ts = test.numeric("ts", fill=np.nan)
    res.test_days = float(np.nanmax(ts) - np.nanmin(ts)) / 86400.0 if n_test else 0.0
    alerted = scores[len(tail) - n_test :] >= model.threshold
    res.flow = prf(alerted[keep], y[keep])
    inside = np.zeros(n_test, dtype=np.bool_)
    mal = y == 1
    first_alarm = np.inf
    held = []
    for inc in incidents:
        m = inc.members(test)
        if inc.behaviour == "anomalous flows":  # flow alerts grouped: the alerted flows only
            m &= alerted
        if not m.any():
            continue
        held.append((inc, int(m.sum())))
        inside |= m
        if (m & mal).any():
            first_alarm = min(first_alarm, raised.get(inc.id, inc.last_seen))
        elif (m & (y == 0)).any():  # only Background/Unknown flows: not judged
            res.false_incidents += 1
    res.incidents = len(held)
    res.incident = prf(inside[keep], y[keep])
    if res.test_days > 0:
        res.false_incidents_per_day = res.false_incidents / res.test_days
    hosts = np.asarray(test.column("orig_h").fill_null("").to_numpy(zero_copy_only=False), str)
    mal_hosts = set(hosts[mal].tolist())
    res.malicious_hosts = len(mal_hosts)
    res.hosts_found = len(set(hosts[mal & inside].tolist()))
    if mal.any() and np.isfinite(first_alarm):
        res.time_to_first_incident = max(0.0, first_alarm - float(np.nanmin(ts[mal])))
    res.top = [_brief(inc, n) for inc, n in sorted(held, key=lambda x: -x[1])[:5]]
    return res


def _arrival(batch: FlowBatch) -> np.ndarray:
    """The order in which a sensor receives ``batch``'s flows: by flow end."""
    end = batch.numeric("ts", fill=np.nan) + np.maximum(batch.numeric("duration"), 0.0)
    return np.argsort(np.where(np.isfinite(end), end, np.inf), kind="stable")


def _brief(inc: Incident, flows: int) -> dict[str, Any]:
    return {
        "title": inc.title,
        "behaviour": inc.behaviour,
        "severity": inc.severity,
        "test_flows": flows,
    }
