"""The container image: Containerfile, compose.yaml and scripts/build-image.sh.

The image is built and run for real with podman (scripts/build-image.sh: a local debootstrap
base where no registry is reachable, the demo, the daemon scoring a bundled capture, /healthz,
the image's own HEALTHCHECK, SIGTERM). Beside that, the files are checked as the engines read
them: the Containerfile's instructions (non-root user, volumes, entry point, health check run
against a real daemon), the build context, and compose.yaml's services, whose netanomd settings
go through the real configuration loader.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from netanomd.config import (
    Config,
    SuricataEveSourceConfig,
    ZeekWsSourceConfig,
    load_config,
)
from netanomd.data import attack_files
from netanomd.model import Model
from tests.conftest import REPO_DIR, free_port
from tests.waiting import wait

CONTAINERFILE = REPO_DIR / "Containerfile"
COMPOSE = REPO_DIR / "compose.yaml"
BUILD_SCRIPT = REPO_DIR / "scripts" / "build-image.sh"
STATE, CONFIG = "/var/lib/netanomd", "/etc/netanomd"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, as a builder reads them: comments and blank lines
    dropped, backslash continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, f"{path}: the last instruction ends with a continuation"
    return out


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the image's last stage (from its FROM on)."""
    steps = instructions(CONTAINERFILE)
    last = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last:]


def only(steps: list[tuple[str, str]], word: str) -> str:
    found = [rest for w, rest in steps if w == word]
    assert len(found) == 1, f"Containerfile: {len(found)} {word} instructions in the last stage"
    return found[0]


def healthcheck_command() -> list[str]:
    rest = only(final_stage(), "HEALTHCHECK")
    options, _, command = rest.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options, rest
    argv: list[str] = json.loads(command)  # exec form: no shell needed in the image
    return argv


# --- the Containerfile, as read ------------------------------------------------------------------


def test_containerfile_runs_the_daemon_as_a_non_root_user_with_config_and_state_volumes() -> None:
    steps = final_stage()
    base_arg = next(rest for word, rest in instructions(CONTAINERFILE) if word == "ARG")
    assert base_arg.startswith("BASE_IMAGE=") and "debian:bookworm" in base_arg
    stages: list[str] = []  # every stage starts from the base or from an earlier stage
    for word, rest in instructions(CONTAINERFILE):
        if word == "FROM":
            image, *alias = rest.split()
            assert image == "${BASE_IMAGE}" or image in stages, f"FROM {rest}"
            stages += alias[1:]
    user = [rest for word, rest in steps if word == "USER"]
    assert user and user[-1] not in ("root", "0", "0:0")
    # The user is made in the image, with the uid the volumes are owned by.
    made = " ".join(rest for word, rest in steps if word == "RUN")
    assert re.search(rf"useradd .*--uid (\d+) .*\b{user[-1]}\b", made)
    assert re.search(rf"install -d -o {user[-1]} .*{CONFIG} {STATE}", made)
    assert set(json.loads(only(steps, "VOLUME"))) == {CONFIG, STATE}
    assert json.loads(only(steps, "ENTRYPOINT")) == ["netanomd"]
    assert json.loads(only(steps, "CMD")) == ["run"]
    assert only(steps, "EXPOSE") == load_config(None).sinks.metrics.listen.rpartition(":")[2]


