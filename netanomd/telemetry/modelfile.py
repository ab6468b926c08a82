"""A fitted :class:`~netanomd.telemetry.scoring.MetricModel` as one file, and back.

Owns :func:`save` and :func:`load`. The file is an ``.npz`` (a zip of plain numpy arrays,
loaded with ``allow_pickle=False``: loading never runs code from the file), like the flow model
artifact (:mod:`netanomd.model.artifact`) but holding what a metrics model is:

* ``meta.json`` (a ``uint8`` array): format and version, the series (their queries, words,
  units and floors), the detector kind and parameters, threshold, minimum deviation, the
  entities and hours of the usual values, the floors' columns, and when the baseline was;
* ``detector/<name>``: the detector's state (:meth:`netanomd.detectors.Detector.to_state`);
* ``usual``, ``spread`` (one row per entity and hour), ``lo``, ``hi`` (per series) and
  ``floors``.

So a baseline fitted once (``netanomd metrics ... --save-model week.npz``) scores each new
window (``--model week.npz``) without a baseline in it. Anything missing or of the wrong shape
is a :class:`~netanomd.errors.ModelError` naming the file.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from netanomd.detectors.registry import detector_class
from netanomd.errors import ModelError
from netanomd.features.floors import Floors
from netanomd.fsutil import write_atomic
from netanomd.telemetry.baseline import SeriesBaseline
from netanomd.telemetry.scoring import MetricModel
from netanomd.telemetry.series import Series

FORMAT = "netanomd-metrics-model"
FORMAT_VERSION = 1


def save(model: MetricModel, path: str | os.PathLike[str]) -> None:
    params, state = model.detector.to_state()
    keys = list(model.baseline.usual)
    floor_meta, floor_values = model.floors.to_state()
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "series": [dataclasses.asdict(s) for s in model.series],
        "detector": {"kind": model.kind, "params": params},
        "threshold": model.threshold,
        "min_deviation": model.min_deviation,
        "hourly": model.baseline.hourly,
        "keys": [[entity, hour] for entity, hour in keys],
        "floors": floor_meta,
        "info": model.info,
    }
    k = len(model.series)
    arrays: dict[str, np.ndarray] = {
        "meta.json": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        "usual": np.array([model.baseline.usual[key] for key in keys]).reshape(len(keys), k),
        "spread": np.array([model.baseline.spread[key] for key in keys]).reshape(len(keys), k),
        "lo": np.asarray(model.lo, dtype=np.float64),
        "hi": np.asarray(model.hi, dtype=np.float64),
        "floors": np.asarray(floor_values, dtype=np.float64),
        **{f"detector/{name}": a for name, a in state.items()},
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    write_atomic(Path(path), buf.getvalue())


def load(path: str | os.PathLike[str]) -> MetricModel:
    where = f"metrics model {path}"
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError as exc:
        raise ModelError(f"{where}: no such file") from exc
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{where}: not a metrics model ({exc})") from exc
    try:
        meta = json.loads(arrays["meta.json"].tobytes())
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ModelError(
                f"{where}: format {meta.get('format')!r} version {meta.get('format_version')}, "
                f"expected {FORMAT!r} version {FORMAT_VERSION} (a flow model? see --model)"
            )
        series = tuple(Series(**s) for s in meta["series"])
        k = len(series)
        keys = [(str(e), int(h)) for e, h in meta["keys"]]
        usual, spread = arrays["usual"], arrays["spread"]
        lo, hi = arrays["lo"], arrays["hi"]
        if usual.shape != (len(keys), k) or spread.shape != usual.shape:
            raise ModelError(
                f"{where}: usual values of shape {usual.shape}, expected ({len(keys)}, {k})"
            )
        if lo.shape != (k,) or hi.shape != (k,):
            raise ModelError(f"{where}: deviation ranges do not match its {k} series")
        baseline = SeriesBaseline(series, bool(meta["hourly"]))
        for i, key in enumerate(keys):
            baseline.usual[key], baseline.spread[key] = usual[i], spread[i]
        cls = detector_class(str(meta["detector"]["kind"]))
        state = {
            n.removeprefix("detector/"): a for n, a in arrays.items() if n.startswith("detector/")
        }
        detector = cls.from_state(meta["detector"]["params"], state)
        names = [s.name for s in series]
        floors = Floors(
            names, meta["floors"]["columns"], arrays["floors"], meta["floors"]["quantile"]
        )
        detector.score(np.zeros((1, k), dtype=np.float32))  # it scores rows of this width
        return MetricModel(
            series,
            baseline,
            detector,
            floors,
            float(meta["threshold"]),
            lo,
            hi,
            float(meta["min_deviation"]),
            dict(meta.get("info", {})),
        )
    except ModelError as exc:
        if str(exc).startswith(where):
            raise
        raise ModelError(f"{where}: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{where}: incomplete or inconsistent ({exc!r})") from exc
