"""netanomd.config: the shipped config, precedence, error reporting, masking, typed result."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from netanomd.config import (
    SCHEMA,
    SOURCE_TYPES,
    Config,
    ConfigValidationError,
    ElasticsearchSinkConfig,
    RedisSourceConfig,
    SuricataEveSourceConfig,
    ZeekBrokerSourceConfig,
    ZeekLogSourceConfig,
    ZeekWsSourceConfig,
    dump_yaml,
    load_config,
)
from netanomd.config.sources import FOLLOW_REMOVED
from netanomd.errors import ConfigError
from netanomd.zeek.api import FLOWS_TOPIC
from tests.conftest import REPO_DIR

SHIPPED = REPO_DIR / "config" / "netanomd.yaml"


def write(tmp_path: Path, text: str, name: str = "netanomd.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    assert isinstance(exc.value, ConfigValidationError)
    lines = str(exc.value).splitlines()
    assert lines[1:] == list(exc.value.problems)
    return lines[1:]


def defaults() -> Config:
    return load_config(None, env={})


# --- schema and defaults -----------------------------------------------------------------------


def test_schema_is_valid_draft_2020_12_and_closed() -> None:
    Draft202012Validator.check_schema(SCHEMA)

    def walk(node: dict[str, Any], where: str) -> None:
        """Every object schema reachable through properties, items and $defs is closed."""
        if node.get("type") == "object" and where != "$defs.source":
            assert node.get("additionalProperties") is False, where
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{where}.{key}")
        for key, sub in node.get("$defs", {}).items():
            walk(sub, f"$defs.{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{where}[]")

    walk(SCHEMA, "")


def test_defaults() -> None:
    cfg = defaults()
    assert cfg.model.path == "/var/lib/netanomd/model.npz"
    assert cfg.model.threshold is None
    assert cfg.model.reload_check_seconds == 60
    assert cfg.sources == (
        ZeekWsSourceConfig(
            type="zeek_ws",
            url="ws://127.0.0.1:27759",
            ca_file=None,
            insecure=False,
            topics=(FLOWS_TOPIC,),
        ),
    )
    p = cfg.pipeline
    assert (p.batch_size, p.batch_timeout_ms, p.queue_size) == (1024, 20, 65536)
    assert (p.on_full, p.dedup_community_id, p.dedup_window_seconds) == ("drop_oldest", True, 120)
    assert cfg.sinks.sqlite.enabled and cfg.sinks.sqlite.path == "/var/lib/netanomd/alerts.db"
    assert not cfg.sinks.elasticsearch.enabled
    assert cfg.sinks.elasticsearch.hosts == ("http://127.0.0.1:9200",)
    assert cfg.sinks.zeek_notice.enabled
    assert cfg.sinks.metrics.enabled and cfg.sinks.metrics.listen == "127.0.0.1:9750"
    assert (cfg.state_dir, cfg.log_level) == ("/var/lib/netanomd", "info")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.log_level = "debug"  # type: ignore[misc]


def test_shipped_config_validates_and_is_the_defaults() -> None:
    cfg = load_config(SHIPPED, env={})
    assert cfg == defaults()
    # Every key is spelled out in the file, with its default value.
    assert yaml.safe_load(SHIPPED.read_text()) == defaults().to_dict()


def test_shipped_commented_sources_are_valid(tmp_path: Path) -> None:
    """Uncommenting every example source in the shipped file gives a valid config."""
    out, in_sources = [], False
    for line in SHIPPED.read_text().splitlines():
        if line.startswith("sources:"):
            in_sources = True
        elif line and not line.startswith((" ", "#")):
            in_sources = False
        m = re.match(r"  # (- .*|  .*)$", line)
        out.append("  " + m.group(1) if in_sources and m else line)
    cfg = load_config(write(tmp_path, "\n".join(out) + "\n"), env={})
    assert tuple(s.type for s in cfg.sources) == SOURCE_TYPES
    broker = cfg.sources[1]
    assert isinstance(broker, ZeekBrokerSourceConfig)
    assert (broker.connect, broker.listen) == ("127.0.0.1:9999", None)
    assert cfg.sources[2] == ZeekLogSourceConfig(
        "zeek_log", "/opt/zeek/logs/current/conn.log", False
    )
    assert cfg.sources[5] == RedisSourceConfig(
        "redis", "redis://127.0.0.1:6379/0", "suricata", "list"
    )


def test_declaration_defaults_are_the_loaded_defaults() -> None:
    """The dataclasses' own defaults and the schema's (filled by the loader) are one set."""
    assert Config() == defaults()
    assert ElasticsearchSinkConfig().namespace == "default"


def test_every_declared_key_is_in_the_schema_once() -> None:
    """The schema is derived: each dataclass field is a property with its description."""

    def check(cls: type[Any], schema: dict[str, Any]) -> None:
        names = [f.name for f in dataclasses.fields(cls)]
        assert list(schema["properties"]) == names, cls
        for f in dataclasses.fields(cls):
            sub = schema["properties"][f.name]
            assert sub["description"], (cls, f.name)
            if sub.get("type") == "object":
                check(type(getattr(cls(), f.name)), sub)

    check(Config, SCHEMA)
    for name in SOURCE_TYPES:
        source_def = SCHEMA["$defs"][name]
        cls = type(load_config(None, env={}, overrides=_source_overrides(name)).sources[0])
        assert list(source_def["properties"]) == [f.name for f in dataclasses.fields(cls)]
        assert source_def["properties"]["type"]["const"] == name


def _source_overrides(name: str) -> list[str]:
    """Enough --set items to make sources[0] a valid source of type ``name``."""
    needs = {
        "zeek_broker": ["sources[0].connect=zeek:9999"],
        "zeek_log": ["sources[0].path=/x.log"],
        "suricata_socket": ["sources[0].path=/s"],
    }
    return [f"sources[0].type={name}", *needs.get(name, [])]


def test_a_new_source_type_is_one_declaration(tmp_path: Path) -> None:
    """Appending one class to the source table (netanomd/config/sources.py) is the only edit
    the configuration needs: schema, defaults, errors and the typed result follow."""
    tree = tmp_path / "netanomd"
    shutil.copytree(REPO_DIR / "netanomd", tree, ignore=shutil.ignore_patterns("__pycache__"))
    table = tree / "config" / "sources.py"
    table.write_text(
        table.read_text()
        + textwrap.dedent(
            """

            @source("kafka")
            @dataclass(frozen=True)
            class KafkaSourceConfig(SourceConfig):
                \"\"\"Suricata EVE through Kafka.\"\"\"

                brokers: str = required("bootstrap servers")
                topic: str = setting("eve", "topic to consume")
            """
        )
    )
    program = textwrap.dedent(
        """
        from netanomd.config import SOURCE_TYPES, load_config
        from netanomd.errors import ConfigError
        print(SOURCE_TYPES[-1])
        cfg = load_config(None, env={}, overrides=["sources[0].type=kafka",
                                                   "sources[0].brokers=k:9092"])
        print(cfg.sources[0])
        try:
            load_config(None, env={}, overrides=["sources[0].type=kafka",
                                                 "sources[0].topik=x"])
        except ConfigError as e:
            print(e)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    ).stdout.splitlines()
    assert out == [
        "kafka",
        "KafkaSourceConfig(type='kafka', brokers='k:9092', topic='eve')",
        "invalid configuration (2 problems):",
        "--set sources[0].topik=x: sources[0].topik: unknown key 'topik'; did you mean 'topic'?",
        "defaults: sources[0].brokers: missing required key",
    ]


