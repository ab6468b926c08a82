"""`netanomd es setup` against the test server, with the daemon's rules for its options;
Kibana saved objects load as Kibana expects."""

from __future__ import annotations

import json
import logging
import re
import shlex
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from netanomd.cli import main
from netanomd.config import ConfigValidationError, Option, load_config
from netanomd.data import attack_files
from netanomd.ecs import ECS_TYPES, template_mappings
from netanomd.es_client import elasticsearch_client
from netanomd.es_setup import TEMPLATE_NAME
from netanomd.flow import FlowBatch
from netanomd.kibana import export_ndjson, saved_objects
from netanomd.model import Model
from netanomd.sources.files import open_source
from tests.es_server import FakeElasticsearch

REPO = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data"


def test_setup_is_idempotent_ilm(es: FakeElasticsearch, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{es.port}"
    for _ in range(2):
        assert main(["es", "setup", "--url", url, "--retention-days", "14"]) == 0
    t = es.templates[TEMPLATE_NAME]
    assert t["index_patterns"] == ["logs-netanomd.alert-*"]
    assert t["data_stream"] == {}
    assert t["priority"] > 500  # wins over built-in logs-*-* (100), as Elastic asks
    assert t["template"]["settings"]["index.lifecycle.name"] == "netanomd-alerts"
    # Composes Elastic's logs templates (event.ingested from the default pipeline), and keeps
    # working where they are absent (this server has none).
    assert t["composed_of"] == ["logs@mappings", "logs@settings", "logs@custom", "ecs@mappings"]
    assert set(t["ignore_missing_component_templates"]) == set(t["composed_of"])
    assert not es.component_templates
    assert t["template"]["mappings"] == template_mappings()
    phases = es.policies["netanomd-alerts"]["policy"]["phases"]
    assert phases["delete"]["min_age"] == "14d"
    # Incidents: regular indices behind a write alias (replaced in place), the same policy.
    alias = "logs-netanomd.incident-default"
    it = es.templates["netanomd-incidents-default"]
    assert it["index_patterns"] == [f"{alias}-*"] and "data_stream" not in it
    assert it["priority"] > 500 and it["template"]["mappings"] == template_mappings()
    assert it["composed_of"] == t["composed_of"]
    assert it["template"]["settings"] == {
        "index.lifecycle.name": "netanomd-alerts",
        "index.lifecycle.rollover_alias": alias,
    }
    assert es.aliases == {alias: f"{alias}-000001"}  # created once, found the second time
    assert not es.is_data_stream(f"{alias}-000002")  # a rollover's index stays regular
    assert main(["es", "check", "--url", url]) == 0
    assert "Elasticsearch 9.1.0" in capsys.readouterr().out


def test_setup_dsl(es: FakeElasticsearch) -> None:
    assert main(["es", "setup", "--url", f"http://127.0.0.1:{es.port}", "--retention", "dsl"]) == 0
    assert es.templates[TEMPLATE_NAME]["template"]["lifecycle"] == {"data_retention": "30d"}
    # logs@settings' ILM policy must not take over the data stream's lifecycle.
    assert (
        es.templates[TEMPLATE_NAME]["template"]["settings"]["index.lifecycle.prefer_ilm"] is False
    )
    assert not es.policies
    settings = es.templates["netanomd-incidents-default"]["template"]["settings"]
    assert settings == {"index.lifecycle.rollover_alias": "logs-netanomd.incident-default"}


def test_unreachable_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["es", "check", "--url", "http://127.0.0.1:9"]) == 2
    assert "cannot reach Elasticsearch at http://127.0.0.1:9" in capsys.readouterr().err
    assert main(["es", "setup", "--url", "http://127.0.0.1:9", "http://127.0.0.1:10"]) == 2
    err = capsys.readouterr().err
    assert "Elasticsearch set-up at http://127.0.0.1:9, http://127.0.0.1:10 failed" in err


