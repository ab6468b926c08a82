"""The flattened-forest evaluator must give scikit-learn's scores on real feature matrices."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from netanomd.data import attack_files, baseline_files
from netanomd.detectors import Detector
from netanomd.detectors._forest_kernel import order_keys
from netanomd.detectors.iforest import IsolationForestDetector
from netanomd.errors import ModelError
from netanomd.features import FeatureSpec
from netanomd.flow import FlowBatch
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches


@pytest.fixture(scope="module")
def matrices() -> tuple[np.ndarray, np.ndarray]:
    spec = FeatureSpec()
    train = FlowBatch.concat(list(read_batches(baseline_files(), ReadStats())))
    test = FlowBatch.concat(list(read_batches(attack_files(), ReadStats())))
    return spec.transform(train), spec.transform(test)


def fitted(
    X: np.ndarray, seed: int = 7, trees: int = 100
) -> tuple[IsolationForestDetector, IsolationForest]:
    iso = IsolationForest(n_estimators=trees, max_samples=256, random_state=seed, n_jobs=1).fit(X)
    det = IsolationForestDetector(n_estimators=trees, random_state=seed)
    det.load_sklearn(iso, X.shape[1])
    return det, iso


def test_matches_sklearn_on_real_flows(matrices: tuple[np.ndarray, np.ndarray]) -> None:
    X_train, X_test = matrices
    det, iso = fitted(X_train)
    assert isinstance(det, Detector)
    for X in (X_train, X_test):
        np.testing.assert_allclose(det.score(X), -iso.score_samples(X), rtol=0, atol=1e-6)
    # One row at a time gives the same as in a batch.
    one = np.array([det.score(X_test[i : i + 1])[0] for i in range(50)])
    np.testing.assert_array_equal(one, det.score(X_test[:50]))


@pytest.mark.parametrize("trees", [1, 7, 10])
def test_any_tree_count_and_odd_rows(matrices: tuple[np.ndarray, np.ndarray], trees: int) -> None:
    """The kernel walks trees four at a time and rows two at a time: tree counts that are not
    a multiple of four and an odd number of rows (one row left over in each block of 256 and at
    the end) score as scikit-learn does, and each row as it does alone."""
    X_train, X_test = matrices
    det, iso = fitted(X_train, seed=5, trees=trees)
    X = X_test[: 2 * 256 + 7]  # two full blocks and an odd tail
    assert len(X) % 2 == 1
    np.testing.assert_allclose(det.score(X), -iso.score_samples(X), rtol=0, atol=1e-6)
    alone = np.array([det.score(X[i : i + 1])[0] for i in range(len(X) - 9, len(X))])
    np.testing.assert_array_equal(alone, det.score(X)[-9:])


def test_fit_equals_sklearn_fit(matrices: tuple[np.ndarray, np.ndarray]) -> None:
    X_train, X_test = matrices
    det = IsolationForestDetector(random_state=3)
    det.fit(X_train)
    iso = IsolationForest(n_estimators=100, max_samples=256, random_state=3, n_jobs=1)
    iso.fit(X_train)
    np.testing.assert_allclose(det.score(X_test), -iso.score_samples(X_test), atol=1e-6)


def test_values_exactly_on_thresholds(matrices: tuple[np.ndarray, np.ndarray]) -> None:
    """Rows whose values sit exactly on (float32-rounded) split thresholds, and just above."""
    X_train, _ = matrices
    det, iso = fitted(X_train, seed=11)
    rng = np.random.default_rng(0)
    rows = X_train[rng.choice(len(X_train), 300)].copy()
    for r in range(len(rows)):
        tree = iso.estimators_[r % 100].tree_
        node = int(rng.integers(0, (tree.children_left != -1).sum()))
        internal = np.flatnonzero(tree.children_left != -1)[node]
        f, t = tree.feature[internal], tree.threshold[internal]
        t32 = np.float32(t)
        rows[r, f] = (
            t32 if r % 3 == 0 else np.nextafter(t32, np.float32(np.inf if r % 3 == 1 else -np.inf))
        )
    np.testing.assert_allclose(det.score(rows), -iso.score_samples(rows), atol=1e-6)


def test_order_keys_compare_as_the_floats() -> None:
    """The kernel compares int32 keys, not floats: every pair of float32 values (infinities,
    subnormals, both zeros) orders the same way as keys; NaN is below everything (goes left)."""
    tiny = np.finfo(np.float32).smallest_subnormal
    values = np.array(
        [-np.inf, -3.4e38, -1.5, -tiny, -0.0, 0.0, tiny, 1e-30, 1.0, 1.0000001, 3.4e38, np.inf],
        dtype=np.float32,
    )
    keys = order_keys(values)
    assert np.array_equal(keys[:, None] > keys[None, :], values[:, None] > values[None, :])
    nan = order_keys(np.array([np.nan, -np.nan], dtype=np.float32))
    assert (nan[:, None] < keys[None, :]).all()


def test_edge_values_walk_as_float_compares(matrices: tuple[np.ndarray, np.ndarray]) -> None:
    """The kernel maps each row to keys itself: rows holding NaN, infinities, both zeros and
    subnormals take, in every tree, the branches a plain float walk of the stored trees takes."""
    X_train, X_test = matrices
    det, _ = fitted(X_train, seed=2, trees=9)
    rows = X_test[:40].copy()
    edge = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, np.finfo(np.float32).smallest_subnormal])
    rng = np.random.default_rng(4)
    for r in range(len(rows)):
        cols = rng.choice(rows.shape[1], 6, replace=False)
        rows[r, cols] = edge[rng.permutation(len(edge))]
    feature, threshold, leaf = det._feature, det._threshold, det._leaf
    assert feature is not None and threshold is not None and leaf is not None
    expect = np.zeros(len(rows))
    for t in range(feature.shape[0]):
        for r, x in enumerate(rows):
            k = 0
            for _ in range(det._depth):
                k = 2 * k + 1 + int(x[feature[t, k]] > threshold[t, k])
            expect[r] += leaf[t, k - (1 << det._depth) + 1]
    np.testing.assert_allclose(det.path_lengths(rows), expect / feature.shape[0], atol=1e-12)


def test_nan_empty_and_shape_errors(matrices: tuple[np.ndarray, np.ndarray]) -> None:
    X_train, _ = matrices
    det, _ = fitted(X_train)
    assert det.score(np.empty((0, X_train.shape[1]), np.float32)).shape == (0,)
    row = X_train[:1].copy()
    row[0, :] = np.nan
    s = det.score(row)
    assert np.isfinite(s).all() and s[0] == det.score(row)[0]  # deterministic: NaN goes left
    zeros = np.zeros((2, X_train.shape[1]), np.float32)
    zeros[1] = -0.0
    assert det.score(zeros)[0] == det.score(zeros)[1]  # -0.0 == 0.0 as floats, and as keys
    with pytest.raises(ModelError, match="expected"):
        det.score(X_train[:, :5])
    with pytest.raises(ModelError, match="not fitted"):
        IsolationForestDetector().score(X_train)


def test_state_round_trip_and_rejection(matrices: tuple[np.ndarray, np.ndarray]) -> None:
    X_train, X_test = matrices
    det, _ = fitted(X_train)
    params, arrays = det.to_state()
    again = IsolationForestDetector.from_state(params, arrays)
    np.testing.assert_array_equal(again.score(X_test), det.score(X_test))
    with pytest.raises(ModelError, match="threshold"):
        IsolationForestDetector.from_state(
            params, arrays | {"threshold": arrays["threshold"][:, :3]}
        )
    with pytest.raises(ModelError, match="feature columns that do not exist"):
        IsolationForestDetector.from_state(params | {"n_features": 2}, arrays)
    with pytest.raises(ModelError, match="incomplete"):
        IsolationForestDetector.from_state(
            {k: v for k, v in params.items() if k != "depth"}, arrays
        )
    with pytest.raises(ModelError, match="leaf"):
        IsolationForestDetector.from_state(
            params, arrays | {"leaf": arrays["leaf"].astype(np.float32)}
        )
