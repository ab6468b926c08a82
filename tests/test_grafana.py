"""The Grafana dashboard asks Prometheus only for what a real daemon exports: every series,
label and legend label of every panel is checked against the daemon's own /metrics, every
panel is scoped by the sensor variable, the score heatmap reads histogram buckets as they are,
and model age counts from training."""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from netanomd.cli import main
from netanomd.daemon.http import DaemonCollector
from netanomd.daemon.service import Daemon
from netanomd.data import demo_model
from netanomd.model import Model
from netanomd.sdnotify import Notifier
from tests.conftest import free_port
from tests.es_server import FakeElasticsearch
from tests.test_daemon import tsv_header, tsv_rows, write_config
from tests.waiting import wait

DASHBOARD = Path(__file__).parent.parent / "grafana/netanomd-dashboard.json"
#: Labels Prometheus adds at scrape time, and the histogram bucket label.
SCRAPE_LABELS = {"instance", "job", "le"}
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "info": ("_info",),
    "gauge": ("",),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, set[str]], Any]]:
    """Series name -> label names, from a daemon with every sink that has metrics (SQLite,
    Elasticsearch, the HTTP endpoint) after it scored a real Zeek log; and its model."""
    tmp = tmp_path_factory.mktemp("grafana")
    model = tmp / "model.npz"
    demo_model().save(model)
    log = tmp / "conn.log"
    log.write_bytes(tsv_header() + b"".join(tsv_rows()[:200]))
    es = FakeElasticsearch()
    es_url = es.start()
    assert main(["es", "setup", "--url", es_url]) == 0
    port = free_port()
    cfg = write_config(
        tmp,
        model,
        [{"type": "zeek_log", "path": str(log), "from_start": True}],
        sinks={
            "sqlite": {"path": str(tmp / "alerts.db")},
            "elasticsearch": {"enabled": True, "hosts": [es_url]},
            "metrics": {"listen": f"127.0.0.1:{port}"},
            "zeek_notice": {"enabled": False},
        },
    )
    d = Daemon(str(cfg), notifier=Notifier(env={}))
    d.start()
    try:
        wait(lambda: d.health()["ready"], 30, "daemon ready")
        wait(lambda: d.pipeline is not None and d.pipeline.stats.scored >= 200, 60, "scored")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
        # The label names each family declares, also for those with no sample yet (no drops).
        declared = {f.name: set(f._labelnames) for f in DaemonCollector(d).collect()}
    finally:
        d.shutdown()
        es.stop()
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        labels = {k for s in family.samples for k in s.labels} | declared.get(family.name, set())
        for suffix in SUFFIXES.get(family.type, ("",)):
            series.setdefault(family.name + suffix, set()).update(labels - {"le"})
        for s in family.samples:
            series.setdefault(s.name, set()).update(s.labels)
    yield series, (text, Model.load(model))


def _panels() -> list[dict[str, Any]]:
    """The Prometheus panels (the metric-anomaly panels read Elasticsearch: test_telemetry)."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [p for p in panels if p["datasource"]["type"] == "prometheus"]


def _metrics(expr: str) -> list[str]:
    return re.findall(r"\bnetanomd_[a-z_]+", expr)


def test_every_panel_queries_series_the_daemon_exports(
    exported: tuple[dict[str, set[str]], Any],
) -> None:
    series, _ = exported
    checked = 0
    for panel in _panels():
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            expr = t["expr"]
            names = _metrics(expr)
            assert names, f"{panel['title']}: {expr} reads no netanomd series"
            for name in names:
                assert name in series, f"{panel['title']}: {name} is not exported"
                checked += 1
            known = set().union(*(series[n] for n in names)) | SCRAPE_LABELS
            used = set()
            for group in re.findall(r"\bby \(([^)]*)\)", expr):
                used |= {label.strip() for label in group.split(",")}
            legend = set(re.findall(r"\{\{(\w+)\}\}", t.get("legendFormat", "")))
            assert used | legend <= known, (panel["title"], (used | legend) - known)
    assert checked >= len(_panels())


def test_every_panel_is_scoped_by_the_sensor_variable() -> None:
    dash = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    instance = variables["instance"]
    assert instance["type"] == "query" and instance["multi"] and instance["includeAll"]
    assert _metrics(instance["definition"]) == ["netanomd_model_info"]
    for panel in _panels():
        for t in panel["targets"]:
            # Every netanomd selector, not just one per query, carries the variable.
            selectors = re.findall(r"\bnetanomd_[a-z_]+(\{[^}]*\})?", t["expr"])
            assert selectors and all('instance=~"$instance"' in s for s in selectors), (
                panel["title"],
                t["expr"],
            )


def test_score_heatmap_reads_prometheus_buckets() -> None:
    (heatmap,) = [p for p in _panels() if p["type"] == "heatmap"]
    (target,) = heatmap["targets"]
    assert target["format"] == "heatmap" and target["legendFormat"] == "{{le}}"
    assert _metrics(target["expr"]) == ["netanomd_score_bucket"]
    assert re.search(r"sum by \(le\)", target["expr"])
    assert heatmap["options"]["calculate"] is False  # the buckets are the cells


def test_model_age_counts_from_training(exported: tuple[dict[str, set[str]], Any]) -> None:
    _, (text, model) = exported
    (age,) = [p for p in _panels() if p["title"].startswith("Model age")]
    assert _metrics(age["targets"][0]["expr"]) == ["netanomd_model_trained_timestamp_seconds"]
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    trained = dt.datetime.fromisoformat(model.meta["created_at"]).timestamp()
    assert values["netanomd_model_trained_timestamp_seconds"] == trained
    assert trained < values["netanomd_model_loaded_timestamp_seconds"]


def test_incident_updates_have_a_panel(exported: tuple[dict[str, set[str]], Any]) -> None:
    series, _ = exported
    assert "netanomd_incident_updates_total" in series
    assert any(
        "netanomd_incident_updates_total" in t["expr"] for p in _panels() for t in p["targets"]
    )