# --- precedence --------------------------------------------------------------------------------


def test_precedence_file_env_set(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "pipeline:\n  batch_size: 10\n  queue_size: 100\nsinks:\n  sqlite:\n    path: /file.db\n",
    )
    env = {
        "NETANOMD_PIPELINE__BATCH_SIZE": "20",
        "NETANOMD_SINKS__SQLITE__PATH": "/env.db",
        "NETANOMD_SINKS__METRICS__ENABLED": "false",
        "NETANOMD_LOG_LEVEL": "debug",
        "NETANOMD_MODEL__THRESHOLD": "0.75",
        "NETANOMD_ES_PASSWORD": "not a config key",  # read by es_setup, ignored here
        "OTHER": "x",
    }
    cfg = load_config(path, env=env)
    assert cfg.pipeline.batch_size == 20 and cfg.pipeline.queue_size == 100
    assert cfg.sinks.sqlite.path == "/env.db"
    assert cfg.sinks.metrics.enabled is False
    assert cfg.log_level == "debug"
    assert cfg.model.threshold == 0.75

    cfg = load_config(
        path,
        env=env,
        overrides=["pipeline.batch_size=30", "sinks.metrics.enabled=yes", "model.threshold=null"],
    )
    assert cfg.pipeline.batch_size == 30
    assert type(cfg.pipeline.batch_size) is int
    assert cfg.sinks.metrics.enabled is True
    assert cfg.model.threshold is None
    assert cfg.sinks.sqlite.path == "/env.db"  # untouched by --set
    # Later --set wins over earlier.
    cfg = load_config(path, env={}, overrides=["state_dir=/a", "state_dir=/b"])
    assert cfg.state_dir == "/b"


