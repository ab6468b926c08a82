"""One-sided floors (netanomd.features.floors) on a real IoT-23 Mirai capture
(provenance: tests/data/SOURCE.txt)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netanomd.detectors.iforest import IsolationForestDetector
from netanomd.detectors.registry import make
from netanomd.evaluation.data import LabeledData, load_flows
from netanomd.evaluation.protocols import run_protocol, split
from netanomd.features import Floors
from netanomd.features.host_block import NAMES as HOST_NAMES
from netanomd.flow import FlowBatch
from netanomd.model import train
from netanomd.sources.files import open_source

MIRAI = Path(__file__).parent / "data" / "zeek" / "iot23-44-1.csv"


@pytest.fixture(scope="module")
def mirai() -> LabeledData:
    return load_flows("iot23-44-1", [MIRAI])


def clean_window(data: LabeledData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Benign training rows (host features without the attack) and the test rows, labels."""
    sp = split(data)
    train_rows = np.zeros(len(data.y), dtype=bool)
    train_rows[sp.train] = True
    train_rows &= data.y == 0
    assert data.X_benign_stream is not None
    return data.X_benign_stream[train_rows], data.X[sp.test], data.y[sp.test]


def test_floors_raise_only_the_one_sided_host_columns(mirai: LabeledData) -> None:
    Xtr, Xte, _ = clean_window(mirai)
    floors = Floors.fit(mirai.feature_names, Xtr)
    assert floors.columns == tuple(n for n in HOST_NAMES if n != "host_out_in")
    cols = [mirai.feature_names.index(c) for c in floors.columns]
    np.testing.assert_allclose(floors.values, np.median(Xtr[:, cols], axis=0))
    before = Xte.copy()
    out = floors.apply(Xte)
    np.testing.assert_array_equal(Xte, before)  # the input is left alone
    other = [j for j in range(Xte.shape[1]) if j not in cols]
    np.testing.assert_array_equal(out[:, other], Xte[:, other])
    np.testing.assert_array_equal(out[:, cols], np.maximum(Xte[:, cols], floors.values))
    assert (out[:, cols] > Xte[:, cols]).any() and (out[:, cols] == Xte[:, cols]).any()
    # Feature sets without one-sided columns (per-flow only, tabular) are left as they are.
    flow_only = Floors.fit(mirai.feature_names[: mirai.X_flow.shape[1]], mirai.X_flow)
    assert flow_only.columns == () and flow_only.apply(mirai.X_flow) is mirai.X_flow


def test_a_quiet_host_no_longer_outranks_the_cc_flow(mirai: LabeledData) -> None:
    """The test window's one malicious flow (a Mirai C&C) against benign UDP flows from hosts in
    a quiet spell: unfloored, one of those outranks it for some seeds; floored, never."""
    Xtr, Xte, yt = clean_window(mirai)
    assert (yt == 1).sum() == 1
    floors = Floors.fit(mirai.feature_names, Xtr)
    above = {False: [], True: []}
    for seed in range(8):
        for floored in (False, True):
            det = IsolationForestDetector(random_state=seed)
            det.fit(floors.apply(Xtr) if floored else Xtr)
            s = det.score(floors.apply(Xte) if floored else Xte)
            above[floored].append(int((s[yt == 0] >= s[yt == 1].max()).sum()))
    assert sum(n > 0 for n in above[False]) >= 2
    assert above[True] == [0] * 8
    # The evaluation's clean protocol floors as a model does: the C&C flow ranks first.
    for seed in range(3):
        ours, _ = run_protocol(mirai, "clean", lambda: make("iforest"), seed=seed, importance=False)
        assert ours.test_malicious == 1 and ours.pr_auc == 1.0


def test_model_explanations_never_blame_a_host_for_doing_less() -> None:
    batch = FlowBatch.concat(list(open_source(str(MIRAI)).batches()))
    model = train([batch], seed=0, vetted=True)
    assert len(model.floors.columns) == 6
    reasons = [c for row in model.explain(batch) for c in row]
    one_sided = set(model.floors.columns)
    blamed = [c for c in reasons if c.feature in one_sided]
    # Host columns are blamed, but only ever for being above their baseline.
    assert blamed and all(c.direction == "above" for c in blamed)
    model.reset()
    unfloored = model.baselines.explain(model.spec.transform(batch))
    assert any(c.direction == "below" and c.feature in one_sided for r in unfloored for c in r)
