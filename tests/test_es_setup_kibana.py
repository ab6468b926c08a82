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
from netanomd.ecs import template_mappings
from netanomd.es_client import elasticsearch_client
from netanomd.es_setup import TEMPLATE_NAME
from netanomd.kibana import export_ndjson, saved_objects
from netanomd.model import Model
from tests.es_server import FakeElasticsearch

REPO = Path(__file__).parent.parent


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
    assert kinds.count("search") == 5 and kinds.count("dashboard") == 1
    assert kinds.count("index-pattern") == 2
    # No placeholder addresses in saved searches (an analyst would get an empty result).
    assert not re.search(r"\b\d+\.\d+\.\d+\.\d+\b", text)
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
