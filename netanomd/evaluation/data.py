"""Labeled data for evaluation: flows (or table rows), their features, and ground truth.

Owns turning a labeled file into a :class:`LabeledData`: Zeek conn logs with ``label`` /
``detailedlabel`` (TSV, JSON, the IoT-23 CSV), Suricata EVE with a label map, CICFlowMeter CSV
and NSL-KDD. Flow inputs are put in time order and featurised by a streaming
:class:`~netanomd.features.FeatureSpec` (flow + host features, host state carried through the
whole capture as on a sensor). Tabular sets (CICFlowMeter, NSL-KDD) use their own numeric
columns. Labels: ``benign``/``normal`` -> 0, ``malicious`` or any attack name -> 1, and
``background``/``unknown``/missing -> -1, which is left out of every metric and counted.
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from netanomd.errors import InputError
from netanomd.features import FeatureSpec, FlowFeatures, HostFeatures
from netanomd.flow import FlowBatch
from netanomd.sources import ReadStats
from netanomd.sources.cicflowmeter import find_columns, label_text
from netanomd.sources.files import read_batches

BENIGN = {"benign", "normal"}
EXCLUDED = {"background", "unknown", "", "-"}


@dataclass
class LabeledData:
    name: str
    #: Full feature matrix (what netanomd scores).
    X: np.ndarray
    #: Per-flow features only (what the plain Isolation Forest baseline scores).
    X_flow: np.ndarray
    feature_names: list[str]
    #: 1 malicious, 0 benign, -1 left out of the metrics.
    y: np.ndarray
    #: Attack type per row ("benign" for benign rows).
    kind: np.ndarray
    #: Time of each row (seconds) when the data has time, else None (then splits are random).
    ts: np.ndarray | None
    files: list[str]
    excluded: dict[str, int] = field(default_factory=dict)
    #: Separate test rows (NSL-KDD ships its own test file), or None to split by time.
    test_X: np.ndarray | None = None
    test_X_flow: np.ndarray | None = None
    test_y: np.ndarray | None = None
    test_kind: np.ndarray | None = None
    #: Flow inputs: the benign rows featurised as a stream of their own (other rows NaN), what
    #: a sensor would have computed in a clean period; the clean protocol trains on these.
    X_benign_stream: np.ndarray | None = None
    #: Flow inputs: the flows themselves, in the rows' (time) order, for the deployed
    #: operating point (:mod:`netanomd.evaluation.deployed`), which trains and streams them.
    batch: FlowBatch | None = None

    def counts(self) -> dict[str, int]:
        return {
            "rows": len(self.y),
            "benign": int((self.y == 0).sum()),
            "malicious": int((self.y == 1).sum()),
            "excluded": int((self.y < 0).sum()),
        }


def label_values(labels: Sequence[str | None]) -> tuple[np.ndarray, dict[str, int]]:
    """(y, {excluded label: count}) for raw label strings."""
    y = np.empty(len(labels), dtype=np.int8)
    excluded: Counter[str] = Counter()
    for i, raw in enumerate(labels):
        lab = (raw or "").strip().lower()
        if lab in BENIGN:
            y[i] = 0
        elif lab in EXCLUDED or lab.startswith(("background", "unknown")):
            y[i] = -1
            excluded[lab or "(none)"] += 1
        else:
            y[i] = 1
    return y, dict(excluded)


def _kinds(
    labels: Sequence[str | None], detailed: Sequence[str | None], y: np.ndarray
) -> np.ndarray:
    out = []
    for lab, det, v in zip(labels, detailed, y.tolist(), strict=True):
        if v == 0:
            out.append("benign")
        elif v < 0:
            out.append((lab or "unknown").strip() or "unknown")
        else:
            d = (det or "").strip()
            out.append(d if d and d != "-" else (lab or "malicious").strip())
    return np.asarray(out, dtype=object)


def load_flows(
    name: str, paths: Sequence[str | Path], label_map: dict[str, str] | None = None
) -> LabeledData:
    """Labeled flow files (Zeek logs, IoT-23 CSV, Suricata EVE), featurised in time order.

    ``label_map`` (for EVE, which carries no labels) maps an originator or responder address
    or CIDR to a label; unmatched flows are "benign" when the map has a ``"*"`` entry, else
    unknown.
    """
    stats = ReadStats()
    batch = FlowBatch.concat(list(read_batches(list(paths), stats)))
    if len(batch) == 0:
        raise InputError(f"{name}: no flows in {', '.join(map(str, paths))}")
    ts = batch.numeric("ts", fill=np.nan)
    order = np.argsort(np.where(np.isfinite(ts), ts, np.inf), kind="stable")
    batch = batch.take(order)
    if label_map is not None:
        batch = _apply_label_map(batch, label_map)
    labels = batch.column("label").to_pylist()
    detailed = batch.column("detailed_label").to_pylist()
    y, excluded = label_values(labels)
    X, names = _featurise(batch)
    # Host features look at what else the originator did: in a clean period the attack's own
    # flows would not have been there, so the clean baseline is featurised without them.
    benign = np.flatnonzero(y == 0)
    X_benign = np.full_like(X, np.nan)
    if len(benign):
        X_benign[benign] = _featurise(batch.take(benign))[0]
    n_flow = len(FlowFeatures().names)
    ts = batch.numeric("ts", fill=np.nan)
    return LabeledData(
        name=name,
        X=X,
        X_flow=np.ascontiguousarray(X[:, :n_flow]),
        feature_names=list(names),
        y=y,
        kind=_kinds(labels, detailed, y),
        ts=ts if np.isfinite(ts).mean() > 0.99 else None,
        files=[str(p) for p in paths],
        excluded=excluded,
        X_benign_stream=X_benign,
        batch=batch,
    )


def _featurise(batch: FlowBatch) -> tuple[np.ndarray, tuple[str, ...]]:
    """Flow + host features of ``batch`` as one stream in its order (fresh host state)."""
    spec = FeatureSpec([FlowFeatures(), HostFeatures()])
    parts = [spec.transform(batch.slice(o, 65536)) for o in range(0, len(batch), 65536)]
    return np.vstack(parts), spec.names


def _apply_label_map(batch: FlowBatch, label_map: dict[str, str]) -> FlowBatch:
    nets = [(ipaddress.ip_network(k, strict=False), v) for k, v in label_map.items() if k != "*"]
    default = label_map.get("*")
    out = []
    for o, r in zip(
        batch.column("orig_h").to_pylist(), batch.column("resp_h").to_pylist(), strict=True
    ):
        lab = default
        for net, value in nets:
            try:
                if (
                    ipaddress.ip_address(o or "0.0.0.0") in net
                    or ipaddress.ip_address(r or "0.0.0.0") in net
                ):
                    lab = value
                    break
            except ValueError:
                continue
        out.append(lab)
    table = batch.table.set_column(
        batch.table.schema.get_field_index("label"), "label", pa.array(out, pa.string())
    )
    return FlowBatch(table)


def load_label_map(path: str | Path) -> dict[str, str]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read label map ({exc})") from exc
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise InputError(f"{path}: label map must be a JSON object of address/CIDR -> label")
    return {str(k): v for k, v in data.items()}


# -- tabular sets ---------------------------------------------------------------------------
def _numeric_frame(df: pd.DataFrame) -> np.ndarray:
    X = df.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    X = np.where(np.isfinite(X), X, 0.0)
    return np.asarray(np.sign(X) * np.log1p(np.abs(X)), dtype=np.float32)


def load_cicflowmeter(name: str, path: str | Path) -> LabeledData:
    """A CICFlowMeter CSV with a label column (``Label``, ``Labelb`` 0/1 or ``Attack``: the
    spellings :mod:`netanomd.sources.cicflowmeter` knows), using its own numeric flow columns
    (no time split: the public samples are shuffled)."""
    try:
        df = pd.read_csv(path, low_memory=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read CSV ({exc})") from exc
    df.columns = [c.strip() for c in df.columns]
    found = find_columns(df.columns)
    if "label" not in found:
        raise InputError(f"{path}: no label column (Label, Labelb or Attack)")
    labels = label_text(pa.array(df[found["label"]].astype(str))).to_pylist()
    named = df[found["detailed_label"]].astype(str).tolist() if "detailed_label" in found else None
    # Identifiers and labels are never features.
    keys = ("uid", "orig_h", "orig_p", "resp_h", "ts", "label", "detailed_label")
    drop = {found[k] for k in keys if k in found}
    feats = df[[c for c in df.columns if c not in drop]]
    X = _numeric_frame(feats)
    keep = X.std(axis=0) > 0
    X = np.ascontiguousarray(X[:, keep])
    y, excluded = label_values(labels)
    return LabeledData(
        name=name,
        X=X,
        X_flow=X,
        feature_names=[c for c, k in zip(feats.columns, keep, strict=True) if k],
        y=y,
        kind=_kinds(labels, named or labels, y),
        ts=None,
        files=[str(path)],
        excluded=excluded,
    )


KDD_COLUMNS = [
    "duration", "protocol_type", "service", "flag", "src_bytes", "dst_bytes", "land",
    "wrong_fragment", "urgent", "hot", "num_failed_logins", "logged_in", "num_compromised",
    "root_shell", "su_attempted", "num_root", "num_file_creations", "num_shells",
    "num_access_files", "num_outbound_cmds", "is_host_login", "is_guest_login", "count",
    "srv_count", "serror_rate", "srv_serror_rate", "rerror_rate", "srv_rerror_rate",
    "same_srv_rate", "diff_srv_rate", "srv_diff_host_rate", "dst_host_count",
    "dst_host_srv_count", "dst_host_same_srv_rate", "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate", "dst_host_srv_diff_host_rate", "dst_host_serror_rate",
    "dst_host_srv_serror_rate", "dst_host_rerror_rate", "dst_host_srv_rerror_rate",
    "label", "difficulty",
]  # fmt: skip


def _kdd_frame(path: str | Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, header=None, names=KDD_COLUMNS)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read NSL-KDD ({exc})") from exc
    if df["label"].isna().any():
        bad = int(df["label"].isna().to_numpy().argmax()) + 1
        raise InputError(f"{path}:{bad}: expected {len(KDD_COLUMNS)} comma-separated fields")
    return df


def load_nsl_kdd(name: str, train_path: str | Path, test_path: str | Path) -> LabeledData:
    """NSL-KDD with its own train/test files; categorical columns one-hot on the train set."""
    train, test = _kdd_frame(train_path), _kdd_frame(test_path)
    cats = {c: sorted(train[c].astype(str).unique()) for c in ("protocol_type", "flag")}
    services = train["service"].astype(str).value_counts().index[:30].tolist()
    cats["service"] = services

    def matrix(df: pd.DataFrame) -> np.ndarray:
        num = df.drop(columns=["protocol_type", "service", "flag", "label", "difficulty"])
        parts = [_numeric_frame(num)]
        for c, values in cats.items():
            col = df[c].astype(str).to_numpy()
            parts.append(np.stack([(col == v) for v in values], axis=1).astype(np.float32))
        return np.ascontiguousarray(np.hstack(parts))

    names = [
        c
        for c in KDD_COLUMNS
        if c not in ("protocol_type", "service", "flag", "label", "difficulty")
    ]
    names += [f"{c}={v}" for c, values in cats.items() for v in values]
    ytr, _ = label_values(train["label"].astype(str).tolist())
    yte, _ = label_values(test["label"].astype(str).tolist())
    Xtr, Xte = matrix(train), matrix(test)
    return LabeledData(
        name=name,
        X=Xtr,
        X_flow=Xtr,
        feature_names=names,
        y=ytr,
        kind=_kinds(train["label"].tolist(), train["label"].tolist(), ytr),
        ts=None,
        files=[str(train_path), str(test_path)],
        test_X=Xte,
        test_X_flow=Xte,
        test_y=yte,
        test_kind=_kinds(test["label"].tolist(), test["label"].tolist(), yte),
    )
