"""Bundled sample captures for ``netanomd demo`` (see the SOURCE.txt files for provenance)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from netanomd.model import Model
    from netanomd.sources import ReadStats

DATA_DIR = Path(__file__).parent


def baseline_files() -> list[Path]:
    return sorted((DATA_DIR / "baseline").glob("*.conn.log.gz"))


def attack_files() -> list[Path]:
    return sorted((DATA_DIR / "attacks").glob("*.conn.log.gz"))


def demo_model(seed: int = 0, stats: ReadStats | None = None) -> Model:
    """The demo's model: the bundled clean baseline day, kept whole (vetted),
    per-flow features only (the attack captures come from other networks, where per-host
    behaviour learned on the baseline does not carry over), and the flow threshold at the 0.995
    training quantile rather than the incident budget, so the flow alerts under its incidents
    show (the tests that deliver alerts to sinks rely on them)."""
    from netanomd.features import FeatureSpec
    from netanomd.model import train
    from netanomd.sources import ReadStats
    from netanomd.sources.files import read_batches

    files = [str(p) for p in baseline_files()]
    batches = read_batches(files, stats if stats is not None else ReadStats())
    return train(
        batches, spec=FeatureSpec(), vetted=True, seed=seed, files=files, threshold_quantile=0.995
    )
