"""One contract for every detector, on real features: fit, score (higher = more anomalous),
round-trip through plain arrays (and a model artifact), refuse broken state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from netanomd.data import attack_files, baseline_files
from netanomd.detectors.registry import DETECTOR_TYPES, UNSUPERVISED, make
from netanomd.errors import ModelError
from netanomd.features import FeatureSpec
from netanomd.flow import FlowBatch
from netanomd.model import Model, train
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(benign training rows, benign test rows, RemcosRAT malicious rows) of flow features."""
    spec = FeatureSpec()
    base = FlowBatch.concat(list(read_batches(baseline_files(), ReadStats())))
    remcos = FlowBatch.concat(
        list(read_batches([p for p in attack_files() if "remcos" in p.name], ReadStats()))
    )
    X = spec.transform(base)
    mal = spec.transform(remcos)
    mal = mal[np.asarray(remcos.column("label").to_pylist()) == "Malicious"]
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(X))
    return X[idx[:5000]], X[idx[5000:]], mal


@pytest.mark.parametrize("kind", sorted(DETECTOR_TYPES))
def test_detector_contract(kind: str, features: tuple[np.ndarray, ...]) -> None:
    train_X, test_benign, mal = features
    det = make(kind, seed=0)
    if getattr(det, "supervised", False):
        with pytest.raises(ModelError, match="labels"):
            det.fit(train_X)
        X = np.vstack([train_X, mal[::2]])
        y = np.r_[np.zeros(len(train_X)), np.ones(len(mal[::2]))]
        det.fit(X, y)
        mal_test = mal[1::2]
    else:
        det.fit(train_X)
        mal_test = mal
    s_b, s_m = det.score(test_benign), det.score(mal_test)
    assert s_b.shape == (len(test_benign),) and s_b.dtype == np.float64
    assert np.isfinite(s_b).all() and np.isfinite(s_m).all()
    # Higher means more anomalous: the exfiltration flows rank above the benign day more
    # often than not (how well each detector does is docs/evaluation.md's business).
    auc = roc_auc_score(np.r_[np.zeros(len(s_b)), np.ones(len(s_m))], np.r_[s_b, s_m])
    assert auc > 0.6, (kind, auc)
    params, arrays = det.to_state()
    again = DETECTOR_TYPES[kind].from_state(params, arrays)
    np.testing.assert_allclose(again.score(mal_test), s_m, rtol=1e-9)
    broken = dict(arrays)
    broken.pop(sorted(broken)[0])
    with pytest.raises(ModelError):
        DETECTOR_TYPES[kind].from_state(params, broken)


@pytest.mark.parametrize("kind", UNSUPERVISED)
def test_every_unsupervised_detector_makes_a_loadable_model(kind: str, tmp_path: Path) -> None:
    model = train(read_batches(baseline_files(), ReadStats()), detector=make(kind), seed=0)
    path = tmp_path / f"{kind}.npz"
    model.save(path)
    loaded = Model.load(path)
    assert loaded.detector.kind == kind
    remcos = FlowBatch.concat(
        list(read_batches([p for p in attack_files() if "remcos" in p.name], ReadStats()))
    )
    model.reset()
    np.testing.assert_allclose(loaded.score(remcos), model.score(remcos), rtol=1e-9)


def test_kmeans_picks_k_by_elbow_and_profiles_clusters(
    features: tuple[np.ndarray, ...],
) -> None:
    det = make("kmeans")
    det.fit(features[0])
    assert 2 <= det.k <= 10 and set(det.inertia) == set(range(2, 11))
    inertia = [det.inertia[k] for k in sorted(det.inertia)]
    assert inertia == sorted(inertia, reverse=True) or inertia[0] > inertia[-1]
    assert len(det.profiles) == det.k
    assert sum(p["share"] for p in det.profiles) == pytest.approx(1.0)
    assert all(-1.0 <= s <= 1.0 for s in det.silhouette.values())
