"""`netanomd es setup` against the test server; Kibana saved objects load as Kibana expects."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from netanomd.cli import main
from netanomd.ecs import template_mappings
from netanomd.errors import ConfigError
from netanomd.es_setup import TEMPLATE_NAME, ElasticsearchConfig
from netanomd.kibana import export_ndjson, saved_objects
from tests.es_server import FakeElasticsearch

REPO = Path(__file__).parent.parent


def test_setup_is_idempotent_ilm(es: FakeElasticsearch, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{es.port}"
    for _ in range(2):
        assert main(["es", "setup", "--url", url, "--retention-days", "14"]) == 0
    t = es.templates[TEMPLATE_NAME]
    assert t["index_patterns"] == ["logs-netanomd.alert-*", "logs-netanomd.flow-*"]
    assert t["data_stream"] == {}
    assert t["priority"] > 500  # wins over built-in logs-*-* (100), as Elastic asks
    assert t["template"]["settings"]["index.lifecycle.name"] == "netanomd-alerts"
    assert t["template"]["mappings"] == template_mappings()
    phases = es.policies["netanomd-alerts"]["policy"]["phases"]
    assert phases["delete"]["min_age"] == "14d"
    assert main(["es", "check", "--url", url]) == 0
    assert "Elasticsearch 9.1.0" in capsys.readouterr().out


def test_setup_dsl(es: FakeElasticsearch) -> None:
    assert main(["es", "setup", "--url", f"http://127.0.0.1:{es.port}", "--retention", "dsl"]) == 0
    assert es.templates[TEMPLATE_NAME]["template"]["lifecycle"] == {"data_retention": "30d"}
    assert not es.policies


def test_unreachable_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["es", "check", "--url", "http://127.0.0.1:9"]) == 2
    assert "cannot reach Elasticsearch at http://127.0.0.1:9" in capsys.readouterr().err


def test_config_errors_name_key_paths_and_secrets_stay_hidden(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError) as info:
        ElasticsearchConfig.from_mapping(
            {"hosts": "es:9200", "retention_mode": "forever", "namespace": "Prod", "bogus": 1},
            where="sinks.elasticsearch",
        )
    msg = str(info.value)
    for key in ("hosts", "retention_mode", "namespace", "bogus"):
        assert f"sinks.elasticsearch.{key}" in msg
    cfg = ElasticsearchConfig.from_mapping(
        {"api_key": "s3cr3t-key", "username": "u", "password": "hunter2"}
    )
    assert "s3cr3t" not in repr(cfg) and "hunter2" not in repr(cfg)
    monkeypatch.setenv("NETANOMD_ES_API_KEY", "env-s3cr3t")
    with caplog.at_level(logging.DEBUG):
        client = ElasticsearchConfig.from_mapping({"hosts": ["http://127.0.0.1:9"]}).client()
        try:
            client.info()
        except Exception as exc:  # connection refused
            logging.getLogger("test").error("%s", exc)
    assert "env-s3cr3t" not in caplog.text


def test_saved_objects_load_as_kibana_expects() -> None:
    text = export_ndjson()
    assert (REPO / "kibana/netanomd-saved-objects.ndjson").read_text() == text, (
        "kibana/netanomd-saved-objects.ndjson is stale: run netanomd kibana export -o ..."
    )
    objs = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(o, dict) and {"type", "id", "attributes"} <= set(o) for o in objs)
    ids = {(o["type"], o["id"]) for o in objs}
    assert len(ids) == len(objs)
    kinds = [o["type"] for o in objs]
    assert kinds.count("search") == 4 and kinds.count("dashboard") == 1
    mapped = _mapped_fields(template_mappings()["properties"])
    for o in objs:
        for ref in o.get("references", []):
            assert (ref["type"], ref["id"]) in ids, f"{o['id']} refers to missing {ref}"
        meta = o["attributes"].get("kibanaSavedObjectMeta")
        if meta:
            assert isinstance(meta["searchSourceJSON"], str)
            src = json.loads(meta["searchSourceJSON"])
            if "indexRefName" in src:
                assert src["indexRefName"] in {r["name"] for r in o["references"]}
        for col in o["attributes"].get("columns", []):
            assert col in mapped, col
        if o["type"] == "visualization":
            state = json.loads(o["attributes"]["visState"])
            for agg in state["aggs"]:
                if "field" in agg["params"]:
                    assert agg["params"]["field"] in mapped, agg["params"]["field"]
        if o["type"] == "dashboard":
            panels = json.loads(o["attributes"]["panelsJSON"])
            names = {r["name"] for r in o["references"]}
            assert {p["panelRefName"] for p in panels} == names and len(panels) == 5
        if o["type"] == "search":
            for field, _ in o["attributes"]["sort"]:
                assert field in mapped


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
