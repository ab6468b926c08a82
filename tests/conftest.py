"""Shared pytest fixtures. Tests use real data copied into tests/data/ (see each SOURCE.txt)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.es_server import FakeElasticsearch

TESTS_DIR = Path(__file__).parent
DATA_DIR = TESTS_DIR / "data"
REPO_DIR = TESTS_DIR.parent

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
