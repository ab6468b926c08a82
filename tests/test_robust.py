"""Training on traffic that may hold attacks (netanomd.model.robust), on the bundled real captures:
a RemcosRAT exfiltration capture whose attack flows outnumber its benign ones 16 to 1 is the
day-one case where fitting on raw volume learns the attack as normal."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from netanomd.data import attack_files, baseline_files
from netanomd.detectors.iforest import IsolationForestDetector
from netanomd.detectors.registry import make
from netanomd.errors import ModelError
from netanomd.evaluation.data import LabeledData, load_flows
from netanomd.evaluation.protocols import run_protocol
from netanomd.features import FlowFeatures
from netanomd.flow import FlowBatch
from netanomd.model import train
from netanomd.model.robust import distinct_behaviours, fit_robust
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches


@pytest.fixture(scope="module")
def remcos() -> LabeledData:
    return load_flows("remcos", [next(p for p in attack_files() if "remcos" in p.name)])


def test_distinct_behaviours_keys_on_rounded_leading_columns() -> None:
    X = np.array(
        [[1.2, 0.0, 9.0], [0.8, 0.0, 5.0], [1.6, 0.0, 9.0], [1.2, 1.0, 9.0], [0.9, 0.0, 1.0]],
        dtype=np.float32,
    )
    # Rows 0, 1 and 4 round to (1, 0); row 2 to (2, 0); row 3 to (1, 1). The third column
    # is not part of the key, and the first row of each behaviour is the one kept.
    assert distinct_behaviours(X, key_columns=2).tolist() == [0, 2, 3]
    assert distinct_behaviours(X).tolist() == [0, 1, 2, 3, 4]
    assert distinct_behaviours(X[:0]).tolist() == []


def test_flood_in_training_data_defines_normal_unless_behaviours_are_distinct(
    remcos: LabeledData,
) -> None:
    counts = remcos.counts()
    assert counts["malicious"] > 10 * counts["benign"]
    assert remcos.ts is not None
    half = np.argsort(remcos.ts)[: len(remcos.y) // 2]
    Xtr = np.ascontiguousarray(remcos.X[half])
    n_flow = remcos.X_flow.shape[1]
    keep = distinct_behaviours(Xtr, n_flow)
    assert 3 <= len(keep) < len(Xtr) // 10
    y = remcos.y
    verdicts = {}
    for distinct in (False, True):
        det = IsolationForestDetector(random_state=0)
        fit = fit_robust(det, Xtr, distinct=distinct, key_columns=n_flow)
        assert fit.info["distinct"] is distinct and len(fit.scores) == len(Xtr)
        assert len(fit.behaviour_scores) == (len(keep) if distinct else len(Xtr))
        s = det.score(np.ascontiguousarray(remcos.X))
        verdicts[distinct] = float(np.median(s[y == 1]) - np.median(s[y == 0]))
    # On raw volume the exfiltration flows score as *more* normal than the benign ones;
    # on distinct behaviours they score as more anomalous.
    assert verdicts[False] < 0 < verdicts[True]


def test_contaminated_protocol_beats_plain_iforest_on_attack_majority_capture(
    remcos: LabeledData,
) -> None:
    ours, plain = run_protocol(remcos, "contaminated", lambda: make("iforest"), importance=False)
    assert ours.threshold_rule["training"]["distinct"] is True
    assert plain.roc_auc is not None and plain.roc_auc < 0.5
    assert ours.roc_auc is not None and ours.roc_auc > 0.9
    assert ours.pr_auc is not None and plain.pr_auc is not None and ours.pr_auc > plain.pr_auc
    # Its early window has too few benign flows for a clean baseline, and says so.
    clean = run_protocol(remcos, "clean", lambda: make("iforest"), importance=False)[0]
    assert clean.status == "skipped: 22 training rows in the clean window"


def test_train_records_how_the_detector_was_fitted() -> None:
    def batches() -> Iterator[FlowBatch]:
        return read_batches([str(p) for p in baseline_files()], ReadStats())

    unvetted = train(batches(), seed=0)
    fit = unvetted.meta["threshold_rule"]["training"]
    assert fit["vetted"] is False and fit["distinct"] is True
    assert 50 < fit["behaviours"] < fit["rows"] == 7124
    vetted = train(batches(), vetted=True, seed=0)
    fit = vetted.meta["threshold_rule"]["training"]
    assert fit["vetted"] is True and fit["distinct"] is False and "behaviours" not in fit


def test_kmeans_needs_three_rows() -> None:
    X = np.random.default_rng(0).random((3, 4)).astype(np.float32)
    det = make("kmeans")
    with pytest.raises(ModelError, match="at least 3"):
        det.fit(X[:2])
    det.fit(X)
    assert det.score(X).shape == (3,)


def test_day_one_model_alerts_on_a_flood_whose_behaviour_is_odd() -> None:
    """Trained on the RemcosRAT capture itself (day one, unvetted), the quantile threshold is
    taken over behaviours: the exfiltration, 94% of the flows, still alerts."""
    path = next(p for p in attack_files() if "remcos" in p.name)
    batch = FlowBatch.concat(list(read_batches([str(path)], ReadStats())))
    model = train([batch], seed=0, threshold_quantile=0.995)
    X = model.features(batch)
    model.reset()
    scores = model.score(batch)
    behaviours = distinct_behaviours(X, len(FlowFeatures().names))
    assert model.threshold == pytest.approx(np.quantile(scores[behaviours], 0.995))
    malicious = np.asarray(batch.column("label").to_pylist()) == "Malicious"
    alerts = scores >= model.threshold
    assert alerts[malicious].mean() > 0.95 and alerts[~malicious].sum() <= 2
    # Over every flow instead, the same quantile would let nearly all of it through.
    assert (scores >= np.quantile(scores, 0.995))[malicious].mean() < 0.1