def test_overrides_reach_into_sources(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        env={"NETANOMD_SOURCES__0__TOPICS": "[a/b, c/d]"},
        overrides=[
            "sources[0].url=wss://zeek.example:27759",
            "sources[1].type=suricata_eve",
            "sources.1.from_start=true",
        ],
    )
    ws, eve = cfg.sources
    assert isinstance(ws, ZeekWsSourceConfig)
    assert ws.url == "wss://zeek.example:27759" and ws.topics == ("a/b", "c/d")
    assert eve == SuricataEveSourceConfig("suricata_eve", "/var/log/suricata/eve.json", True)


def test_changing_a_source_type_gets_that_types_defaults() -> None:
    cfg = load_config(
        None,
        env={"NETANOMD_SOURCES__0__TYPE": "zeek_broker"},
        overrides=["sources[0].listen=0.0.0.0:9999"],
    )
    assert cfg.sources == (
        ZeekBrokerSourceConfig("zeek_broker", None, "0.0.0.0:9999", (FLOWS_TOPIC,)),
    )
    with pytest.raises(ConfigError) as exc:
        load_config(None, env={}, overrides=["sources[0].type=zeek_broker", "sources=null"])
    assert problems(exc) == ["--set sources=null: sources: null is not of type array"]


def test_quoted_value_stays_a_string() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, env={}, overrides=["pipeline.batch_size='5'"])
    assert problems(exc) == [
        "--set pipeline.batch_size='5': pipeline.batch_size: '5' is not of type integer"
    ]


# --- error reporting ---------------------------------------------------------------------------

BAD = """\
model:
  path: /x/model.npz
  treshold: 0.5
sources:
  - type: zeek_ws
    url: http://nope
  - type: zeek_log
    from_start: maybe
  - type: zeek_broker
    connect: a:1
    listen: b:2
pipeline:
  batch_size: 0
  on_full: Block
sinks:
  elasticsearch:
    hosts: ftp://x
log_level: INFO
"""


