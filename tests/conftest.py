"""Shared pytest fixtures. Tests use real data copied into tests/data/ (see each SOURCE.txt)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
DATA_DIR = TESTS_DIR / "data"
REPO_DIR = TESTS_DIR.parent

# One compile cache for numba kernels across test processes.
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO_DIR / ".venv" / "numba-cache"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR
