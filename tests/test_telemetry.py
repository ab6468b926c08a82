"""``netanomd metrics --csv``: offline metrics of the first seed's shape (timestamp, container,
cpu, memory, throughput, latency) with anomalies the test injects; the series file; and the
Grafana panels that show metric anomalies from the incidents Elasticsearch keeps."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netanomd.cli import main
from netanomd.errors import InputError
from netanomd.sinks.sqlite import IncidentQuery, query_incidents
from netanomd.telemetry.incidents import BEHAVIOUR
from netanomd.telemetry.series import DEFAULT_SERIES, entity_of, load_series
from tests.es_server import FakeElasticsearch

START = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
DASHBOARD = Path(__file__).parent.parent / "grafana/netanomd-dashboard.json"


def write_metrics(
    path: Path,
    steps: int,
    step: dt.timedelta,
    throughput: Any,
    spike: range = range(0),
    factor: float = 14.0,
    seed: int = 7,
) -> list[float]:
    """Two containers, web and db, with noisy cpu, memory, throughput and latency; web's
    throughput times ``factor`` (and its cpu times 3) during the ``spike`` steps. Returns the
    epoch seconds of every step. ``throughput(t)`` is the usual throughput at time ``t``."""
    rng = np.random.default_rng(seed)
    times = []
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["timestamp", "container", "cpu", "memory", "throughput", "latency"])
        for i in range(steps):
            t = START + i * step
            times.append(t.timestamp())
            for name in ("web", "db"):
                cpu = (20.0 if name == "web" else 35.0) * rng.normal(1, 0.05)
                tput = throughput(t) * rng.normal(1, 0.03)
                if name == "web" and i in spike:
                    tput, cpu = tput * factor, cpu * 3
                memory = 512 * rng.normal(1, 0.01)
                latency = 30 * rng.normal(1, 0.05)
                out.writerow(
                    [
                        t.isoformat(),
                        name,
                        f"{cpu:.2f}",
                        f"{memory:.1f}",
                        f"{tput:.1f}",
                        f"{latency:.2f}",
                    ]
                )
    return times


def test_csv_spike_is_an_incident_named_by_its_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_file, db = tmp_path / "containers.csv", tmp_path / "m.db"
    times = write_metrics(
        csv_file, 360, dt.timedelta(minutes=1), lambda t: 1000.0, spike=range(300, 305)
    )
    args = ["metrics", "--csv", str(csv_file), "--db", str(db)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "read 4 series for 2 entities (db, web)" in out
    (inc,) = query_incidents(db, IncidentQuery(behaviour=BEHAVIOUR)).items
    assert inc.host == "web" and inc.role == "instance"
    assert (inc.first_seen, inc.last_seen, inc.detections) == (times[300], times[304], 5)
    # The reason: the series that moved most, how far from its usual, with the numbers beside.
    assert re.match(
        r"web: throughput [\d,]+, 1\dx its usual \(\d{3,4}\); 5 unusual steps", inc.title
    )
    assert inc.title.endswith("also cpu"), inc.title
    assert 11 <= inc.evidence["ratio"] <= 17 and 950 <= inc.evidence["usual"] <= 1050
    assert inc.evidence["value"] == pytest.approx(inc.evidence["ratio"] * inc.evidence["usual"])
    assert inc.severity_label == "medium" and inc.closed
    (line,) = [ln for ln in out.splitlines() if inc.incident_id[:12] in ln]
    assert " web " in line and "x its usual" in line
    # Scoring the same file again updates the same incident (stable id), it adds none.
    assert main(args) == 0
    again = query_incidents(db, IncidentQuery(behaviour=BEHAVIOUR)).items
    assert [i.incident_id for i in again] == [inc.incident_id]


def test_hourly_baseline_knows_night_from_day(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Throughput is 10x higher by day than at night. With two days of baseline each hour has
    its own usual value, so daytime traffic at 3 am is an anomaly "for this hour", and the
    days' own peaks are not."""
    csv_file, db = tmp_path / "days.csv", tmp_path / "m.db"

    def usual(t: dt.datetime) -> float:
        return 10_000.0 if 8 <= t.hour < 20 else 1_000.0

    step = dt.timedelta(minutes=10)
    night = 2 * 144 + 3 * 6  # day 3, 03:00
    times = write_metrics(
        csv_file, 3 * 144, step, usual, spike=range(night, night + 3), factor=10.0
    )
    baseline = f"{times[0]:.0f}..{times[2 * 144]:.0f}"  # two days: hourly
    assert main(["metrics", "--csv", str(csv_file), "--db", str(db), "--baseline", baseline]) == 0
    out = capsys.readouterr().out
    assert "usual values per hour of day" in out
    (inc,) = query_incidents(db, IncidentQuery(behaviour=BEHAVIOUR)).items
    assert inc.host == "web" and inc.first_seen == times[night]
    assert "its usual for this hour" in inc.title and inc.evidence["hourly"] == 1.0
    assert 800 <= inc.evidence["usual"] <= 1200  # the night's usual, not the day's


