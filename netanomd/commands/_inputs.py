"""Reading input files for the offline commands: progress bar, merged read statistics."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from netanomd.flow import FlowBatch
from netanomd.sources import ReadStats
from netanomd.sources.files import open_source

log = logging.getLogger(__name__)


def progress(desc: str) -> Any:
    """A tqdm bar on a terminal, nothing otherwise."""
    from tqdm import tqdm

    return tqdm(
        desc=desc, unit=" flows", unit_scale=True, disable=not sys.stderr.isatty(), leave=False
    )


def read_inputs(paths: Sequence[str], stats: ReadStats, desc: str) -> Iterator[FlowBatch]:
    """Batches from every file in turn; ``stats`` accumulates what each source read."""
    bar = progress(desc)
    try:
        for path in paths:
            source = open_source(path)
            for batch in source.batches():
                bar.update(len(batch))
                yield batch
            stats.merge(source.stats)
            if source.stats.malformed:
                log.warning("%s: skipped %d malformed line(s)", path, source.stats.malformed)
    finally:
        bar.close()


def stats_line(stats: ReadStats) -> str:
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(stats.skipped.items()))
    line = f"{stats.rows} flows read, {stats.malformed} malformed lines skipped"
    return line + (f", other records skipped: {skipped}" if skipped else "")
