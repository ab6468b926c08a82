"""Model artifact: train on the bundled real baseline, round-trip, refuse what does not match."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netanomd.data import attack_files, baseline_files
from netanomd.decision import thresholds
from netanomd.errors import ModelError
from netanomd.features import FlowFeatures
from netanomd.flow import FlowBatch
from netanomd.model import DEFAULT_THRESHOLD_QUANTILE, Model, train
from netanomd.model.robust import distinct_behaviours
from netanomd.sources.files import open_source


def read_all(path: Path) -> FlowBatch:
    return FlowBatch.concat(list(open_source(str(path)).batches()))


@pytest.fixture(scope="module")
def baseline() -> FlowBatch:
    return read_all(baseline_files()[0])


@pytest.fixture(scope="module")
def model(baseline: FlowBatch) -> Model:
    # The quantile rule: these tests are about scoring and explaining on its scale.
    return train(
        [baseline], seed=1, files=["ctu-sme-11"], threshold_quantile=DEFAULT_THRESHOLD_QUANTILE
    )


@pytest.fixture(scope="module")
def remcos() -> FlowBatch:
    return read_all(next(p for p in attack_files() if "remcos" in p.name))


def test_threshold_is_training_quantile(model: Model, baseline: FlowBatch) -> None:
    X = model.features(baseline)
    model.reset()
    scores = model.score(baseline)
    assert len(scores) == len(baseline) == 7124
    # Unvetted training: the quantile is over the distinct behaviours the detector was fitted on.
    rows = distinct_behaviours(X, len(FlowFeatures().names))
    assert len(rows) == model.meta["threshold_rule"]["training"]["behaviours"]
    q = np.quantile(scores[rows], DEFAULT_THRESHOLD_QUANTILE)
    assert model.threshold == pytest.approx(q)
    # On this benign day about 1 training flow in 250 reaches it (29 of 7,124).
    share = float(np.mean(scores >= model.threshold))
    assert 0.001 <= share <= 0.01
    summary = model.meta["training"]
    assert summary["rows"] == 7124 and summary["sources"] == {"zeek": 7124}
    assert summary["ts_min"] < summary["ts_max"]
    assert set(model.meta["libraries"]) >= {"netanomd", "numpy", "sklearn", "numba", "pyarrow"}


def test_default_threshold_is_the_incident_budget(baseline: FlowBatch) -> None:
    """No flags: the lowest threshold (in the top 5% of training behaviours) whose training
    alerts, grouped per host, stay within the incident budget."""
    model = train([baseline], seed=1)
    rule = model.meta["threshold_rule"]
    assert rule["method"] == "incident_budget" and model.operating is not None
    assert rule["incidents_per_day"] == model.operating.incidents_per_day
    X = model.features(baseline)
    model.reset()
    scores = model.score(baseline)
    behaviours = scores[distinct_behaviours(X, len(FlowFeatures().names))]
    assert np.quantile(behaviours, 0.95) - 1e-6 <= model.threshold <= behaviours.max() + 1e-6
    hosts = np.unique(baseline.column("orig_h").to_pylist(), return_inverse=True)[1]
    ts = baseline.numeric("ts")
    quiet = model.operating.quiet
    found = thresholds.incidents_at(model.threshold, scores, hosts, ts, quiet)
    days = max((ts.max() - ts.min()) / 86400.0, 1 / 24)
    assert found == rule["training_incidents"] and found <= rule["incidents_per_day"] * days
    # One step lower would have broken the budget (unless the floor was reached).
    if rule["quantile"] > 0.95:
        lower = np.quantile(behaviours, rule["quantile"] - 0.0005)
        assert thresholds.incidents_at(lower, scores, hosts, ts, quiet) > found


def test_attacks_score_higher_than_baseline(model: Model, remcos: FlowBatch) -> None:
    scores, alerts = model.run(remcos)
    labels = np.asarray(remcos.column("label").to_pylist())
    mal = scores[labels == "Malicious"]
    assert np.median(mal) > model.threshold
    assert len(alerts) >= 0.5 * (labels == "Malicious").sum()
    # Every alert is explained by at least one feature outside the training distribution.
    assert all(a.contributions for a in alerts)
    rej = [a for a in alerts if a.flow.conn_state == "REJ"]
    assert rej and any("REJ" in a.reason for a in rej)


def test_round_trip(tmp_path: Path, model: Model, remcos: FlowBatch) -> None:
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = Model.load(path)
    assert loaded.model_id == model.model_id
    assert loaded.threshold == model.threshold
    assert loaded.feature_names == model.feature_names
    assert loaded.floors.columns == model.floors.columns and len(model.floors.columns) == 6
    np.testing.assert_array_equal(loaded.floors.values, model.floors.values)
    model.reset()  # scoring is a stream (host windows): compare from the same fresh state
    np.testing.assert_array_equal(loaded.score(remcos), model.score(remcos))
    model.reset()
    loaded.reset()
    a1 = model.run(remcos)[1]
    a2 = loaded.run(remcos)[1]
    assert [a.alert_id for a in a1] == [a.alert_id for a in a2]
    assert [a.reason for a in a1] == [a.reason for a in a2]


def _rewrite(
    src: Path, dst: Path, edit_meta=None, drop: str | None = None, fix_id: bool = True
) -> None:  # type: ignore[no-untyped-def]
    """Copy an artifact, changing meta.json and recomputing the digest (a careful forger) and,
    with ``fix_id``, the model id's content part too."""
    from netanomd.model.artifact import ID_DIGITS, _content_digest, _digest

    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.pop("digest")
    if edit_meta:
        meta = json.loads(bytes(arrays["meta.json"]))
        edit_meta(meta)
        arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    if drop:
        arrays.pop(drop)
    if fix_id:
        meta = json.loads(bytes(arrays["meta.json"]))
        prefix = meta["model_id"].rsplit("-", 1)[0]
        meta["model_id"] = f"{prefix}-{_content_digest(arrays)[:ID_DIGITS]}"
        arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    arrays["digest"] = np.frombuffer(_digest(arrays).encode(), dtype=np.uint8)
    with open(dst, "wb") as fh:
        np.savez(fh, **arrays)