def test_build_context_holds_what_the_containerfile_copies() -> None:
    """Every COPY from the context names a path that exists and that .dockerignore (read by
    podman and Docker) lets into the context."""
    allowed = {
        line[1:].strip()
        for line in (REPO_DIR / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copies = [rest for word, rest in instructions(CONTAINERFILE) if word == "COPY"]
    sources = [src for c in copies if "--from=" not in c for src in shlex.split(c)[:-1]]
    assert sources
    for src in sources:
        assert (REPO_DIR / src).exists(), src
        assert src.rstrip("/") in allowed, f"COPY {src}: excluded by .dockerignore"


def test_healthcheck_answers_from_the_daemons_own_configuration(
    tmp_path: Path, demo: Model
) -> None:
    """The image's HEALTHCHECK command, run here against a real `netanomd run`: it fails while
    nothing listens, passes once the daemon is ready, and finds the port through the same
    configuration the daemon reads (here NETANOMD_* variables)."""
    argv = healthcheck_command()
    assert argv[0] == "python3"
    argv[0] = sys.executable  # the image's python3 is its virtualenv's
    log = tmp_path / "conn.log"
    with log.open("wb") as out:
        subprocess.run(["gzip", "-dc", str(attack_files()[0])], stdout=out, check=True)
    demo.save(tmp_path / "model.npz")
    port = free_port()
    env = {
        **os.environ,
        "NETANOMD_MODEL__PATH": str(tmp_path / "model.npz"),
        "NETANOMD_MODEL__STORE": str(tmp_path),
        "NETANOMD_STATE_DIR": str(tmp_path),
        "NETANOMD_SINKS__SQLITE__PATH": str(tmp_path / "alerts.db"),
        "NETANOMD_SINKS__ZEEK_NOTICE__ENABLED": "false",
        "NETANOMD_SOURCES__0__TYPE": "zeek_log",
        "NETANOMD_SOURCES__0__PATH": str(log),
        "NETANOMD_SOURCES__0__FROM_START": "true",
        "NETANOMD_SINKS__METRICS__LISTEN": f"127.0.0.1:{port}",
    }

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)

    before = check()
    assert before.returncode != 0 and "Connection refused" in before.stderr
    daemon = subprocess.Popen(
        [sys.executable, "-m", "netanomd", "run"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        wait(lambda: check().returncode == 0, timeout=120, what="the health check to pass")
        # Another port than the daemon's: the command follows the configuration, not a constant.
        env["NETANOMD_SINKS__METRICS__LISTEN"] = f"127.0.0.1:{free_port()}"
        assert check().returncode != 0
    finally:
        daemon.terminate()
        _, err = daemon.communicate(timeout=90)
    assert daemon.returncode == 0, err


# --- compose.yaml, as read -----------------------------------------------------------------------


def compose() -> dict[str, Any]:
    """compose.yaml as Compose itself resolves it (docker-compose config: validated against the
    Compose schema, anchors merged, ${VAR:-default} interpolated with nothing set)."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    command = ["docker-compose", "--project-directory", str(REPO_DIR), "-f", str(COMPOSE)]
    r = subprocess.run([*command, "config"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    data: dict[str, Any] = yaml.safe_load(r.stdout)
    return data


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (a named volume or a host path) of a service's volumes."""
    return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}


IMAGE = "localhost/netanomd:latest"


def test_compose_runs_netanomd_beside_zeek_or_suricata_on_the_host_network() -> None:
    data = compose()
    services: dict[str, Any] = data["services"]
    ours = {n: s for n, s in services.items() if s["image"] == IMAGE}
    assert set(ours) == {"netanomd-suricata", "netanomd-zeek", "netanomd-es-setup"}
    for name, sensor in (("suricata", "netanomd-suricata"), ("zeek", "netanomd-zeek")):
        s = services[name]
        assert s["profiles"] == [name] and services[sensor]["profiles"] == [name]
        assert s["network_mode"] == "host" and {"NET_RAW", "NET_ADMIN"} <= set(s["cap_add"])
        assert name in services[sensor]["depends_on"]
    for name, s in ours.items():
        assert s["network_mode"] == "host" and s["cap_drop"] == ["ALL"], name
        assert s["build"] == {"context": str(REPO_DIR), "dockerfile": CONTAINERFILE.name}
        assert "healthcheck" not in s, f"{name}: the image's HEALTHCHECK applies"
        assert mounts(s)[CONFIG] == "netanomd-config", name
        if name != "netanomd-es-setup":
            assert mounts(s)[STATE] == "netanomd-state", name
            assert s["stop_grace_period"] == "70s"
        assert set(mounts(s).values()) <= set(data["volumes"]), name
    # Every service belongs to one profile: the sensor is a choice, Elasticsearch and Kibana are
    # optional; Elasticsearch's health gates Kibana and the index set-up.
    by_profile: dict[str, set[str]] = {}
    for name, s in services.items():
        (profile,) = s["profiles"]
        by_profile.setdefault(profile, set()).add(name)
    assert by_profile == {
        "suricata": {"suricata", "netanomd-suricata"},
        "zeek": {"zeek", "netanomd-zeek"},
        "elastic": {"elasticsearch", "kibana", "netanomd-es-setup"},
    }
    probe = services["elasticsearch"]["healthcheck"]["test"]
    assert probe[0] == "CMD" and "/_cluster/health" in probe[-1]
    for name in ("kibana", "netanomd-es-setup"):
        assert services[name]["depends_on"]["elasticsearch"]["condition"] == "service_healthy"
    assert services["netanomd-es-setup"]["command"] == ["es", "setup"]


def test_compose_netanomd_settings_are_a_valid_configuration_fed_by_the_sensor() -> None:
    """Each netanomd service's environment goes through the real loader; its source reads what
    its sensor writes (the Suricata log volume; Zeek's WebSocket on loopback, with the package
    mounted where Zeek loads it)."""
    services = compose()["services"]

    def settings(name: str) -> Config:
        env = {k: str(v) for k, v in services[name].get("environment", {}).items()}
        assert all(k.startswith("NETANOMD_") for k in env), name
        return load_config(None, env=env)

    for name in ("netanomd-suricata", "netanomd-zeek", "netanomd-es-setup"):
        assert not settings(name).sinks.elasticsearch.enabled, f"{name}: Elasticsearch is opt-in"
    eve = settings("netanomd-suricata").sources[0]
    assert isinstance(eve, SuricataEveSourceConfig)
    logs = Path(eve.path).parent
    assert mounts(services["suricata"])[str(logs)] == "suricata-logs"
    assert mounts(services["netanomd-suricata"])[str(logs)] == "suricata-logs"
    assert services["netanomd-suricata"]["volumes"][-1].endswith(":ro")
    zeek = settings("netanomd-zeek").sources[0]
    assert isinstance(zeek, ZeekWsSourceConfig) and zeek.url == "ws://127.0.0.1:27759"
    command = services["zeek"]["command"]
    scripts = next(k for k, v in mounts(services["zeek"]).items() if v.endswith("/zeek-scripts"))
    assert scripts in command and "-C" in command
    assert mounts(services["zeek"])[scripts] == str(REPO_DIR / "zeek-scripts")
    assert (REPO_DIR / "zeek-scripts" / "__load__.zeek").exists()


# --- built and run for real ----------------------------------------------------------------------


def incidents(demo_output: str) -> list[str]:
    """The incident lines `netanomd demo` prints ("[severity score] title (kind; flows, time)")."""
    return [line.strip() for line in demo_output.splitlines() if line.startswith("   [")]


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_image_builds_runs_the_demo_and_answers_healthz(tmp_path: Path) -> None:
    """scripts/build-image.sh end to end: build (a debootstrap base when no registry answers),
    the demo's incidents, the daemon (no capabilities, state in a named volume) ready on
    /healthz with the capture's flows scored, the image's HEALTHCHECK, exit 0 on SIGTERM, its
    incidents read back from the volume; then the built image's configuration."""
    tag = "localhost/netanomd:test"
    r = subprocess.run(
        [str(BUILD_SCRIPT), "--tag", tag], capture_output=True, text=True, timeout=880
    )
    assert r.returncode == 0, r.stderr[-4000:]
    report = dict(line.split(": ", 1) for line in r.stdout.splitlines() if ": " in line)
    status, _, body = report["healthz"].partition(" ")
    assert status == "200" and json.loads(body)["ready"] is True
    scored, _, flows = report["scored"].partition(" of ")
    assert int(scored) == int(flows) > 0
    assert report["healthcheck"] == "healthy" and report["stopped"] == "exit 0"
    assert int(report["stored incidents"]) > 0  # NjRAT's C&C, read from the state volume
    # The demo in the image finds what the same demo finds here (same code, data and seed).
    here = subprocess.run(
        [sys.executable, "-m", "netanomd", "demo", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert incidents(r.stdout) == incidents(here.stdout) != []
    inspect = subprocess.run(
        ["podman", "image", "inspect", tag], capture_output=True, text=True, check=True
    )
    image = json.loads(inspect.stdout)[0]
    config = image["Config"]
    assert config["User"] == "netanomd"
    assert set(config["Volumes"]) == {CONFIG, STATE}
    assert config["Entrypoint"] == ["netanomd"] and config["Cmd"] == ["run"]
    assert image["Healthcheck"]["Test"] == ["CMD", *healthcheck_command()]  # podman puts it there