def test_all_errors_at_once_with_lines_paths_and_origins(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    with pytest.raises(ConfigError) as exc:
        load_config(
            path,
            env={"NETANOMD_PIPELINE__QUEUE_SIZE": "-5"},
            overrides=["sinks.metrics.listen=nohost"],
        )
    assert str(exc.value).startswith("invalid configuration (11 problems):\n")
    assert problems(exc) == [
        f"{path}:3: model.treshold: unknown key 'treshold'; did you mean 'threshold'?",
        f"{path}:6: sources[0].url: 'http://nope' is not a valid WebSocket URL (ws:// or wss://)",
        f"{path}:7: sources[1].path: missing required key",
        f"{path}:8: sources[1].from_start: 'maybe' is not of type boolean",
        f"{path}:9: sources[2]: needs exactly one of 'connect' (host:port of Zeek's Broker "
        "listener) or 'listen' (host:port for Zeek to peer with)",
        f"{path}:13: pipeline.batch_size: 0 is less than the minimum of 1",
        f"{path}:14: pipeline.on_full: 'Block' is not one of 'block', 'drop_oldest', "
        "'drop_newest'; did you mean 'block'?",
        f"{path}:17: sinks.elasticsearch.hosts: 'ftp://x' is not a valid Elasticsearch URL "
        "(http:// or https://)",
        f"{path}:18: log_level: 'INFO' is not one of 'debug', 'info', 'warning', 'error', "
        "'critical'; did you mean 'info'?",
        "env NETANOMD_PIPELINE__QUEUE_SIZE: pipeline.queue_size: -5 is less than the minimum of 1",
        "--set sinks.metrics.listen=nohost: sinks.metrics.listen: 'nohost' is not a valid "
        "host:port (e.g. 127.0.0.1:9999)",
    ]


def test_env_and_set_replace_the_file_line(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline:\n  batch_size: 10\n  queue_size: 10\n")
    with pytest.raises(ConfigError) as exc:
        load_config(
            path,
            env={"NETANOMD_PIPELINE__BATCH_SIZE": "-5"},
            overrides=["pipeline.queue_size=lots"],
        )
    assert problems(exc) == [
        "env NETANOMD_PIPELINE__BATCH_SIZE: pipeline.batch_size: -5 is less than the minimum of 1",
        "--set pipeline.queue_size=lots: pipeline.queue_size: 'lots' is not of type integer",
    ]


def test_unknown_keys_suggest_the_closest(tmp_path: Path) -> None:
    path = write(tmp_path, "pipline:\n  batch_size: 1\nsinks:\n  sqlite:\n    pth: /x.db\n")
    with pytest.raises(ConfigError) as exc:
        load_config(
            path,
            env={"NETANOMD_SINKS__METRICS__LISTN": "1.2.3.4:9"},
            overrides=["modle.path=/m.npz", "sinks.kafka.enabled=true"],
        )
    assert problems(exc) == [
        f"{path}:1: pipline: unknown key 'pipline'; did you mean 'pipeline'?",
        f"{path}:5: sinks.sqlite.pth: unknown key 'pth'; did you mean 'path'?",
        "env NETANOMD_SINKS__METRICS__LISTN: sinks.metrics.listn: unknown key 'listn'; "
        "did you mean 'listen'?",
        "--set modle.path=/m.npz: modle: unknown key 'modle'; did you mean 'model'?",
        "--set sinks.kafka.enabled=true: sinks.kafka: unknown key 'kafka' "
        "(known keys: sqlite, elasticsearch, zeek_notice, metrics)",
    ]


def test_wrong_source_type_names_the_allowed_types(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  - type: zeek_ws\n  - type: surricata_eve\n    path: /x\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert problems(exc) == [
        f"{path}:3: sources[1].type: 'surricata_eve' is not one of 'zeek_ws', 'zeek_broker', "
        "'zeek_log', 'suricata_eve', 'suricata_socket', 'redis'; did you mean 'suricata_eve'?"
    ]
    path = write(tmp_path, "sources:\n  - url: ws://x:1\n  - zeek_ws\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert problems(exc) == [
        f"{path}:2: sources[0].type: missing required key (one of: zeek_ws, zeek_broker, "
        "zeek_log, suricata_eve, suricata_socket, redis)",
        f"{path}:3: sources[1]: 'zeek_ws' is not of type object",
    ]
    # A key of another source type is unknown for this one.
    path = write(tmp_path, "sources:\n  - type: suricata_socket\n    path: /s\n    follow: true\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert problems(exc) == [
        f"{path}:4: sources[0].follow: unknown key 'follow' (known keys: type, path, kind)"
    ]


def test_follow_is_removed_with_what_to_do_instead(tmp_path: Path) -> None:
    """``follow:`` was accepted and ignored: the daemon always follows files. Old configs
    get an error naming the key and what to do, from every layer."""
    path = write(
        tmp_path,
        "sources:\n  - type: zeek_log\n    path: /x.log\n    follow: true\n"
        "  - type: suricata_eve\n    follow: false\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_config(
            path,
            env={"NETANOMD_SOURCES__1__FOLLOW": "true"},
            overrides=["sources[0].follow=false"],
        )
    assert problems(exc) == [
        f"env NETANOMD_SOURCES__1__FOLLOW: sources[1].follow: {FOLLOW_REMOVED}",
        f"--set sources[0].follow=false: sources[0].follow: {FOLLOW_REMOVED}",
    ]
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert problems(exc) == [
        f"{path}:4: sources[0].follow: {FOLLOW_REMOVED}",
        f"{path}:6: sources[1].follow: {FOLLOW_REMOVED}",
    ]
    assert "netanomd run always follows files" in FOLLOW_REMOVED


def test_bad_override_syntax_and_list_index() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(
            None,
            env={"NETANOMD_PIPELINE____X": "1"},
            overrides=["log_level", "sources[3].path=/x", "log_level.x=1"],
        )
    assert problems(exc) == [
        "env NETANOMD_PIPELINE____X: empty key segment in the variable name",
        "--set log_level: expected key.path=value (e.g. log_level=debug)",
        "--set sources[3].path=/x: sources[3].path: sources has 1 item(s); [3] is out of range "
        "(use [1] to add one)",
        "--set log_level.x=1: log_level.x: log_level is not a mapping, cannot set 'x' in it",
    ]


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_config(tmp_path / "missing.yaml", env={})
    path = write(tmp_path, "model:\n  path: [unclosed\nlog_level: info\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:3:\d+: not valid YAML"):
        load_config(path, env={})
    path = write(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path, env={})
    path = write(tmp_path, "log_level: info\nstate_dir: /a\nlog_level: debug\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert problems(exc) == [f"{path}:3: log_level: duplicate key, first on line 1"]
    assert load_config(write(tmp_path, "# nothing but comments\n"), env={}) == defaults()


def test_elasticsearch_credentials_consistency(tmp_path: Path) -> None:
    path = write(tmp_path, "sinks:\n  elasticsearch:\n    enabled: true\n    username: bob\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert problems(exc) == [
        f"{path}:4: sinks.elasticsearch.username: given without a password (set "
        "sinks.elasticsearch.password or the NETANOMD_ES_PASSWORD environment variable)"
    ]
    cfg = load_config(path, env={"NETANOMD_ES_PASSWORD": "pw"})
    assert cfg.sinks.elasticsearch.username == "bob"


def test_non_finite_numbers_are_refused() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, env={}, overrides=["model.threshold=.nan"])
    assert problems(exc) == [
        "--set model.threshold=.nan: model.threshold: nan is not a finite number"
    ]


# --- secrets and output ------------------------------------------------------------------------


def test_secrets_masked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "sinks:\n  elasticsearch:\n    api_key: s3cr3t-key\n    username: bob\n"
        "sources:\n  - type: redis\n    url: redis://user:hunter2@redis:6379/0\n",
    )
    cfg = load_config(path, env={"NETANOMD_SINKS__ELASTICSEARCH__PASSWORD": "pa55"})
    es = cfg.sinks.elasticsearch
    assert (es.api_key, es.password) == ("s3cr3t-key", "pa55")
    shown = cfg.to_dict()
    assert shown["sinks"]["elasticsearch"]["api_key"] == "***"
    assert shown["sinks"]["elasticsearch"]["password"] == "***"
    assert shown["sinks"]["elasticsearch"]["username"] == "bob"
    assert shown["sources"][0]["url"] == "redis://user:***@redis:6379/0"
    assert cfg.to_dict(mask_secrets=False)["sinks"]["elasticsearch"]["password"] == "pa55"
    for text in (dump_yaml(cfg), repr(cfg)):
        for secret in ("s3cr3t-key", "pa55"):
            assert secret not in text
    assert "hunter2" not in dump_yaml(cfg)
    # Unset secrets stay null, so "not configured" remains visible.
    assert defaults().to_dict()["sinks"]["elasticsearch"]["api_key"] is None

    with pytest.raises(ConfigError) as exc:
        load_config(None, env={}, overrides=["sinks.elasticsearch.password=[oops, s3cr3t]"])
    assert problems(exc) == [
        "--set sinks.elasticsearch.password=***: sinks.elasticsearch.password: '***' is not of "
        "type string or null"
    ]
    with pytest.raises(ConfigError) as exc:
        load_config(None, env={}, overrides=["sources[0].url=redis://u:s3cr3t@h"])
    assert "s3cr3t" not in str(exc.value)


def test_dump_yaml_round_trips(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        env={},
        overrides=[
            "sources[1].type=zeek_log",
            "sources[1].path=/logs/*.log",
            "pipeline.on_full=block",
            "sinks.elasticsearch.hosts=https://a:9200",
        ],
    )
    again = load_config(write(tmp_path, dump_yaml(cfg)), env={})
    assert again == cfg


# --- property ----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.integers(), st.integers(min_value=-10, max_value=2_000_000)))
def test_batch_size_override_validates_or_names_the_key(n: int) -> None:
    try:
        cfg = load_config(None, env={}, overrides=[f"pipeline.batch_size={n}"])
    except ConfigError as e:
        assert not 1 <= n <= 1_000_000, str(e)
        assert "pipeline.batch_size" in str(e)
        assert isinstance(e, ConfigValidationError) and len(e.problems) == 1
    else:
        assert 1 <= n <= 1_000_000
        assert cfg.pipeline.batch_size == n


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_override_text_gives_config_or_config_error(value: str) -> None:
    """Whatever follows '=', the result is a Config or a ConfigError about that key."""
    try:
        cfg = load_config(None, env={}, overrides=[f"pipeline.batch_size={value}"])
    except ConfigError as e:
        assert "pipeline.batch_size" in str(e)
    else:
        assert 1 <= cfg.pipeline.batch_size <= 1_000_000


yaml_keys = st.sampled_from(
    ["model", "sources", "pipeline", "sinks", "type", "path", "url", "enabled", "x", "zeek_ws"]
)
yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**7),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(["zeek_ws", "redis", "zeek_broker", "a:1"]),
)
yaml_data = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(yaml_keys, inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(yaml_keys, yaml_data, max_size=5))
def test_any_yaml_document_gives_config_or_config_error(doc: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), yaml.safe_dump(doc))
        try:
            load_config(path, env={})
        except ConfigError as e:
            assert isinstance(e, ConfigValidationError), e
            assert all(line.startswith(f"{path}:") for line in e.problems)