def test_refuses_mismatch(tmp_path: Path, model: Model) -> None:
    good = tmp_path / "good.npz"
    model.save(good)

    bad = tmp_path / "names.npz"
    _rewrite(good, bad, lambda m: m["features"]["names"].reverse())
    with pytest.raises(ModelError, match="feature names"):
        Model.load(bad)

    _rewrite(good, bad, lambda m: m.update(format_version=99))
    with pytest.raises(ModelError, match="format version 99, this netanomd reads versions 1, 2, 3"):
        Model.load(bad)

    _rewrite(good, bad, lambda m: m["detector"].update(kind="magic"))
    with pytest.raises(ModelError, match="unknown detector kind 'magic'"):
        Model.load(bad)

    _rewrite(good, bad, drop="baseline/hi")
    with pytest.raises(ModelError, match="incomplete"):
        Model.load(bad)

    _rewrite(good, bad, lambda m: m["floors"]["columns"].__setitem__(0, "nope"))
    with pytest.raises(ModelError, match="floors name columns the features lack: nope"):
        Model.load(bad)


def test_model_id_names_one_content(tmp_path: Path, model: Model) -> None:
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    model.save(good)
    assert Model.load(good).model_id == model.model_id
    assert model.model_id.endswith("-" + model.content_digest()[:12])

    def lower_threshold(meta: dict[str, Any]) -> None:
        meta["threshold"] = 0.1

    # a forger who recomputes the file digest but keeps the id it claims
    _rewrite(good, bad, lower_threshold, fix_id=False)
    with pytest.raises(ModelError, match="does not match the model's content"):
        Model.load(bad)
    _rewrite(good, bad, lambda m: m.update(model_id="iforest-20250101T000000Z-0123456789ab"))
    # the name part is free; the content part is the content's
    assert Model.load(bad).model_id == "iforest-20250101T000000Z-" + model.model_id[-12:]


def test_refuses_a_detector_of_another_width(tmp_path: Path, model: Model) -> None:
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    model.save(good)
    _rewrite(good, bad, lambda m: m["detector"]["params"].update(n_features=62))
    with pytest.raises(ModelError, match="cannot score the 57 feature columns"):
        Model.load(bad)


def test_refuses_state_too_large_to_allocate(tmp_path: Path, model: Model) -> None:
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    model.save(good)

    def huge(meta: dict[str, Any]) -> None:
        for block in meta["features"]["blocks"]:
            if block["kind"] == "host":
                block["state"].update(depth=4096, max_hosts=2**24)

    _rewrite(good, bad, huge)
    with pytest.raises(ModelError, match="out of range"):
        Model.load(bad)


def test_refuses_an_archive_that_expands_too_far(tmp_path: Path) -> None:
    from netanomd.model.artifact import MAX_UNCOMPRESSED

    bomb = tmp_path / "bomb.npz"
    chunk = bytes(1 << 20)
    with (
        zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        zf.open("detector/leaf.npy", "w", force_zip64=True) as fh,
    ):
        for _ in range((MAX_UNCOMPRESSED >> 20) + 1):
            fh.write(chunk)
    assert bomb.stat().st_size < 2 << 20
    with pytest.raises(ModelError, match="expands to"):
        Model.load(bomb)