def test_bad_csv_says_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "timestamp,container,cpu\n2026-11-02T00:00:00Z,web,1.5\n2026-11-02T00:01:00Z,web,lots\n"
    )
    assert main(["metrics", "--csv", str(bad), "--db", str(tmp_path / "m.db")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}, line 3, column cpu: 'lots' is not a number" in err
    bad.write_text("when,container,cpu\n1,web,2\n")
    assert main(["metrics", "--csv", str(bad), "--db", str(tmp_path / "m.db")]) == 2
    assert "expected a time column (timestamp/time/ts)" in capsys.readouterr().err
    assert main(["metrics", "--csv", str(bad), "--step", "5m", "--series", "x.yaml"]) == 2
    assert "--series, --step: for --prometheus" in capsys.readouterr().err


def test_series_file(tmp_path: Path) -> None:
    good = tmp_path / "series.yaml"
    good.write_text(
        "- name: container_rx\n"
        "  query: sum by (name) (rate(container_network_receive_bytes_total[$window]))\n"
        "  words: container receive throughput\n"
        "  unit: B/s\n"
        "  floor: 1000\n"
        "  by: name\n"
    )
    (s,) = load_series(str(good))
    assert s.promql("20s").endswith("[20s]))") and s.by == "name" and s.floor == 1000.0
    assert load_series("default") == DEFAULT_SERIES
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {name: x, query: up, words: up, unit: parsecs}\n")
    with pytest.raises(InputError, match=r"bad.yaml: series 1 \(x\): unit 'parsecs'"):
        load_series(str(bad))
    bad.write_text("- {name: x, query: up, words: up}\n- {name: x, query: up, words: up}\n")
    with pytest.raises(InputError, match="series 'x' is given twice"):
        load_series(str(bad))
    # An instance is its host: node-exporter and netanomd on one machine are one entity.
    assert entity_of({"instance": "10.0.0.5:9100"}, "instance") == "10.0.0.5"
    assert entity_of({"instance": "[::1]:9464"}, "instance") == "::1"
    assert entity_of({"name": "web-1"}, "name") == "web-1"


def test_es_delivery_and_the_grafana_panels(
    tmp_path: Path, es: FakeElasticsearch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --es-url the incident reaches Elasticsearch's incident indices through the existing
    sink, and the dashboard's metric-anomaly panels query the rule name and fields its
    document has."""
    url = f"http://127.0.0.1:{es.port}"
    assert main(["es", "setup", "--url", url]) == 0
    csv_file, db = tmp_path / "c.csv", tmp_path / "m.db"
    write_metrics(csv_file, 200, dt.timedelta(minutes=1), lambda t: 500.0, range(150, 152))
    assert main(["metrics", "--csv", str(csv_file), "--db", str(db), "--es-url", url]) == 0
    (stored,) = query_incidents(db, IncidentQuery()).items
    (doc,) = [d for docs in es.docs.values() for i, d in docs.items() if i == stored.incident_id]
    assert doc["rule"]["name"] == BEHAVIOUR and doc["event"]["reason"] == stored.title
    assert doc["netanomd"]["incident"]["evidence"]["ratio"] == stored.evidence["ratio"]
    dash = json.loads(DASHBOARD.read_text())
    es_var = {v["name"]: v for v in dash["templating"]["list"]}["es_datasource"]
    assert es_var["type"] == "datasource" and es_var["query"] == "elasticsearch"
    panels = [p for p in dash["panels"] if p["datasource"]["uid"] == "${es_datasource}"]
    assert {p["type"] for p in panels} == {"timeseries", "table"}
    for panel in panels:
        for target in panel["targets"]:
            terms = re.findall(r'([\w.@]+):"([^"]+)"', target["query"])
            assert terms and all(_field(doc, f) == v for f, v in terms), panel["title"]
            fields = [
                target["timeField"],
                *(a["field"] for a in target["metrics"] + target["bucketAggs"] if "field" in a),
            ]
            assert all(_field(doc, f) is not None for f in fields), (panel["title"], fields)
        for t in panel.get("transformations", []):  # the table's columns
            assert all(_field(doc, f) is not None for f in t["options"]["includeByName"])


def _field(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def test_saved_model_scores_a_later_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model fitted on one file's baseline (--save-model) scores another file whole
    (--model), finding the same spike with the same numbers as fitting in place."""
    whole, later = tmp_path / "whole.csv", tmp_path / "later.csv"
    times = write_metrics(whole, 360, dt.timedelta(minutes=1), lambda t: 1000.0, range(300, 305))
    lines = whole.read_text().splitlines()
    later.write_text("\n".join([lines[0], *lines[1 + 2 * 250 :]]) + "\n")  # steps 250 on
    model, db1, db2 = tmp_path / "metrics-model.npz", tmp_path / "a.db", tmp_path / "b.db"
    fit = ["metrics", "--csv", str(whole), "--db", str(db1), "--save-model", str(model)]
    assert main(fit) == 0
    assert main(["metrics", "--csv", str(later), "--db", str(db2), "--model", str(model)]) == 0
    out = capsys.readouterr().out
    # The second run reports the model's baseline (the first file's) and scores every row.
    assert out.count("iforest fitted on 360 baseline rows (2026-11-02 00:00:00 to 2026") == 2
    assert "scored 220 rows: 5 anomalous" in out
    (first,) = query_incidents(db1, IncidentQuery()).items
    (second,) = query_incidents(db2, IncidentQuery()).items
    assert (second.host, second.first_seen, second.detections) == ("web", times[300], 5)
    assert second.title == first.title and second.evidence == first.evidence
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert main(["metrics", "--csv", str(later), "--db", str(db2), "--model", str(bad)]) == 2
    assert f"metrics model {bad}: not a metrics model" in capsys.readouterr().err