# --- ports and URLs (validation) and `config check` on this machine ------------------------------
@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ("sinks.metrics.listen=127.0.0.1:99999", "'127.0.0.1:99999': port 99999 is not from 1"),
        ("sinks.metrics.listen=127.0.0.1:0", "port 0 is not from 1 to 65535"),
        ("sources[0].url=ws://127.0.0.1:70000", "sources[0].url: 'ws://127.0.0.1:70000': the port"),
        ("sinks.elasticsearch.hosts=http://es:99999", "sinks.elasticsearch.hosts: 'http://es"),
        ("sinks.elasticsearch.hosts=http://:9200", "'http://:9200' has no host"),
        ("sinks.elasticsearch.hosts=http://es:92a", "the port is not a number from 1 to 65535"),
    ],
)
def test_ports_and_urls_are_checked_when_loading(setting: str, said: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, env={}, overrides=[setting])
    assert said in "\n".join(problems(exc))


class Machine:
    """A configuration of real files on this machine, each check's subject good; a test then
    breaks one thing and `config check` must name it."""

    def __init__(self, tmp_path: Path, model_file: Path) -> None:
        self.tmp = tmp_path
        self.logs = tmp_path / "zeek"
        self.logs.mkdir()
        (self.logs / "conn.log").write_bytes(
            (DATA / "zeek/ctu-sme-11-head200.conn.log").read_bytes()
        )
        self.state = tmp_path / "state"
        self.state.mkdir()
        self.settings = {
            "model.path": str(model_file),
            "sources[0].type": "zeek_log",
            "sources[0].path": str(self.logs / "*.log"),
            "sources[1].type": "suricata_socket",
            "sources[1].path": str(tmp_path / "eve.sock"),
            "sinks.sqlite.path": str(self.state / "alerts.db"),
            "state_dir": str(self.state),
            "sinks.metrics.listen": f"127.0.0.1:{free_port()}",
        }

    def check(
        self, capsys: pytest.CaptureFixture[str], **changes: str | None
    ) -> tuple[int, list[str]]:
        """`netanomd config check` with the settings changed (None: left out)."""
        from netanomd.cli import main

        merged = {**self.settings, **changes}
        sets = [f"{k}={v}" for k, v in merged.items() if v is not None]
        code = main(["config", "check", *(a for s in sets for a in ("--set", s))])
        out = capsys.readouterr()
        return code, (out.err + out.out).splitlines()


