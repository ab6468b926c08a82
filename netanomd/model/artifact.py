"""The model artifact: features, floors, detector, threshold and baselines, stored as one.

A :class:`Model` is what the daemon, the CLI and the scoring API score with: its flow decision
is :meth:`Model.decide` (features -> floors -> detector -> :mod:`netanomd.decision`), and
:meth:`Model.stream` is what the product reports: flow scores and alerts plus host behaviour,
grouped into incidents (:mod:`netanomd.model.stream`). It is
written as a single ``.npz`` file (a zip of plain numpy arrays, loaded with
``allow_pickle=False``, so loading never runs code from the file) holding:

* ``meta.json`` (stored as a ``uint8`` array): format and version, ``model_id``, created-at,
  library versions, the :class:`~netanomd.features.FeatureSpec` state and feature names, the
  detector kind and parameters, the threshold and the rule that chose it, a training summary
  (rows, time span, sources, files) and the explanation baselines' description;
* ``detector/<name>`` arrays: the detector's state (see :meth:`Detector.to_state`);
* ``baseline/<name>`` arrays: per-feature training quantiles used to explain alerts;
* ``floors/values``: the training medians that one-sided columns are raised to before the
  detector and the explanations see them (:mod:`netanomd.features.floors`; format version 2,
  absent from version 1 artifacts, which score unfloored);
* ``behaviour/<name>`` arrays and ``meta.json``'s ``behaviour`` entry: the operating point for
  host behaviour and incidents (:mod:`netanomd.model.operating`; format version 4, absent from
  older artifacts, which group flow alerts into incidents but detect no host behaviour);
* ``digest``: SHA-256 over everything above; a file whose digest does not match is refused.

The ``model_id`` ends with the first 12 hex digits of the *content digest* (the same SHA-256
over everything but the id itself, format version 3), so an id names one content: a file whose
id does not match what it holds is refused. Loading is bounded: the archive may expand to at
most :data:`MAX_UNCOMPRESSED` bytes, feature-block state is range-checked by the blocks, and the
detector must score a row of exactly the spec's width before the model is accepted.

Training (:mod:`netanomd.model.training`) builds a :class:`Model`; this module only runs,
saves and loads one, and needs no import besides its own to load any artifact.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from netanomd.decision import Alert, Contribution, make_alerts
from netanomd.decision.explain import Baselines
from netanomd.detectors import Detector
from netanomd.detectors.registry import detector_class
from netanomd.errors import ModelError
from netanomd.features import FeatureSpec, Floors
from netanomd.flow import FlowBatch
from netanomd.fsutil import write_atomic
from netanomd.model.operating import OperatingPoint

if TYPE_CHECKING:
    from netanomd.model.stream import Stream

FORMAT = "netanomd-model"
#: Version 2 added one-sided floors; version 1 artifacts (no floors) still load and score
#: unfloored, while a netanomd that reads only version 1 refuses version 2 instead of
#: silently ignoring its floors.
#: Version 3 binds the model id to the content digest (versions 1 and 2 get an id derived
#: from their digest on load).
#: Version 4 adds the behaviour operating point (learned limits, incident settings); older
#: versions load without it.
FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
#: Largest total size the arrays of an artifact may expand to (a real model is a few MiB).
MAX_UNCOMPRESSED = 256 << 20
#: Hex digits of the content digest at the end of a model id.
ID_DIGITS = 12


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
        operating: OperatingPoint | None = None,
    ) -> None:
        self.spec = spec
        self.detector = detector
        self.threshold = float(threshold)
        self.baselines = baselines
        self.meta = meta
        self.floors = floors or Floors(spec.names, [], np.empty(0))
        #: Host behaviour limits and incident settings (None: a model older than format 4).
        self.operating = operating

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
    # so feed flows in arrival order and each flow once; reset() starts a new stream, and
    # fresh=True scores a batch as a stream of its own, leaving the model's stream untouched
    # (ad-hoc flows, as the scoring API gets them).
    def reset(self) -> None:
        """Forget stream state (host windows), as for a new capture or after a restart."""
        self.spec.reset()

    def threshold_for(self, override: float | None = None) -> float:
        """The threshold in force: ``override`` when set, else the model's own."""
        return self.threshold if override is None else float(override)

    def features(self, batch: FlowBatch, *, fresh: bool = False) -> np.ndarray:
        """The matrix the detector scores: the spec's features, one-sided columns floored."""
        spec = self.spec.fresh() if fresh else self.spec
        return self.floors.apply(spec.transform(batch))

    def _scored(self, batch: FlowBatch, fresh: bool) -> tuple[np.ndarray, np.ndarray]:
        """(feature matrix, score per flow), computing features once."""
        X = self.features(batch, fresh=fresh)
        if len(batch) == 0:
            return X, np.empty(0, dtype=np.float64)
        return X, self.detector.score(X)

    def score(self, batch: FlowBatch, *, fresh: bool = False) -> np.ndarray:
        """Anomaly score per flow; higher means more anomalous."""
        return self._scored(batch, fresh)[1]

    def explain(self, batch: FlowBatch, *, fresh: bool = False) -> list[tuple[Contribution, ...]]:
        """Every flow's reasons against the training baselines, whatever its score."""
        X = self.features(batch, fresh=fresh)
        return self.baselines.explain(X, batch.column("service").to_pylist())

    def decide(
        self,
        batch: FlowBatch,
        spec: FeatureSpec,
        threshold: float | None = None,
        *,
        select: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> tuple[np.ndarray, list[Alert]]:
        """The flow decision on ``spec``'s stream state: (score per flow, explained alerts of
        the flows reaching the threshold in force; with ``select``, of the rows it returns given
        those rows, e.g. less the ones an allowlist covers)."""
        X = self.floors.apply(spec.transform(batch))
        scores = self.detector.score(X) if len(batch) else np.empty(0, dtype=np.float64)
        alerts = make_alerts(
            batch,
            scores,
            self.threshold_for(threshold),
            self.model_id,
            X=X,
            baselines=self.baselines,
            select=select,
        )
        return scores, alerts

    def run(
        self, batch: FlowBatch, threshold: float | None = None, *, fresh: bool = False
    ) -> tuple[np.ndarray, list[Alert]]:
        """Flow scores and alerts only, on the model's own stream (``fresh``: a stream of its
        own). What a sensor reports is :meth:`stream`, which adds incidents."""
        return self.decide(batch, self.spec.fresh() if fresh else self.spec, threshold)

    def stream(self) -> Stream:
        """A new stream of flows (fresh host state): flow alerts, host behaviour, incidents."""
        from netanomd.model.stream import Stream

        return Stream(self)

    # -- persistence --------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        """Everything the artifact stores except its digest (``meta.json`` with the id)."""
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
        meta.pop("behaviour", None)
        if self.operating is not None:
            meta["behaviour"] = self.operating.meta()
            arrays.update(
                {f"behaviour/{k}": v for k, v in self.operating.thresholds.to_arrays().items()}
            )
        arrays["meta.json"] = _meta_array(meta)
        return arrays

    def content_digest(self) -> str:
        """SHA-256 of everything the artifact holds except the model id."""
        return _content_digest(self._arrays())

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the artifact atomically (temp file + rename), readable by its owner and
        group only."""
        arrays = self._arrays()
        arrays["digest"] = np.frombuffer(_digest(arrays).encode(), dtype=np.uint8)
        path = Path(path)
        if not path.parent.is_dir():
            raise ModelError(f"{path}: directory {path.parent} does not exist")
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
        write_atomic(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Model:
        """Load and check an artifact; raise :class:`ModelError` saying what is wrong."""
        where = str(path)
        try:
            _check_expanded_size(path, where)
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
            operating = None
            if version >= 4 and "behaviour" in meta:
                bh = {
                    k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("behaviour/")
                }
                operating = OperatingPoint.from_stored(meta["behaviour"], bh)
        except ModelError as exc:
            raise ModelError(f"{where}: {exc}") from exc
        except KeyError as exc:
            raise ModelError(f"{where}: incomplete model artifact (missing {exc})") from exc
        except (TypeError, ValueError, MemoryError) as exc:
            raise ModelError(f"{where}: invalid model artifact ({exc})") from exc
        n = len(spec.names)
        if any(len(a) != n for a in (baselines.lo, baselines.med, baselines.hi, baselines.share)):
            raise ModelError(f"{where}: baselines do not match the {n} feature columns")
        if not np.isfinite(threshold):
            raise ModelError(f"{where}: threshold {threshold!r} is not a finite number")
        content = _content_digest(arrays)
        claimed = str(meta.get("model_id", ""))
        if version >= 3 and not claimed.endswith("-" + content[:ID_DIGITS]):
            raise ModelError(
                f"{where}: model id {claimed!r} does not match the model's content "
                f"(digest {content[:ID_DIGITS]}); the file was modified"
            )
        if version < 3:
            meta["model_id"] = f"{det_meta['kind']}-{content[:ID_DIGITS]}"
        model = cls(spec, detector, threshold, baselines, meta, floors, operating)
        try:
            scores = detector.score(np.zeros((1, n), dtype=np.float32))
        except Exception as exc:
            raise ModelError(
                f"{where}: the detector cannot score the {n} feature columns the model's "
                f"features produce ({exc})"
            ) from exc
        if np.shape(scores) != (1,):
            raise ModelError(f"{where}: the detector returned {np.shape(scores)} scores for 1 row")
        return model


def _meta_array(meta: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)


def _content_digest(arrays: dict[str, np.ndarray]) -> str:
    """The digest of ``arrays`` (no ``digest`` entry) with the model id left out of meta."""
    meta = json.loads(bytes(arrays["meta.json"]))
    meta.pop("model_id", None)
    return _digest({**arrays, "meta.json": _meta_array(meta)})


def _check_expanded_size(path: str | os.PathLike[str], where: str) -> None:
    """Refuse an archive that would expand beyond :data:`MAX_UNCOMPRESSED` (before reading)."""
    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(info.file_size for info in zf.infolist())
    except zipfile.BadZipFile as exc:
        raise ModelError(f"{where}: not a netanomd model artifact ({exc})") from exc
    if total > MAX_UNCOMPRESSED:
        raise ModelError(
            f"{where}: expands to {total:,} bytes, more than a model may "
            f"({MAX_UNCOMPRESSED:,}); refusing to load it"
        )


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(key.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()
