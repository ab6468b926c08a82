"""Shared pytest fixtures. Tests use real data copied into tests/data/ (see each SOURCE.txt)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netanomd.data import attack_files, demo_model
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches
from tests.es_server import FakeElasticsearch
from tests.waiting import wait

TESTS_DIR = Path(__file__).parent
DATA_DIR = TESTS_DIR / "data"
REPO_DIR = TESTS_DIR.parent
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"

# One compile cache for numba kernels across test processes.
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO_DIR / ".venv" / "numba-cache"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture()
def es() -> Iterator[FakeElasticsearch]:
    """A running in-repo Elasticsearch test server (tests/es_server.py)."""
    server = FakeElasticsearch()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def demo() -> Model:
    """The demo model (bundled clean baseline day); shared, so reset() before stream tests."""
    return demo_model()


@pytest.fixture(scope="session")
def remcos() -> FlowBatch:
    """The bundled RemcosRAT exfiltration capture (766 labeled flows)."""
    path = next(p for p in attack_files() if "remcos" in p.name)
    return FlowBatch.concat(list(read_batches([path], ReadStats())))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def redis_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            REDIS,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    wait(lambda: _pings(client), 20, "redis-server")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False
