"""The labeled sets of the shared data folder that ``netanomd evaluate --suite`` runs over.

Each entry names a loader and the files, relative to the data folder; entries whose files are
absent are skipped (and said so). Unlabeled captures (``portscan-002-json``, the Zeek 8.2
re-runs) and the Suricata capture without per-flow labels are not in the suite.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from netanomd.evaluation.data import LabeledData, load_cicflowmeter, load_flows, load_nsl_kdd

Loader = Callable[[], LabeledData]


def suite(root: Path) -> list[tuple[str, list[Path], Loader]]:
    z = root / "zeek-conn"
    out: list[tuple[str, list[Path], Loader]] = []

    def flows(name: str, *paths: Path) -> None:
        out.append((name, list(paths), lambda: load_flows(name, list(paths))))

    for p in sorted((z / "iot23").glob("*-labeled.csv")):
        flows(f"iot23/{p.name.removesuffix('-labeled.csv')}", p)
    flows(
        "iot23/CTU-IoT-Malware-Capture-34-1 (TSV)",
        z / "iot23/CTU-IoT-Malware-Capture-34-1.conn.log.labeled",
    )
    flows("ctu50-008", z / "ctu50-008/conn.log.labeled")
    flows("ctu-sme-11-benign-day", z / "ctu-sme-11-benign-day/conn.log.labeled")
    flows("remcos-exfil", z / "remcos-exfil/conn.log.labeled")
    flows("njrat-001", z / "njrat-001/labeled-conn.log")
    cic = root / "cicids2017/westernoc2_CICIDS2017_sample_trunc.csv"
    out.append(("cicids2017-sample", [cic], lambda: load_cicflowmeter("cicids2017-sample", cic)))
    tr, te = root / "nsl-kdd/KDDTrain+_20Percent.txt", root / "nsl-kdd/KDDTest+.txt"
    out.append(("nsl-kdd", [tr, te], lambda: load_nsl_kdd("nsl-kdd", tr, te)))
    return out