DATA = REPO_DIR / "tests" / "data"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from netanomd.data import demo_model

    path = tmp_path_factory.mktemp("model") / "model.npz"
    demo_model().save(path)
    return path


@pytest.fixture()
def machine(tmp_path: Path, model_file: Path) -> Machine:
    return Machine(tmp_path, model_file)


def test_config_check_passes_a_sound_configuration(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = machine.check(capsys)
    assert code == 0, lines
    assert lines[-1] == "defaults: OK (2 sources)"


def test_config_check_model(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    missing = machine.tmp / "nope.npz"
    code, lines = machine.check(capsys, **{"model.path": str(missing)})
    assert code == 1
    assert f"model.path: '{missing}': no such file (make one with netanomd train)" in lines
    not_a_model = machine.tmp / "conn.npz"
    not_a_model.write_bytes((DATA / "zeek/ctu-sme-11-head200.conn.log").read_bytes())
    code, lines = machine.check(capsys, **{"model.path": str(not_a_model)})
    assert code == 1
    assert any(
        ln.startswith(f"model.path: '{not_a_model}': not a netanomd model artifact") for ln in lines
    ), lines
    import numpy as np

    other = machine.tmp / "other.npz"  # a real .npz, not ours: no meta.json
    np.savez(other, x=np.arange(3))
    code, lines = machine.check(capsys, **{"model.path": str(other)})
    assert f"model.path: '{other}': not a netanomd model artifact (no meta.json)" in lines


def test_config_check_log_paths(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    gone = machine.tmp / "no-such-dir" / "conn.log"
    code, lines = machine.check(capsys, **{"sources[0].path": str(gone)})
    assert code == 1
    assert (
        f"sources[0].path: '{gone}': no such file, and its directory {gone.parent} does not exist"
        in lines
    )
    later = machine.logs / "conn.2.log"  # not there yet, but its directory is: waited for
    code, lines = machine.check(capsys, **{"sources[0].path": str(later)})
    assert (
        code == 0
        and f"note: sources[0].path: '{later}': no such file yet: it is waited for" in lines
    )
    (machine.logs / "dir.log").mkdir()  # the glob now matches a directory
    code, lines = machine.check(capsys)
    assert code == 1
    assert f"sources[0].path: '{machine.logs}/*.log': {machine.logs}/dir.log is not a file" in lines


def test_config_check_socket(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    nowhere = machine.tmp / "run" / "eve.sock"
    code, lines = machine.check(capsys, **{"sources[1].path": str(nowhere)})
    assert (
        code == 1
        and f"sources[1].path: '{nowhere}': directory {nowhere.parent} does not exist" in lines
    )
    regular = machine.tmp / "eve.json"
    regular.write_text("{}\n")
    code, lines = machine.check(capsys, **{"sources[1].path": str(regular)})
    assert code == 1
    assert (
        f"sources[1].path: '{regular}': exists and is not a socket (the daemon would replace it)"
        in lines
    )
    served = machine.tmp / "served.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(served))
        code, lines = machine.check(capsys, **{"sources[1].path": str(served)})
    assert code == 1
    assert f"sources[1].path: '{served}': is in use: something serves this socket already" in lines


def test_config_check_ports_in_use(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = f"127.0.0.1:{busy.getsockname()[1]}"
        code, lines = machine.check(capsys, **{"sinks.metrics.listen": taken})
        assert code == 1
        assert any(
            ln.startswith(
                f"sinks.metrics.listen: '{taken}': cannot listen there: Address already in use"
            )
            for ln in lines
        ), lines
        code, lines = machine.check(
            capsys,
            **{
                "sources[0].type": "zeek_broker",
                "sources[0].path": None,
                "sources[0].listen": taken,
            },
        )
        assert code == 1 and any(ln.startswith(f"sources[0].listen: '{taken}'") for ln in lines)
    code, lines = machine.check(capsys, **{"sinks.metrics.listen": "127.0.0.1:99999"})
    assert code == 2  # the value alone is wrong: refused when loading, by every command


def test_config_check_sqlite_and_state_dir(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = machine.tmp / "plain"
    a_file.write_text("x")
    code, lines = machine.check(
        capsys, **{"sinks.sqlite.path": str(a_file / "alerts.db"), "state_dir": str(a_file)}
    )
    assert code == 1
    assert f"sinks.sqlite.path: '{a_file}/alerts.db': {a_file} is not a directory" in lines
    assert f"state_dir: '{a_file}': {a_file} is not a directory" in lines
    beneath = a_file / "sub" / "alerts.db"  # its ancestor is a file: cannot be made
    code, lines = machine.check(capsys, **{"sinks.sqlite.path": str(beneath)})
    assert (
        f"sinks.sqlite.path: '{beneath}': directory {beneath.parent} does not exist and "
        "cannot be made" in lines
    )
    fresh = machine.tmp / "new" / "alerts.db"  # absent, but the daemon makes it
    code, lines = machine.check(capsys, **{"sinks.sqlite.path": str(fresh)})
    assert code == 0
    assert (
        f"note: sinks.sqlite.path: '{fresh}': directory {fresh.parent} does not exist; "
        "it will be made" in lines
    )
    code, lines = machine.check(capsys, **{"sinks.sqlite.path": str(a_file)})
    assert code == 1 and f"sinks.sqlite.path: '{a_file}': is not an SQLite database" in lines
    from netanomd.sinks.sqlite import SQLiteSink

    real = machine.state / "real.db"
    SQLiteSink(real).close()
    assert machine.check(capsys, **{"sinks.sqlite.path": str(real)})[0] == 0


def test_config_check_endpoint_files(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    token = machine.tmp / "token"
    token.write_text("")
    code, lines = machine.check(capsys, **{"sinks.metrics.token_file": str(token)})
    assert code == 1
    assert (
        f"sinks.metrics.token_file: '{token}': {token} must hold one token (no spaces), not nothing"
        in lines
    )
    cert, key, other_key = machine.tmp / "c.pem", machine.tmp / "k.pem", machine.tmp / "o.pem"
    for k, c in ((key, cert), (other_key, machine.tmp / "o-cert.pem")):
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt"),
                *("ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=x"),
                *("-keyout", str(k), "-out", str(c)),
            ],
            check=True,
            capture_output=True,
        )
    tls = {"sinks.metrics.tls_cert": str(cert), "sinks.metrics.tls_key": str(key)}
    assert machine.check(capsys, **tls)[0] == 0
    code, lines = machine.check(capsys, **{**tls, "sinks.metrics.tls_key": str(other_key)})
    assert code == 1
    assert any(
        ln.startswith(f"sinks.metrics.tls_cert: '{cert}': cannot load {cert} with") for ln in lines
    )
    code, lines = machine.check(capsys, **{**tls, "sinks.metrics.tls_key": str(machine.tmp / "x")})
    assert (
        f"sinks.metrics.tls_key: '{machine.tmp / 'x'}': no such file, or it cannot be read" in lines
    )


def test_config_check_offline_checks_values_only(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    from netanomd.cli import main

    code = main(["config", "check", "--offline", "--set", "model.path=/nowhere/model.npz"])
    assert code == 0 and capsys.readouterr().out.strip() == "defaults: OK (1 sources)"
