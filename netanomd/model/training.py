"""Training: fit features, floors, detector, threshold and baselines into a :class:`Model`.

Owns :func:`train`. Features are computed over the whole stream in order (host features need
every flow); a uniform sample of at most :data:`DEFAULT_MAX_TRAIN_ROWS` feature rows is kept,
and the detector is fitted robustly on it (:mod:`netanomd.model.robust`: on the distinct
behaviours of unvetted traffic, one-sided columns floored).

Threshold rule (the default): the incident budget
(:func:`netanomd.decision.thresholds.by_incident_budget`): the lowest threshold within the top
5% of the training behaviours, never alerting on more than 0.5% of the training flows
(:data:`~netanomd.decision.thresholds.MAX_TRAINING_ALERT_SHARE`), whose training alerts,
grouped per originator, make at most the operating point's ``incidents_per_day``; an analyst's
load is incidents, not flows. With
``threshold_quantile`` the rule is that quantile of the training scores (of every flow for a
vetted baseline, of the distinct behaviours otherwise; :data:`DEFAULT_THRESHOLD_QUANTILE` is the
usual choice), with ``alerts_per_day`` a flow-alert budget. The threshold is stored in the
artifact and can be overridden per run (``--threshold``).

In the same pass over the training stream, the host behaviour limits and the incident budget are
learned (:mod:`netanomd.model.operating`) and stored in the model: the default operating point.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netanomd import __version__
from netanomd.decision import thresholds
from netanomd.decision.explain import Baselines
from netanomd.detectors import Detector
from netanomd.detectors.iforest import IsolationForestDetector
from netanomd.errors import ModelError
from netanomd.features import FeatureSpec, FlowFeatures, HostFeatures
from netanomd.flow import FlowBatch
from netanomd.model import drift
from netanomd.model.artifact import FORMAT, FORMAT_VERSION, ID_DIGITS, Model
from netanomd.model.operating import BehaviourLearner
from netanomd.model.robust import DEFAULT_TRIM, fit_robust

log = logging.getLogger(__name__)

#: The usual quantile for the quantile threshold rule (``train --threshold-quantile``).
DEFAULT_THRESHOLD_QUANTILE = 0.995
#: Training rows kept at most (uniform reservoir sample beyond that).
DEFAULT_MAX_TRAIN_ROWS = 2_000_000


@dataclass
class TrainingSummary:
    rows: int
    ts_min: float | None
    ts_max: float | None
    sources: dict[str, int]
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "ts_min": self.ts_min,
            "ts_max": self.ts_max,
            "sources": self.sources,
            "files": self.files,
        }


def _library_versions() -> dict[str, str]:
    versions = {"netanomd": __version__, "python": platform.python_version()}
    for mod in ("numpy", "sklearn", "numba", "pyarrow"):
        try:
            versions[mod] = str(importlib.import_module(mod).__version__)
        except ImportError:  # pragma: no cover - all are dependencies
            versions[mod] = "absent"
    return versions


class _Reservoir:
    """Uniform sample of at most ``cap`` feature rows across batches (Algorithm R, by block)."""

    def __init__(self, cap: int, seed: int) -> None:
        self.cap = cap
        self.seen = 0
        self.rng = np.random.default_rng(seed)
        self.parts: list[np.ndarray] = []

    def add(self, X: np.ndarray) -> None:
        n = len(X)
        self.seen += n
        self.parts.append(X)
        kept = sum(len(p) for p in self.parts)
        if kept > self.cap:
            merged = np.vstack(self.parts)
            # Each row seen so far survives with probability cap/seen.
            keep = self.rng.choice(len(merged), size=self.cap, replace=False)
            self.parts = [merged[np.sort(keep)]]

    def matrix(self, width: int) -> np.ndarray:
        if not self.parts:
            return np.empty((0, width), dtype=np.float32)
        return np.ascontiguousarray(np.vstack(self.parts))


def default_spec() -> FeatureSpec:
    """Flow features plus host behaviour over sliding windows (what new models use)."""
    return FeatureSpec([FlowFeatures(), HostFeatures()])


def train(
    batches: Iterable[FlowBatch],
    *,
    detector: Detector | None = None,
    spec: FeatureSpec | None = None,
    threshold_quantile: float | None = None,
    alerts_per_day: float | None = None,
    vetted: bool = False,
    trim: float = DEFAULT_TRIM,
    seed: int = 0,
    max_rows: int = DEFAULT_MAX_TRAIN_ROWS,
    files: Sequence[str] = (),
    behaviour: BehaviourLearner | None = None,
) -> Model:
    """Fit features and detector on ``batches`` and return a :class:`Model`.

    Features are computed over the whole stream in order (host features need every flow);
    at most ``max_rows`` feature rows are kept (uniform sample) for fitting, their one-sided
    columns floored at the training median (:mod:`netanomd.features.floors`). Unless the
    training traffic is ``vetted`` (a clean baseline someone checked, kept whole), the detector
    is fitted on its distinct behaviours, keyed by the per-flow block (see
    :mod:`netanomd.model.robust`); ``trim`` drops the most anomalous share and refits. Threshold:
    the incident budget by default (see the module docstring); the ``threshold_quantile``
    quantile of the training scores (over distinct behaviours when fitted on them, else over
    every flow) when given, or, with ``alerts_per_day``, the alert budget at the training data's
    flow rate (see :mod:`netanomd.decision.thresholds`). ``behaviour``
    learns the host-behaviour operating point from the same batches (flows in arrival order);
    ``None`` uses the defaults of :class:`~netanomd.model.operating.BehaviourLearner`.
    """
    spec = spec or default_spec()
    learner = behaviour if behaviour is not None else BehaviourLearner()
    reservoir = _Reservoir(max_rows, seed)
    svc_codes: dict[str, int] = {}
    host_codes: dict[str, int] = {}
    t0: float | None = None
    ts_parts: list[np.ndarray] = []
    sources: dict[str, int] = {}
    for b in batches:
        if not len(b):
            continue
        spec.fit(b)
        learner.update(b)
        # The service of each row rides along as one extra column (a code into svc_names),
        # so the sample keeps rows and services together for per-service baselines.
        codes = [
            svc_codes.setdefault(v or "", len(svc_codes)) for v in b.column("service").to_pylist()
        ]
        # So do the originator (a code) and the time (seconds since the first flow), for the
        # incident budget.
        hosts = [
            host_codes.setdefault(v or "", len(host_codes)) for v in b.column("orig_h").to_pylist()
        ]
        bts = b.numeric("ts", fill=np.nan)
        if t0 is None and np.isfinite(bts).any():
            t0 = float(np.nanmin(bts))
        extra = np.column_stack([codes, hosts, bts - (t0 or 0.0)])
        reservoir.add(np.hstack([spec.transform(b), extra.astype(np.float32)]))
        ts_parts.append(bts)
        src = b.column("source").fill_null("unknown").value_counts()
        for item in src.to_pylist():
            sources[str(item["values"])] = sources.get(str(item["values"]), 0) + int(item["counts"])
    XS = reservoir.matrix(len(spec.names) + 3)
    X = np.ascontiguousarray(XS[:, :-3])
    svc_names = np.array(list(svc_codes), dtype=object)
    services = svc_names[XS[:, -3].astype(np.int64)] if len(XS) else np.array([], object)
    row_hosts, row_ts = XS[:, -2].astype(np.int64), XS[:, -1].astype(np.float64)
    if len(X) < 10:
        raise ModelError(f"need at least 10 training flows, got {len(X)}")
    spec.reset()  # a scoring stream starts with fresh host state
    first = spec.blocks[0] if spec.blocks else None
    key_columns = len(first.names) if isinstance(first, FlowFeatures) else None
    if detector is None:
        detector = IsolationForestDetector(random_state=seed)
    fit = fit_robust(
        detector, X, trim=trim, distinct=not vetted, key_columns=key_columns, names=spec.names
    )
    floors = fit.floors
    X = floors.apply(X)  # the baselines explain what the detector saw
    scores = fit.scores
    ts = np.concatenate(ts_parts) if ts_parts else np.empty(0)
    rate = thresholds.flows_per_day(ts)
    if alerts_per_day is not None:
        if rate is None:
            raise ModelError("an alert budget needs training flows with timestamps")
        threshold, rule = thresholds.by_budget(scores, rate, alerts_per_day)
    elif threshold_quantile is not None:
        threshold, rule = thresholds.by_quantile(fit.behaviour_scores, threshold_quantile)
    else:
        threshold, rule = thresholds.by_incident_budget(
            scores,
            row_hosts,
            row_ts,
            fit.behaviour_scores,
            incidents_per_day=learner.incidents_per_day,
            quiet=learner.quiet,
        )
    rule["training"] = {"vetted": vetted} | fit.info
    finite = ts[np.isfinite(ts)]
    summary = TrainingSummary(
        rows=reservoir.seen,
        ts_min=float(finite.min()) if finite.size else None,
        ts_max=float(finite.max()) if finite.size else None,
        sources=sources,
        files=[str(f) for f in files],
    )
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": created.isoformat(),
        "libraries": _library_versions(),
        "threshold_rule": rule,
        "training": summary.to_dict() | {"rows_used": len(X), "flows_per_day": rate},
        "training_scores": {
            q: float(np.quantile(scores, float(q))) for q in ("0.5", "0.9", "0.99", "0.999")
        },
        "drift": drift.summarize(spec.names, X, scores).to_meta(),
    }
    operating = learner.finish()
    model = Model(
        spec, detector, threshold, Baselines.fit(spec.names, X, services), meta, floors, operating
    )
    digest = model.content_digest()[:ID_DIGITS]
    meta["model_id"] = f"{detector.kind}-{created:%Y%m%dT%H%M%SZ}-{digest}"
    log.info(
        "trained %s on %d flows (%d used), threshold %.4f (%s)",
        model.model_id,
        summary.rows,
        len(X),
        threshold,
        rule["method"],
    )
    return model
