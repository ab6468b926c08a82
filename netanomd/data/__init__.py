"""Bundled sample captures for ``netanomd demo`` (see the SOURCE.txt files for provenance)."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).parent


def baseline_files() -> list[Path]:
    return sorted((DATA_DIR / "baseline").glob("*.conn.log.gz"))


def attack_files() -> list[Path]:
    return sorted((DATA_DIR / "attacks").glob("*.conn.log.gz"))