def test_artifact_without_floors_scores_unfloored(
    tmp_path: Path, model: Model, remcos: FlowBatch
) -> None:
    """Version 1 artifacts, written before one-sided floors existed, still load and score as
    they did; a version 2 artifact without its floors is incomplete."""
    good, old = tmp_path / "good.npz", tmp_path / "old.npz"
    model.save(good)

    def version_1(meta: dict[str, Any]) -> None:
        meta.pop("floors")
        meta["format_version"] = 1

    _rewrite(good, old, lambda m: m.pop("floors"), drop="floors/values")
    with pytest.raises(ModelError, match="incomplete model artifact"):
        Model.load(old)
    _rewrite(good, old, version_1, drop="floors/values")
    loaded = Model.load(old)
    assert loaded.floors.columns == ()
    model.reset()  # a fresh stream, like the just-loaded model's
    raw = model.spec.transform(remcos)
    model.reset()
    assert (model.floors.apply(raw) != raw).any()  # the floors would have moved something
    np.testing.assert_array_equal(loaded.features(remcos), raw)
    loaded.reset()
    np.testing.assert_array_equal(loaded.score(remcos), model.detector.score(raw))


def test_refuses_tampered_and_foreign_files(tmp_path: Path, model: Model) -> None:
    good = tmp_path / "good.npz"
    model.save(good)
    # Change one array without fixing the digest.
    tampered = tmp_path / "tampered.npz"
    with np.load(good, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["baseline/hi"] = arrays["baseline/hi"] + 1.0
    with open(tampered, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(ModelError, match="digest mismatch"):
        Model.load(tampered)

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ModelError, match="not a netanomd model"):
        Model.load(text)
    with pytest.raises(ModelError, match="no such model file"):
        Model.load(tmp_path / "absent.npz")


class _Boom:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        import os

        return (os.mkdir, (str(Path(__file__).parent / "PWNED-BY-PICKLE"),))


def test_loading_never_unpickles(tmp_path: Path) -> None:
    """An artifact whose arrays are pickled objects is refused without running them."""
    marker = Path(__file__).parent / "PWNED-BY-PICKLE"
    evil = tmp_path / "evil.npz"
    with zipfile.ZipFile(evil, "w") as zf:
        with zf.open("meta.json.npy", "w") as fh:
            np.lib.format.write_array(fh, np.array([_Boom()], dtype=object), allow_pickle=True)
        zf.writestr("digest.npy", pickle.dumps(_Boom()))
    with pytest.raises(ModelError):
        Model.load(evil)
    assert not marker.exists()


def test_explanations_compare_with_the_flows_service(tmp_path: Path) -> None:
    """A DNS flow carrying 5 MB is judged against DNS's training p99, not all traffic's."""
    from netanomd.data import demo_model
    from netanomd.flow import FlowRecord

    model = demo_model()
    assert {"dns", "http", "ssl"} <= set(model.baselines.services)
    rec = FlowRecord(
        ts=1.0,
        uid="Cdnsbig",
        orig_h="192.168.1.20",
        orig_p=50000,
        resp_h="192.168.1.1",
        resp_p=53,
        proto="udp",
        service="dns",
        duration=30.0,
        orig_bytes=5_000_000,
        resp_bytes=900,
        conn_state="SF",
        local_orig=None,
        local_resp=None,
        missed_bytes=0,
        history="Dd",
        orig_pkts=4000,
        orig_ip_bytes=5_112_000,
        resp_pkts=10,
        resp_ip_bytes=1180,
        community_id=None,
        flow_id=None,
        source="test",
        label=None,
        detailed_label=None,
    )
    [contribs] = model.explain(FlowBatch.from_records([rec]))
    assert any(c.baseline_name == "p99 for dns" and c.direction == "above" for c in contribs)
    dns = model.baselines.services.index("dns")
    j = model.feature_names.index("log_orig_bytes")
    assert model.baselines.svc_q[dns, 2, j] < model.baselines.hi[j]  # DNS is smaller than all
    path = tmp_path / "m.npz"
    model.save(path)
    assert Model.load(path).baselines.services == model.baselines.services


def _fresh_python(code: str, *args: str) -> str:
    """Run ``code`` in a new interpreter that imports only what ``code`` imports."""
    repo = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(repo)}
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=repo,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_default_model_loads_in_a_fresh_process(tmp_path: Path, remcos: FlowBatch) -> None:
    """A model from plain ``netanomd train`` (flow + host features) loads and scores as a
    library, in a process that imported nothing else first (issue 13, point 1)."""
    path = tmp_path / "model.npz"
    base = str(baseline_files()[0])
    _fresh_python(
        "import sys; from netanomd.cli import main; "
        "sys.exit(main(['train', '-i', sys.argv[1], '-m', sys.argv[2]]))",
        base,
        str(path),
    )
    remcos_file = str(next(p for p in attack_files() if "remcos" in p.name))
    out = _fresh_python(
        "import json, sys\n"
        "from netanomd.model import Model\n"
        "m = Model.load(sys.argv[1])\n"
        "from netanomd.sources.files import open_source\n"
        "n = sum(len(m.run(b)[0]) for b in open_source(sys.argv[2]).batches())\n"
        "print(json.dumps({'blocks': [b.kind for b in m.spec.blocks], 'scored': n}))\n",
        str(path),
        remcos_file,
    )
    assert json.loads(out) == {"blocks": ["flow", "host"], "scored": len(remcos)}
