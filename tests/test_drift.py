"""Drift against the training window on real captures: a model trained on every other half
hour of the benign CTU-SME-11 day sees the other half hours as its own network, and the
attack captures (NjRAT C&C, RemcosRAT exfiltration, other networks) as drifted."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from netanomd.data import attack_files, baseline_files
from netanomd.errors import ModelError
from netanomd.flow import FlowBatch
from netanomd.model import Model, train
from netanomd.model.drift import (
    DRIFT_PSI,
    ColumnSummary,
    DriftMonitor,
    DriftReport,
    measure,
    model_age,
    summary_of,
)
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches


def read(paths: list[Path]) -> FlowBatch:
    return FlowBatch.concat(list(read_batches([str(p) for p in paths], ReadStats())))


@pytest.fixture(scope="module")
def split() -> tuple[Model, FlowBatch]:
    """(model trained on the even half hours of the benign day, the odd half hours)."""
    day = read(baseline_files())
    ts = day.numeric("ts")
    half_hour = ((ts - ts.min()) // 1800).astype(np.int64)
    model = train([day.take(np.flatnonzero(half_hour % 2 == 0))], seed=0)
    return model, day.take(np.flatnonzero(half_hour % 2 == 1))


def drift_of(model: Model, batch: FlowBatch) -> DriftReport:
    window = summary_of(model.meta)
    assert window is not None
    model.reset()
    X = model.features(batch)
    return measure(window, model.feature_names, X, model.detector.score(X))


def test_benign_day_is_stable_and_attack_captures_drift(split: tuple[Model, FlowBatch]) -> None:
    model, rest = split
    benign = drift_of(model, rest)
    assert benign.rows == len(rest) and not benign.flagged, benign.to_dict()
    assert benign.warning() is None
    assert benign.score_psi < DRIFT_PSI
    for path in attack_files():
        attack = drift_of(model, read([path]))
        assert attack.flagged, (path.name, attack.to_dict())
        # The score distribution moved far more than on the benign half hours.
        assert attack.score_psi > 10 * benign.score_psi, path.name
        assert len(attack.drifted) > 3 * len(benign.drifted), path.name
        warning = attack.warning()
        assert warning is not None and "netanomd retrain" in warning
        assert attack.drifted[0] in warning


def test_summary_survives_save_and_load(split: tuple[Model, FlowBatch], tmp_path: Path) -> None:
    model, rest = split
    model.save(tmp_path / "m.npz")
    loaded = Model.load(tmp_path / "m.npz")
    assert loaded.model_id == model.model_id
    assert drift_of(loaded, rest).to_dict() == drift_of(model, rest).to_dict()


def test_a_tied_column_still_shows_its_change() -> None:
    """A column always 0 in training: one cut point, and moving off it is drift."""
    col = ColumnSummary.fit(np.zeros(1000))
    assert list(col.edges) == [0.0] and col.psi(np.zeros(500)) == pytest.approx(0.0)
    assert col.psi(np.ones(500)) > DRIFT_PSI
    assert col.psi(np.r_[np.zeros(490), np.ones(10)]) < DRIFT_PSI


def test_bad_stored_summary_is_named() -> None:
    with pytest.raises(ModelError, match="drift summary of feature x: 2 shares for 1 cut points"):
        summary_of(
            {
                "drift": {
                    "rows": 1,
                    "score": {"edges": [0.0], "shares": [0.0, 1.0, 0.0]},
                    "features": {"x": {"edges": [1.0], "shares": [0.5, 0.5]}},
                }
            }
        )


def test_daemon_monitor_flags_an_attack_on_flow_columns_and_score(
    split: tuple[Model, FlowBatch], caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon's monitor (a sample of the day's flows, per-flow columns and the score),
    measured by passes every ``every`` seconds of the caller's clock: quiet on the benign half
    hours, flagged (a warning logged once, at the crossing) once the attack capture arrives."""
    model, rest = split
    monitor = DriftMonitor(cap=3000, every=300.0)
    stream = model.stream()
    for i in range(0, len(rest), 500):
        part = rest.slice(i, 500)
        monitor.observe(part, stream.process(part)[0])
    assert monitor.latest is None  # nothing is measured until a pass
    benign = monitor.check(model, now=1000.0)
    assert benign is not None and monitor.latest is benign
    assert 1500 <= benign.rows <= 3000 and not benign.flagged, benign.to_dict()
    assert monitor.rate == 0.5  # thinned once: a uniform sample of the whole stretch
    assert benign.model_age_seconds == 0.0  # trained "after" now: never negative
    assert "host_log_dsts" not in benign.feature_psi  # host columns need whole streams
    attack = read([next(p for p in attack_files() if "njrat" in p.name)])
    for i in range(0, len(attack), 500):
        part = attack.slice(i, 500)
        monitor.observe(part, stream.process(part)[0])
    with caplog.at_level(logging.INFO, logger="netanomd.model.drift"):
        assert monitor.check(model, now=1299.0) is None  # not due: the last pass stands
        assert monitor.latest is benign and monitor.passes == 1
        drifted = monitor.check(model, now=1300.0)
        assert monitor.check(model, now=1600.0) is not None  # still drifted: no new warning
    assert drifted is not None and monitor.latest is not benign and monitor.passes == 3
    # a sixth of the sample is the attack: flagged, on the score distribution
    assert drifted.flagged and drifted.score_psi > DRIFT_PSI > benign.score_psi, drifted.to_dict()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "traffic drifted" in warnings[0].getMessage()
    assert f"model {model.model_id}: " in warnings[0].getMessage()


def test_monitor_pass_interval_must_be_positive() -> None:
    with pytest.raises(ModelError, match=r"a pass every 0\.0 seconds"):
        DriftMonitor(every=0.0)


def test_model_age_is_from_training_time() -> None:
    assert model_age({"created_at": "2026-01-01T00:00:00+00:00"}, 1767312000.0) == 86400.0
    assert model_age({}, 0.0) is None


def test_monitor_keeps_few_parts_of_many_small_batches(split: tuple[Model, FlowBatch]) -> None:
    """A live daemon hands the monitor thousands of small batches: neighbours are merged, so
    thinning and reading the sample are a few table operations, and the sample is every flow
    observed, in order, while it is under the cap."""
    from netanomd.model.drift import MAX_PARTS

    _, rest = split
    monitor = DriftMonitor(cap=len(rest) + 1, every=300.0)
    for i in range(0, len(rest), 5):
        part = rest.slice(i, 5)
        monitor.observe(part, part.numeric("duration"))
    assert len(rest) // 5 > 10 * MAX_PARTS and monitor.rate == 1.0
    assert len(monitor._parts) <= MAX_PARTS + 1
    assert np.array_equal(monitor.scores(), rest.numeric("duration"))
    small = DriftMonitor(cap=len(rest) // 3, every=300.0)
    for i in range(0, len(rest), 5):
        part = rest.slice(i, 5)
        small.observe(part, part.numeric("duration"))
    assert small.rate < 1.0 and len(small._parts) <= MAX_PARTS + 1
    assert len(small.scores()) <= small.cap


def test_a_thinned_sample_keeps_each_flow_with_its_score(split: tuple[Model, FlowBatch]) -> None:
    """Batches are sampled and thinned by row number, their rows copied only when parts are
    merged: the flows read back are the sampled ones, each with its own score (the flow's
    duration here), in order, and the batches held stay within twice the cap."""
    from netanomd.model.drift import _merged

    _, rest = split
    at = rest.table.schema.get_field_index("missed_bytes")  # (a column the sample keeps)
    numbered = pa.array(range(len(rest)), pa.int64())
    rest = FlowBatch(rest.table.set_column(at, rest.table.schema.field(at), numbered))
    monitor = DriftMonitor(cap=len(rest) // 8, every=300.0)
    held = []
    for i in range(0, len(rest), 50):
        part = rest.slice(i, 50)
        monitor.observe(part, part.numeric("duration"))
        held.append(sum(len(b) for _, b, _, _ in monitor._parts))
    assert monitor.rate <= 0.125 and max(held) <= 2 * monitor.cap + 50
    _, batch, scores, _ = _merged(list(monitor._parts))
    assert 0 < len(batch) <= monitor.cap and len(scores) == len(batch)
    assert np.array_equal(batch.numeric("duration"), scores)
    rows = batch.numeric("missed_bytes").astype(np.int64).tolist()
    assert len(set(rows)) == len(rows) and rows == sorted(rows)
    assert batch.column("uid").null_count == len(batch)  # not kept: drift never reads it