def test_dry_run_prints_what_setup_sends(
    es: FakeElasticsearch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run prints each request (method, path, JSON body) and sends nothing; the real run
    then stores exactly those bodies, under --namespace's names."""
    url = f"http://127.0.0.1:{es.port}"
    args = ["es", "setup", "--url", url, "--namespace", "prod", "--retention-days", "7"]
    assert main([*args, "--dry-run"]) == 0
    shown = capsys.readouterr().out
    assert not es.templates and not es.policies and not es.requests
    requests: dict[str, Any] = {}
    for block in re.split(r"\n(?=PUT )", shown.strip()):
        head, _, body = block.partition("\n")
        requests[head.split()[1]] = (head, json.loads(body))
    alias = "logs-netanomd.incident-prod"
    assert list(requests) == [
        "/_ilm/policy/netanomd-alerts",
        f"/_index_template/{TEMPLATE_NAME}",
        "/_index_template/netanomd-incidents-prod",
        f"/{alias}-000001",
    ]
    assert "only if the alias" in requests[f"/{alias}-000001"][0]
    assert main(args) == 0
    assert es.templates[TEMPLATE_NAME] == requests[f"/_index_template/{TEMPLATE_NAME}"][1]
    assert (
        es.templates["netanomd-incidents-prod"]
        == requests["/_index_template/netanomd-incidents-prod"][1]
    )
    assert es.policies["netanomd-alerts"] == requests["/_ilm/policy/netanomd-alerts"][1]
    assert es.aliases == {alias: f"{alias}-000001"}


def test_api_key_option_is_sent_and_never_shown(
    es: FakeElasticsearch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{es.port}"
    assert main(["es", "check", "--url", url, "--api-key", "k3y-s3cr3t"]) == 0
    assert ("authorization", "ApiKey k3y-s3cr3t") in {
        (k.lower(), v) for _, _, headers in es.requests for k, v in headers.items()
    }
    assert main(["es", "setup", "--url", "es:9200", "--api-key", "k3y-s3cr3t"]) == 2
    err = capsys.readouterr().err
    assert "--url es:9200" in err and "k3y-s3cr3t" not in err


def test_setup_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["es", "setup", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--url", "--api-key", "--namespace", "--retention ilm|dsl", "--dry-run"):
        assert option in text
    assert "sinks.elasticsearch.hosts; default http://127.0.0.1:9200" in text
    assert "lifecycle (dsl, Elasticsearch >= 8.11)" in text


def test_option_errors_name_option_key_path_and_rule(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The command's options go through the daemon's validation: every problem at once, each
    naming the option (or file line, or --set) and the key path."""
    config = tmp_path / "netanomd.yaml"
    config.write_text("sinks:\n  elasticsearch:\n    namespace: Prod\n    bogus: 1\n")
    args = ["es", "setup", "-c", str(config), "--url", "es:9200", "--retention", "forever"]
    assert (
        main([*args, "--retention-days", "0", "--set", "sinks.elasticsearch.verify_certs=no"]) == 2
    )
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "netanomd: error: invalid configuration (5 problems):",
        f"{config}:3: sinks.elasticsearch.namespace: 'Prod' is not a valid namespace "
        "(lowercase, no '-')",
        f"{config}:4: sinks.elasticsearch.bogus: unknown key 'bogus' (known keys: enabled, hosts, "
        "api_key, username, password, ca_file, verify_certs, namespace, retention_mode, "
        "retention_days, rollover_max_age, rollover_max_primary_shard_size, request_timeout)",
        "--url es:9200: sinks.elasticsearch.hosts[0]: 'es:9200' is not a valid Elasticsearch URL "
        "(http:// or https://)",
        "--retention forever: sinks.elasticsearch.retention_mode: 'forever' is not one of 'ilm', "
        "'dsl'",
        "--retention-days 0: sinks.elasticsearch.retention_days: 0 is less than the minimum of 1",
    ]


def test_the_section_is_read_from_the_daemons_file(es: FakeElasticsearch, tmp_path: Path) -> None:
    config = tmp_path / "netanomd.yaml"
    url = f"http://127.0.0.1:{es.port}"
    config.write_text(f"sinks:\n  elasticsearch:\n    hosts: {url}\n    retention_days: 9\n")
    assert main(["es", "setup", "-c", str(config)]) == 0
    assert es.policies["netanomd-alerts"]["policy"]["phases"]["delete"]["min_age"] == "9d"
    assert main(["es", "setup", "-c", str(config), "--retention-days", "12"]) == 0  # option wins
    assert es.policies["netanomd-alerts"]["policy"]["phases"]["delete"]["min_age"] == "12d"


@pytest.mark.parametrize("namespace", ["a b", "a*", "Prod", "a-b", "", "a/b", "x,y"])
def test_cli_and_daemon_refuse_the_same_namespaces(
    namespace: str, demo: Model, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``netanomd score --es-namespace`` and ``netanomd run``'s sinks.elasticsearch.namespace
    follow one rule (the CLI used to accept 'a b' and 'a*', which the daemon refused)."""
    config = tmp_path / "netanomd.yaml"
    config.write_text(f"sinks:\n  elasticsearch:\n    namespace: {json.dumps(namespace)}\n")
    with pytest.raises(ConfigValidationError) as daemon:
        load_config(config, env={})
    daemon_problems = [p.removeprefix(f"{config}:3: ") for p in daemon.value.problems]
    assert daemon_problems and all(
        p.startswith("sinks.elasticsearch.namespace: ") for p in daemon_problems
    )

    model = tmp_path / "model.npz"
    demo.save(model)
    remcos = next(p for p in attack_files() if "remcos" in p.name)
    args = ["score", "--model", str(model), "--input", str(remcos), "--db", str(tmp_path / "a.db")]
    url = "http://127.0.0.1:9"  # never reached: the options are refused first
    assert main([*args, "--es-url", url, "--es-namespace", namespace]) == 2
    err = capsys.readouterr().err.splitlines()
    cli_where = f"--es-namespace {shlex.quote(namespace)}: "
    assert err[1:] == [cli_where + p for p in daemon_problems]


@pytest.mark.parametrize("namespace", ["default", "prod", "site_1.eu"])
def test_cli_and_daemon_accept_the_same_namespaces(
    namespace: str, demo: Model, es: FakeElasticsearch, tmp_path: Path
) -> None:
    config = tmp_path / "netanomd.yaml"
    config.write_text(f"sinks:\n  elasticsearch:\n    namespace: {namespace}\n")
    assert load_config(config, env={}).sinks.elasticsearch.namespace == namespace
    model = tmp_path / "model.npz"
    demo.save(model)
    remcos = next(p for p in attack_files() if "remcos" in p.name)
    args = ["score", "--model", str(model), "--input", str(remcos), "--db", str(tmp_path / "a.db")]
    url = f"http://127.0.0.1:{es.port}"
    assert main([*args, "--top", "0", "--es-url", url, "--es-namespace", namespace]) == 0
    assert es.docs[f"logs-netanomd.alert-{namespace}"]


def test_secrets_stay_hidden(caplog: pytest.LogCaptureFixture) -> None:
    section = load_config(
        None,
        env={},
        overrides=["sinks.elasticsearch.api_key=s3cr3t-key", "sinks.elasticsearch.username=u"],
        options=[Option("--password", "sinks.elasticsearch.password", "hunter2")],
    ).sinks.elasticsearch
    assert (section.api_key, section.password) == ("s3cr3t-key", "hunter2")
    assert "s3cr3t" not in repr(section) and "hunter2" not in repr(section)
    with pytest.raises(ConfigValidationError) as exc:
        load_config(
            None, env={}, options=[Option("--password", "sinks.elasticsearch.password", "hunter2")]
        )
    assert exc.value.problems == (
        "--password ***: sinks.elasticsearch.password: given without a username",
    )
    bare = load_config(None, env={}, overrides=["sinks.elasticsearch.hosts=http://127.0.0.1:9"])
    client = elasticsearch_client(
        bare.sinks.elasticsearch, env={"NETANOMD_ES_API_KEY": "env-s3cr3t"}
    )
    with caplog.at_level(logging.DEBUG):
        try:
            client.info()
        except Exception as exc:  # connection refused
            logging.getLogger("test").error("%s", exc)
    assert "env-s3cr3t" not in caplog.text
    assert "Authorization: ApiKey <hidden>" in caplog.text  # the key from env was sent


#: Keys of a saved object in Kibana 8.x's export format (export/import API, one object a line).
EXPORT_KEYS = {"type", "id", "attributes", "references", "coreMigrationVersion"}
EXPORT_OPTIONAL = {"typeMigrationVersion", "managed", "namespaces", "originId", "version"}
SEMVER = re.compile(r"\d+\.\d+\.\d+")


def test_saved_objects_follow_kibanas_export_format() -> None:
    """Every line is a saved object as Kibana 8.x exports it (migration versions included, so
    import migrates it), every reference resolves to an object earlier in the file, and every
    field an object reads is one the index template maps."""
    text = export_ndjson()
    assert (REPO / "kibana/netanomd-saved-objects.ndjson").read_text() == text, (
        "kibana/netanomd-saved-objects.ndjson is stale: run netanomd kibana export -o ..."
    )
    objs = [json.loads(line) for line in text.splitlines()]
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for o in objs:
        assert EXPORT_KEYS <= set(o) <= EXPORT_KEYS | EXPORT_OPTIONAL, o["id"]
        assert SEMVER.fullmatch(o["coreMigrationVersion"]), o["id"]
        assert SEMVER.fullmatch(o["typeMigrationVersion"]), o["id"]
        assert isinstance(o["attributes"], dict) and isinstance(o["attributes"]["title"], str)
        for ref in o["references"]:
            assert set(ref) == {"id", "name", "type"}, ref
            assert (ref["type"], ref["id"]) in seen, f"{o['id']} refers to {ref} before it"
        assert (o["type"], o["id"]) not in seen
        seen[(o["type"], o["id"])] = o
    kinds = [o["type"] for o in objs]
    assert kinds.count("index-pattern") == 3 and kinds.count("search") == 5
    assert kinds.count("lens") == 5 and kinds.count("dashboard") == 1
    assert "visualization" not in kinds  # Lens, not the legacy aggregation-based editor
    # No placeholder addresses anywhere (an analyst would get an empty result).
    assert not re.search(r"\b\d+\.\d+\.\d+\.\d+\b", text)
    mapped = _mapped_fields(template_mappings()["properties"])
    for o in objs:
        refs = {r["name"]: r for r in o["references"]}
        attrs = o["attributes"]
        meta = attrs.get("kibanaSavedObjectMeta")
        if meta:
            src = json.loads(meta["searchSourceJSON"])  # a JSON string, as Kibana stores it
            if "indexRefName" in src:
                assert refs[src["indexRefName"]]["type"] == "index-pattern"
        if o["type"] == "search":
            assert set(attrs["columns"]) <= mapped
            assert {field for field, _ in attrs["sort"]} <= mapped
        if o["type"] == "lens":
            _check_lens(attrs, refs, mapped)
        if o["type"] == "dashboard":
            _check_dashboard(attrs, refs, mapped, seen)


def _check_lens(attrs: dict[str, Any], refs: dict[str, Any], mapped: set[str]) -> None:
    """Lens attributes: a form-based layer per data view reference, columns in columnOrder,
    fields the template maps, and a visualization that only names the layer's columns."""
    assert attrs["visualizationType"] in {"lnsXY", "lnsDatatable"}
    state = attrs["state"]
    assert {"datasourceStates", "visualization", "query", "filters"} <= set(state)
    layers = state["datasourceStates"]["formBased"]["layers"]
    assert layers
    for layer_id, layer in layers.items():
        assert refs[f"indexpattern-datasource-layer-{layer_id}"]["type"] == "index-pattern"
        columns, order = layer["columns"], layer["columnOrder"]
        assert sorted(order) == sorted(columns) and len(set(order)) == len(order)
        # Buckets first, then metrics, as Lens orders them.
        bucketed = [columns[c]["isBucketed"] for c in order]
        assert bucketed == sorted(bucketed, reverse=True)
        for col in columns.values():
            assert {"label", "dataType", "operationType", "isBucketed"} <= set(col)
            assert col["sourceField"] in mapped | {"___records___"}, col["sourceField"]
            order = col.get("params", {}).get("orderBy", {})
            if order.get("type") == "column":
                assert order["columnId"] in columns
    vis = state["visualization"]
    (layer_id,) = layers
    columns = layers[layer_id]["columns"]
    if attrs["visualizationType"] == "lnsXY":
        for lay in vis["layers"]:
            assert lay["layerId"] == layer_id
            named = [lay["xAccessor"], *lay["accessors"], lay.get("splitAccessor")]
            assert {n for n in named if n} <= set(columns)
    else:
        assert vis["layerId"] == layer_id
        assert [c["columnId"] for c in vis["columns"]] == layers[layer_id]["columnOrder"]


def _check_dashboard(
    attrs: dict[str, Any],
    refs: dict[str, Any],
    mapped: set[str],
    seen: dict[tuple[str, str], dict[str, Any]],
) -> None:
    panels = json.loads(attrs["panelsJSON"])
    cells: set[tuple[int, int]] = set()
    shown = []
    for p in panels:
        grid = p["gridData"]
        assert grid["i"] == p["panelIndex"] and grid["x"] + grid["w"] <= 48
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & area, f"panel {p['panelIndex']} overlaps another"
        cells |= area
        ref = refs[f"{p['panelIndex']}:{p['panelRefName']}"]
        assert ref["type"] == p["type"]
        shown.append(seen[(ref["type"], ref["id"])])
    # The alert tables: saved searches over both data views.
    tables = {o["references"][0]["id"] for o in shown if o["type"] == "search"}
    assert tables == {"netanomd-alerts-dv", "netanomd-incidents-dv"}
    assert sum(o["type"] == "lens" for o in shown) == 5
    # Options-list controls on behaviour, host and severity, each with its data view.
    group = attrs["controlGroupInput"]
    controls = json.loads(group["panelsJSON"])
    fields = set()
    for cid, control in controls.items():
        assert control["type"] == "optionsListControl"
        assert control["explicitInput"]["id"] == cid
        fields.add(control["explicitInput"]["fieldName"])
        assert refs[f"controlGroup_{cid}:optionsListDataView"]["type"] == "index-pattern"
    assert fields == {"rule.name", "related.ip", "netanomd.incident.severity_label"}
    assert fields <= mapped


def test_connection_ids_link_to_the_sensors_records(demo: Model, remcos: Any) -> None:
    """The alert and incident data views show zeek.session_id and network.community_id as
    links to Discover on the sensor's records of that connection; the fields are the ones real
    alert and incident documents carry, and the controls' fields are in real incidents."""
    from netanomd.ecs import ObserverInfo, alert_document, incident_document
    from netanomd.kibana import LINK_FIELDS, SENSOR_VIEW_ID

    objs = {o["id"]: o for o in saved_objects()}
    assert objs[SENSOR_VIEW_ID]["attributes"]["title"] == "logs-zeek.*,logs-suricata.*"
    for view in ("netanomd-alerts-dv", "netanomd-incidents-dv"):
        formats = json.loads(objs[view]["attributes"]["fieldFormatMap"])
        assert set(formats) == set(LINK_FIELDS)
        for field, fmt in formats.items():
            assert fmt["id"] == "url" and fmt["params"]["type"] == "a"
            url = fmt["params"]["urlTemplate"]
            # Relative and not starting with "/": Kibana prefixes <base path>/app/.
            assert url.startswith("discover#/?_a=(")
            assert f"index:'{SENSOR_VIEW_ID}'" in url
            assert f"query:'{field}:\"{{{{value}}}}\"'" in url

    observer = ObserverInfo("sensor-1", "sensor-1")
    demo.reset()
    stream = demo.stream()
    _, alerts, _ = stream.process(remcos)
    incidents = stream.finish()
    eve = FlowBatch.concat(
        list(open_source(str(DATA / "eve/test6-malicious-head400.json")).batches())
    )
    demo.reset()
    _, eve_alerts, _ = demo.stream().process(eve)
    assert alerts and incidents and eve_alerts
    alert_docs = [alert_document(a, observer) for a in alerts]
    eve_docs = [alert_document(a, observer) for a in eve_alerts]
    incident_docs = [incident_document(i, f"inc-{n}", observer) for n, i in enumerate(incidents)]

    def has(doc: dict[str, Any], dotted: str) -> bool:
        node: Any = doc
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return node is not None

    assert all(has(d, "zeek.session_id") for d in alert_docs + incident_docs)
    assert all(has(d, "suricata.eve.flow_id") for d in eve_docs)
    assert "network.community_id" in ECS_TYPES  # set when the sensor logs it (README)
    for field in ("rule.name", "related.ip", "netanomd.incident.severity_label"):
        assert all(has(d, field) for d in incident_docs), field


def _mapped_fields(props: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for k, v in props.items():
        if "properties" in v:
            out |= _mapped_fields(v["properties"], f"{prefix}{k}.")
        else:
            out.add(f"{prefix}{k}")
    return out


def test_import_posts_multipart_with_xsrf(capsys: pytest.CaptureFixture[str]) -> None:
    seen: dict[str, Any] = {}

    class Kibana(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.update(
                path=self.path,
                xsrf=self.headers.get("kbn-xsrf"),
                ctype=self.headers.get("Content-Type"),
                body=body,
            )
            ok = self.headers.get("kbn-xsrf") == "true"
            n = sum(1 for ln in body.split(b"\n") if ln.startswith(b"{"))
            data = json.dumps({"success": ok, "successCount": n if ok else 0, "errors": []})
            self.send_response(200 if ok else 400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data.encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Kibana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert main(["kibana", "import", "--url", url, "--space", "soc"]) == 0
    finally:
        server.shutdown()
    assert seen["path"] == "/s/soc/api/saved_objects/_import?overwrite=true"
    assert seen["xsrf"] == "true" and seen["ctype"].startswith("multipart/form-data; boundary=")
    assert b'name="file"; filename="netanomd.ndjson"' in seen["body"]
    assert f"imported {len(saved_objects())} objects" in capsys.readouterr().out
