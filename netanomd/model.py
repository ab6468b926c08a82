"""The model artifact: features, detector, threshold and baselines, trained and stored as one.

A :class:`Model` is what the daemon and the CLI score with. It is written as a single ``.npz``
file (a zip of plain numpy arrays, loaded with ``allow_pickle=False``, so loading never runs
code from the file) holding:

* ``meta.json`` (stored as a ``uint8`` array): format and version, ``model_id``, created-at,
  library versions, the :class:`~netanomd.features.FeatureSpec` state and feature names, the
  detector kind and parameters, the threshold and the rule that chose it, a training summary
  (rows, time span, sources, files) and the explanation baselines' description;
* ``detector/<name>`` arrays: the detector's state (see :meth:`Detector.to_state`);
* ``baseline/<name>`` arrays: per-feature training quantiles used to explain alerts;
* ``floors/values``: the training medians that one-sided columns are raised to before the
  detector and the explanations see them (:mod:`netanomd.floors`; format version 2, absent
  from version 1 artifacts, which score unfloored);
* ``digest``: SHA-256 over everything above; a file whose digest does not match is refused.

Threshold rule (the default): the :data:`DEFAULT_THRESHOLD_QUANTILE` quantile of the
training scores — of every flow for a vetted baseline (about 1 flow in 200 like it reaches
it), of the distinct behaviours otherwise (see :mod:`netanomd.robust`). It is
stored in the artifact and can be overridden per run (``--threshold``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import io
import json
import logging
import os
import platform
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from netanomd import __version__, thresholds
from netanomd.decision import Alert, Contribution, make_alerts
from netanomd.detectors import Detector
from netanomd.errors import ModelError
from netanomd.features import LOG1P_COLUMNS, FeatureSpec, FlowFeatures, is_binary
from netanomd.floors import Floors
from netanomd.flow import FlowBatch
from netanomd.robust import DEFAULT_TRIM, fit_robust

log = logging.getLogger(__name__)

FORMAT = "netanomd-model"
#: Version 2 added one-sided floors; version 1 artifacts (no floors) still load and score
#: unfloored, while a netanomd that reads only version 1 refuses version 2 instead of
#: silently ignoring its floors.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
#: Default threshold rule: this quantile of the training scores.
DEFAULT_THRESHOLD_QUANTILE = 0.995
#: How many reasons an alert carries.
MAX_CONTRIBUTIONS = 3
#: Training rows kept at most (uniform reservoir sample beyond that).
DEFAULT_MAX_TRAIN_ROWS = 2_000_000

#: Human descriptions of feature columns for explanations; others use the column name.
DESCRIPTIONS: dict[str, str] = {
    "log_duration": "duration (s)",
    "log_orig_bytes": "bytes sent by originator",
    "log_resp_bytes": "bytes sent by responder",
    "log_orig_pkts": "packets from originator",
    "log_resp_pkts": "packets from responder",
    "log_orig_ip_bytes": "IP bytes from originator",
    "log_resp_ip_bytes": "IP bytes from responder",
    "bytes_ratio": "log ratio of bytes out to in",
    "orig_bytes_per_pkt": "originator bytes per packet",
    "resp_bytes_per_pkt": "responder bytes per packet",
    "log_pkt_rate": "packets per second",
    "missed": "missed bytes",
    "no_service": "no recognised application protocol",
    "resp_port_wellknown": "well-known responder port",
    "resp_port_registered": "registered responder port",
    "resp_port_dynamic": "dynamic responder port",
    "orig_port_wellknown": "well-known originator port",
    "host_log_conns": "flows from this host in the window",
    "host_log_rate": "flows per minute from this host",
    "host_log_dsts": "distinct destinations of this host",
    "host_log_ports": "distinct destination ports of this host",
    "host_fail_ratio": "share of this host's flows that failed",
    "host_out_in": "log ratio of this host's bytes out to in",
    "host_periodicity": "regularity of this host's connections to this destination",
}


def describe(feature: str) -> str:
    if feature in DESCRIPTIONS:
        return DESCRIPTIONS[feature]
    if feature.startswith("state_"):
        return f"conn_state {feature[6:]}"
    if feature.startswith("proto_"):
        return f"protocol {feature[6:]}"
    if feature.startswith("hist_o"):
        return f"originator '{feature[6:]}' in history"
    if feature.startswith("hist_r"):
        return f"responder '{feature[6:]}' in history"
    if feature == "hist_flip":
        return "direction flipped by Zeek"
    return feature.replace("_", " ")


def detector_class(kind: str) -> Any:
    """The detector class registered for ``kind``."""
    try:
        registry = importlib.import_module("netanomd.detectors.registry")
        types: dict[str, Any] = registry.DETECTOR_TYPES
    except ImportError:
        from netanomd.detectors.iforest import IsolationForestDetector

        types = {"iforest": IsolationForestDetector}
    if kind not in types:
        raise ModelError(f"unknown detector kind {kind!r} (known: {', '.join(sorted(types))})")
    return types[kind]


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


class Baselines:
    """Per-feature training statistics that explanations compare against: over all training
    flows, and per application service (``http``, ``dns``...) for the services common enough
    in training, so a flow is compared with what is normal *for its service*."""

    QUANTILES = (0.01, 0.5, 0.99)
    #: Services with at least this many training flows get their own baseline (at most 16).
    MIN_SERVICE_ROWS = 200
    MAX_SERVICES = 16

    def __init__(
        self,
        names: Sequence[str],
        lo: np.ndarray,
        med: np.ndarray,
        hi: np.ndarray,
        share: np.ndarray,
        services: Sequence[str] = (),
        svc_q: np.ndarray | None = None,
    ) -> None:
        self.names = tuple(names)
        self.lo, self.med, self.hi, self.share = lo, med, hi, share
        self.binary = np.array([is_binary(n) for n in names])
        self.services = list(services)
        #: shape (services, 3 quantiles, features)
        self.svc_q = svc_q if svc_q is not None else np.zeros((0, 3, len(names)))

    @classmethod
    def fit(
        cls, names: Sequence[str], X: np.ndarray, services: np.ndarray | None = None
    ) -> Baselines:
        if len(X) == 0:
            z = np.zeros(len(names))
            return cls(names, z, z, z, z)
        q = np.quantile(X, cls.QUANTILES, axis=0)
        svc_names: list[str] = []
        svc_q = []
        if services is not None:
            values, counts = np.unique(services.astype(str), return_counts=True)
            order = np.argsort(-counts)
            for i in order[: cls.MAX_SERVICES]:
                if counts[i] < cls.MIN_SERVICE_ROWS or values[i] in ("", "None"):
                    continue
                rows = X[services.astype(str) == values[i]]
                svc_names.append(str(values[i]))
                svc_q.append(np.quantile(rows, cls.QUANTILES, axis=0))
        return cls(
            names,
            q[0],
            q[1],
            q[2],
            X.mean(axis=0, dtype=np.float64),
            svc_names,
            np.asarray(svc_q) if svc_q else None,
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "lo": self.lo,
            "med": self.med,
            "hi": self.hi,
            "share": self.share,
            "svc_q": self.svc_q,
        }

    def _bounds(
        self, X: np.ndarray, services: Sequence[str | None] | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """Per-row (lo, med, hi) and a label of which baseline each row uses."""
        n = len(X)
        lo = np.broadcast_to(self.lo, X.shape).copy()
        med = np.broadcast_to(self.med, X.shape).copy()
        hi = np.broadcast_to(self.hi, X.shape).copy()
        which = [""] * n
        if services is not None and self.services:
            index = {s: i for i, s in enumerate(self.services)}
            for r, svc in enumerate(services):
                k = index.get(svc) if svc else None
                if k is not None:
                    lo[r], med[r], hi[r] = self.svc_q[k]
                    which[r] = f" for {svc}"
        return lo, med, hi, which

    def explain(
        self, X: np.ndarray, services: Sequence[str | None] | None = None
    ) -> list[tuple[Contribution, ...]]:
        """For each row, the features furthest outside the training distribution (of the
        row's service when that service has its own baseline)."""
        lo, med, hi, which = self._bounds(X, services)
        above = np.maximum(X - hi, 0.0) / (np.maximum(hi - med, 0.0) + 0.25)
        below = np.maximum(lo - X, 0.0) / (np.maximum(med - lo, 0.0) + 0.25)
        # A category present in the flow but rare in training: -log10 of its training share.
        rare = np.where((X > 0.5) & self.binary, -np.log10(np.clip(self.share, 1e-4, 1.0)), 0.0)
        rare = np.where(rare >= 1.0, rare, 0.0)  # only categories seen in < 10% of training
        weights = np.where(self.binary, rare, np.maximum(above, below))
        out: list[tuple[Contribution, ...]] = []
        top = np.argsort(-weights, axis=1)[:, :MAX_CONTRIBUTIONS]
        for i in range(X.shape[0]):
            contribs = []
            for j in top[i]:
                w = float(weights[i, j])
                if w <= 0.0:
                    break
                name = self.names[j]
                if self.binary[j]:
                    share = float(self.share[j])
                    contribs.append(
                        Contribution(name, describe(name), 1.0, share, "share", "rare", w)
                    )
                    continue
                is_above = X[i, j] > hi[i, j]
                base = hi[i, j] if is_above else lo[i, j]
                obs = float(X[i, j])
                if name in LOG1P_COLUMNS:
                    obs, base = float(np.expm1(obs)), float(np.expm1(base))
                contribs.append(
                    Contribution(
                        name,
                        describe(name),
                        obs,
                        float(base),
                        ("p99" if is_above else "p1") + which[i],
                        "above" if is_above else "below",
                        w,
                    )
                )
            out.append(tuple(contribs))
        return out


class Model:
    """A trained, loadable scorer: features + floors + detector + threshold + baselines."""

    def __init__(
        self,
        spec: FeatureSpec,
        detector: Detector,
        threshold: float,
        baselines: Baselines,
        meta: dict[str, Any],
        floors: Floors | None = None,
    ) -> None:
        self.spec = spec
        self.detector = detector
        self.threshold = float(threshold)
        self.baselines = baselines
        self.meta = meta
        self.floors = floors or Floors(spec.names, [], np.empty(0))

    @property
    def model_id(self) -> str:
        return str(self.meta["model_id"])

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.spec.names

    @property
    def created_at(self) -> str:
        return str(self.meta["created_at"])

    # -- scoring ------------------------------------------------------------------------
    # Scoring is a stream: stateful feature blocks (host behaviour) remember earlier batches,
    # so feed flows in arrival order and each flow once; reset() starts a new stream.
    def reset(self) -> None:
        """Forget stream state (host windows), as for a new capture or after a restart."""
        self.spec.reset()

    def features(self, batch: FlowBatch) -> np.ndarray:
        """The matrix the detector scores: the spec's features, one-sided columns floored."""
        return self.floors.apply(self.spec.transform(batch))

    def score(self, batch: FlowBatch) -> np.ndarray:
        """Anomaly score per flow; higher means more anomalous."""
        if len(batch) == 0:
            return np.empty(0, dtype=np.float64)
        return self.detector.score(self.features(batch))

    def explain(self, batch: FlowBatch) -> list[tuple[Contribution, ...]]:
        return self.baselines.explain(self.features(batch), batch.column("service").to_pylist())

    def alerts(
        self,
        batch: FlowBatch,
        scores: np.ndarray,
        threshold: float | None = None,
        X: np.ndarray | None = None,
    ) -> list[Alert]:
        """Alerts for the flows of ``batch`` whose score reaches the threshold, explained.

        Pass the feature matrix ``X`` that produced ``scores`` when you have it (stateful
        feature blocks must not see a batch twice); :meth:`run` does this for you.
        """
        if X is None:
            X = self.features(batch)
        feats = X
        return make_alerts(
            batch,
            scores,
            self.threshold if threshold is None else threshold,
            self.model_id,
            explain=lambda idx: self.baselines.explain(
                feats[idx], batch.column("service").take(pa.array(idx)).to_pylist()
            ),
        )

    def run(
        self, batch: FlowBatch, threshold: float | None = None
    ) -> tuple[np.ndarray, list[Alert]]:
        """Score a batch and build its alerts, computing features once."""
        if len(batch) == 0:
            return np.empty(0, dtype=np.float64), []
        X = self.features(batch)
        scores = self.detector.score(X)
        return scores, self.alerts(batch, scores, threshold, X)

    # -- persistence --------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the artifact atomically (temp file + rename)."""
        params, det_arrays = self.detector.to_state()
        arrays: dict[str, np.ndarray] = {f"detector/{k}": v for k, v in det_arrays.items()}
        arrays.update({f"baseline/{k}": v for k, v in self.baselines.arrays().items()})
        floors_meta, arrays["floors/values"] = self.floors.to_state()
        meta = dict(self.meta)
        meta["floors"] = floors_meta
        meta["detector"] = {"kind": self.detector.kind, "params": params}
        meta["threshold"] = self.threshold
        meta["features"] = self.spec.to_state()
        meta["baseline_services"] = self.baselines.services
        meta_bytes = json.dumps(meta, sort_keys=True).encode()
        arrays["meta.json"] = np.frombuffer(meta_bytes, dtype=np.uint8)
        arrays["digest"] = np.frombuffer(_digest(arrays).encode(), dtype=np.uint8)
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Model:
        """Load and check an artifact; raise :class:`ModelError` saying what is wrong."""
        where = str(path)
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except FileNotFoundError as exc:
            raise ModelError(f"{where}: no such model file") from exc
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise ModelError(f"{where}: not a netanomd model artifact ({exc})") from exc
        for key in ("meta.json", "digest"):
            if key not in arrays:
                raise ModelError(f"{where}: not a netanomd model artifact (no {key})")
        stored = bytes(arrays.pop("digest")).decode(errors="replace")
        if stored != _digest(arrays):
            raise ModelError(f"{where}: model file is corrupt or was modified (digest mismatch)")
        try:
            meta = json.loads(bytes(arrays["meta.json"]))
        except ValueError as exc:
            raise ModelError(f"{where}: meta.json is not valid JSON ({exc})") from exc
        if meta.get("format") != FORMAT:
            raise ModelError(f"{where}: format {meta.get('format')!r} is not {FORMAT!r}")
        version = meta.get("format_version")
        if version not in READABLE_VERSIONS:
            raise ModelError(
                f"{where}: artifact format version {version!r}, this netanomd reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}"
            )
        try:
            spec = FeatureSpec.from_state(meta["features"])
            det_meta = meta["detector"]
            det_arrays = {
                k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("detector/")
            }
            detector = detector_class(det_meta["kind"]).from_state(det_meta["params"], det_arrays)
            b = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("baseline/")}
            services = meta.get("baseline_services", [])
            svc_q = b.get("svc_q")
            if svc_q is not None and svc_q.shape != (len(services), 3, len(spec.names)):
                raise ModelError("per-service baselines do not match their service list")
            baselines = Baselines(
                spec.names, b["lo"], b["med"], b["hi"], b["share"], services, svc_q
            )
            threshold = float(meta["threshold"])
            floors_meta = meta["floors"] if version >= 2 else {"columns": []}
            floors = Floors(
                spec.names,
                floors_meta["columns"],
                arrays.get("floors/values", np.empty(0)),
                float(floors_meta.get("quantile", 0.5)),
            )
        except ModelError as exc:
            raise ModelError(f"{where}: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{where}: incomplete model artifact (missing {exc})") from exc
        n = len(spec.names)
        if any(len(a) != n for a in (baselines.lo, baselines.med, baselines.hi, baselines.share)):
            raise ModelError(f"{where}: baselines do not match the {n} feature columns")
        if not np.isfinite(threshold):
            raise ModelError(f"{where}: threshold {threshold!r} is not a finite number")
        return cls(spec, detector, threshold, baselines, meta, floors)


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(key.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


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
    from netanomd.hostfeatures import HostFeatures

    return FeatureSpec([FlowFeatures(), HostFeatures()])


def train(
    batches: Iterable[FlowBatch],
    *,
    detector: Detector | None = None,
    spec: FeatureSpec | None = None,
    threshold_quantile: float = DEFAULT_THRESHOLD_QUANTILE,
    alerts_per_day: float | None = None,
    vetted: bool = False,
    trim: float = DEFAULT_TRIM,
    seed: int = 0,
    max_rows: int = DEFAULT_MAX_TRAIN_ROWS,
    files: Sequence[str] = (),
) -> Model:
    """Fit features and detector on ``batches`` and return a :class:`Model`.

    Features are computed over the whole stream in order (host features need every flow);
    at most ``max_rows`` feature rows are kept (uniform sample) for fitting, their one-sided
    columns floored at the training median (:mod:`netanomd.floors`). Unless the
    training traffic is ``vetted`` (a clean baseline someone checked, kept whole), the detector
    is fitted on its distinct behaviours, keyed by the per-flow block (see
    :mod:`netanomd.robust`); ``trim`` drops the most anomalous share and refits. Threshold:
    the ``threshold_quantile`` quantile of the training scores (over distinct behaviours when
    fitted on them, else over every flow), or, with ``alerts_per_day``, the alert budget at
    the training data's flow rate (see :mod:`netanomd.thresholds`).
    """
    spec = spec or default_spec()
    reservoir = _Reservoir(max_rows, seed)
    svc_codes: dict[str, int] = {}
    ts_parts: list[np.ndarray] = []
    sources: dict[str, int] = {}
    for b in batches:
        if not len(b):
            continue
        spec.fit(b)
        # The service of each row rides along as one extra column (a code into svc_names),
        # so the sample keeps rows and services together for per-service baselines.
        codes = [
            svc_codes.setdefault(v or "", len(svc_codes)) for v in b.column("service").to_pylist()
        ]
        reservoir.add(np.hstack([spec.transform(b), np.asarray(codes, np.float32)[:, None]]))
        ts_parts.append(b.numeric("ts", fill=np.nan))
        src = b.column("source").fill_null("unknown").value_counts()
        for item in src.to_pylist():
            sources[str(item["values"])] = sources.get(str(item["values"]), 0) + int(item["counts"])
    XS = reservoir.matrix(len(spec.names) + 1)
    X = np.ascontiguousarray(XS[:, :-1])
    svc_names = np.array(list(svc_codes), dtype=object)
    services = svc_names[XS[:, -1].astype(np.int64)] if len(XS) else np.array([], object)
    if len(X) < 10:
        raise ModelError(f"need at least 10 training flows, got {len(X)}")
    spec.reset()  # a scoring stream starts with fresh host state
    first = spec.blocks[0] if spec.blocks else None
    key_columns = len(first.names) if isinstance(first, FlowFeatures) else None
    if detector is None:
        from netanomd.detectors.iforest import IsolationForestDetector

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
    else:
        threshold, rule = thresholds.by_quantile(fit.behaviour_scores, threshold_quantile)
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
    }
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    h.update(X[: min(len(X), 1000)].tobytes())
    meta["model_id"] = f"{detector.kind}-{created:%Y%m%dT%H%M%SZ}-{h.hexdigest()[:8]}"
    model = Model(spec, detector, threshold, Baselines.fit(spec.names, X, services), meta, floors)
    log.info(
        "trained %s on %d flows (%d used), threshold %.4f (%s)",
        model.model_id,
        summary.rows,
        len(X),
        threshold,
        rule["method"],
    )
    return model


def describe_model(model: Model) -> str:
    """Human summary of a model (for ``netanomd model show`` and logs)."""
    buf = io.StringIO()
    m = model.meta
    buf.write(f"model      {model.model_id}\n")
    buf.write(f"created    {m['created_at']}\n")
    buf.write(f"detector   {model.detector.kind}\n")
    buf.write(f"features   {len(model.feature_names)}\n")
    buf.write(f"threshold  {model.threshold:.6f} ({m.get('threshold_rule')})\n")
    t = m.get("training", {})
    buf.write(f"training   {t.get('rows')} flows from {t.get('sources')}\n")
    return buf.getvalue()
