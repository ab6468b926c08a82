"""Evaluation on the bundled real captures (CTU-SME-11 benign day, RemcosRAT, NjRAT): both
protocols, thresholds never chosen on test labels, Background left out and counted, report
with pictures, JSON and Markdown; NSL-KDD and CICFlowMeter loaders; the CLI end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from netanomd.cli import main
from netanomd.data import attack_files, baseline_files
from netanomd.detectors.registry import make
from netanomd.errors import InputError
from netanomd.evaluation.data import LabeledData, label_values, load_flows, load_nsl_kdd
from netanomd.evaluation.protocols import run_protocol, split

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def demo() -> LabeledData:
    return load_flows("demo", baseline_files() + attack_files())


def test_labels_and_exclusions() -> None:
    y, excluded = label_values(
        ["Benign", "Malicious", "Background", None, "normal", "neptune", "unknown"]
    )
    assert y.tolist() == [0, 1, -1, -1, 0, 1, -1]
    assert excluded == {"background": 1, "(none)": 1, "unknown": 1}


def test_protocols_on_real_captures(demo: LabeledData) -> None:
    assert demo.counts() == {"rows": 8882, "benign": 6849, "malicious": 963, "excluded": 1070}
    sp = split(demo)
    assert demo.ts is not None and sp.how == "time order"
    assert demo.ts[sp.train].max() <= demo.ts[sp.valid].min() <= demo.ts[sp.test].min()
    for proto in ("clean", "contaminated"):
        ours, plain = run_protocol(demo, proto, lambda: make("iforest"))
        for r in (ours, plain):
            assert r.status == "ok" and r.test_rows == len(sp.test)
            assert r.test_benign + r.test_malicious + r.test_excluded == r.test_rows
            assert r.test_excluded > 0 and r.roc_auc is not None and r.roc_auc > 0.9
            # The threshold comes from the validation split or the training rule, not the test.
            assert r.threshold_rule["method"] in ("validation_f1", "quantile")
            c = r.confusion
            assert c["tp"] + c["fn"] == r.test_malicious and c["fp"] + c["tn"] == r.test_benign
        # Unvetted (contaminated) training data is fitted on its distinct behaviours.
        assert ours.threshold_rule["training"]["distinct"] is (proto == "contaminated")
        clean_train = (demo.y[sp.train] == 0).sum()
        assert ours.train_rows == (clean_train if proto == "clean" else len(sp.train))


def test_nsl_kdd_loader(tmp_path: Path) -> None:
    row = "0,tcp,http,SF,181,5450,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,8,8,0.00,0.00,0.00,0.00,1.00,0.00,0.00,9,9,1.00,0.00,0.11,0.00,0.00,0.00,0.00,0.00,{},21\n"  # noqa: E501
    train = tmp_path / "train.txt"
    train.write_text(row.format("normal") * 3 + row.format("neptune").replace("SF", "S0") * 2)
    data = load_nsl_kdd("kdd", train, train)
    assert data.y.tolist() == [0, 0, 0, 1, 1] and data.test_y is not None
    assert "flag=S0" in data.feature_names and data.X.shape[0] == 5
    bad = tmp_path / "bad.txt"
    bad.write_text(row.format("normal") + "0,tcp,http\n")
    with pytest.raises(InputError, match=r"bad.txt:2: expected 43"):
        load_nsl_kdd("kdd", bad, bad)


def test_evaluate_command_writes_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = ",".join(str(p) for p in baseline_files() + attack_files())
    md = tmp_path / "evaluation.md"
    rc = main(
        [
            "evaluate",
            "--flows",
            f"demo={files}",
            "--cic",
            f"cic={DATA / 'cic/portscan-head50.csv'}",
            "--out",
            str(tmp_path / "out"),
            "--markdown",
            str(md),
            "--repeats",
            "2",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert re.search(r"ranking: clean ROC-AUC 0\.9\d\d", out)
    # The headline is the deployed operating point, flow and incident level, oracle F1 last.
    assert re.search(r"demo: clean flows P [\d.-]+ R [\d.]+ F1 [\d.]+, incidents P ", out)
    assert "oracle F1" in out
    html = (tmp_path / "out/report.html").read_text()
    assert len(re.findall(r"<img src='data:image/png;base64,", html)) >= 8
    results = json.loads((tmp_path / "out/results.json").read_text())
    demo = next(e for e in results if e["dataset"] == "demo")
    assert {(r["protocol"], r["model"]) for r in demo["results"]} == {
        (p, m) for p in ("clean", "contaminated") for m in ("netanomd", "plain_iforest")
    }
    ours = next(r for r in demo["results"] if (r["protocol"], r["model"]) == ("clean", "netanomd"))
    assert ours["recall_by_type"] and ours["importance"]
    text = md.read_text()
    assert "## demo" in text and "| clean | netanomd | 0.9" in text
    assert text.index("## Headline: what a deployed sensor reports") < text.index("oracle")
    assert "P (oracle)" in text and "F1 (oracle)" in text
    dep = {d["protocol"]: d for d in demo["deployed"]}
    assert set(dep) == {"clean", "contaminated"} and dep["clean"]["status"] == "ok"
    clean = dep["clean"]
    # The bundled RATs' C&C hosts are found by incidents, whatever the flow threshold does.
    assert clean["hosts_found"] >= 1 and clean["incident"]["recall"] >= clean["flow"]["recall"]
    assert clean["oracle_f1"] == ours["f1"]
    assert f"| demo | clean | {clean['flow']['precision']:.3f} / " in text
    cic = next(e for e in results if e["dataset"] == "cic")
    assert all(d["status"].startswith("not a timed flow log") for d in cic["deployed"])
    # Both models ran twice; the summary compares their mean PR-AUC, with the spread.
    for r in demo["results"]:
        assert len(r["runs"]["pr_auc"]) == 2 and r["runs"]["pr_auc"][0] == r["pr_auc"]
    row = re.search(
        r"^\| demo \| contaminated \| (0\.\d+) ± \d\.\d+ / (0\.\d+) ± .*\| (\w+) \|$", text, re.M
    )
    assert row is not None and row.group(3) in ("beats", "ties", "loses")
    pr = {
        r["model"]: np.mean(r["runs"]["pr_auc"])
        for r in demo["results"]
        if r["protocol"] == "contaminated"
    }
    assert float(row.group(2)) == pytest.approx(pr["netanomd"], abs=5e-4)
    d = pr["netanomd"] - pr["plain_iforest"]
    assert row.group(3) == ("beats" if d >= 0.0005 else "ties" if d > -0.0005 else "loses")
    assert np.isfinite(ours["alerts_per_10k"])


def test_clean_baseline_host_features_exclude_the_attacks_flows() -> None:
    """RemcosRAT's benign and exfiltration flows share an originator: in a clean period the
    exfiltration would not have been there, so the benign rows' host features differ."""
    data = load_flows("remcos", [next(p for p in attack_files() if "remcos" in p.name)])
    Xb = data.X_benign_stream
    assert Xb is not None and Xb.shape == data.X.shape
    benign, n_flow = data.y == 0, data.X_flow.shape[1]
    assert np.isnan(Xb[~benign]).all() and np.isfinite(Xb[benign]).all()
    np.testing.assert_array_equal(Xb[benign, :n_flow], data.X[benign, :n_flow])
    rate = data.feature_names.index("host_log_rate")
    alone, mixed = Xb[benign, rate], data.X[benign, rate]
    assert (alone < mixed).mean() > 0.3 and (alone > mixed).sum() == 0
    assert alone.mean() < mixed.mean() - 0.5
