"""Measure behaviour incidents on the shared captures: ``python -m netanomd.behaviour.measure``.

Owns the two measurements of issue 15 for this library (no labels are used to choose anything):

* clean: learn on the first half (flows in time order) of a vetted benign day, count incidents
  on its second half, and for each attack capture check that the attacking host (or, for a
  spoofed flood, the flooded service) has an incident that names the behaviour and holds
  at least 90% of its flows;
* contaminated: learn on the first half of a labeled capture itself (attack included, labels
  unseen) and report, on the second half, the share of malicious and of benign flows that fall
  inside an incident (Background/Unknown labels are left out), plus flow-level P/R/F1;

and the throughput of the whole path (windows, detectors, incidents) in flows per second.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from netanomd.behaviour.detectors import DEFAULT_MARGIN, DEFAULT_QUANTILE
from netanomd.behaviour.incidents import Incident, covered
from netanomd.behaviour.pipeline import BehaviourPipeline, learn
from netanomd.behaviour.windows import HostWindows
from netanomd.flow import FlowBatch
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches

BENIGN = "zeek-conn/ctu-sme-11-benign-day/conn.log.labeled"
#: Attack capture -> the attacker's address (None: a spoofed flood, judged by its service).
ATTACKS: dict[str, str | None] = {
    "zeek-conn/zeek-8.2-from-pcaps/tsv/slips-malicious-ssh-bruteforce.conn.log": "147.32.80.40",
    "zeek-conn/zeek-8.2-from-pcaps/tsv/zeek-traces-ftp_bruteforce.conn.log": "192.168.56.1",
    "zeek-conn/zeek-8.2-from-pcaps/tsv/zeek-traces-ssh_sshguess.conn.log": "192.168.56.1",
    "zeek-conn/zeek-8.2-from-pcaps/tsv/slips-test12-icmp-portscan.conn.log": "192.168.1.109",
    "zeek-conn/zeek-8.2-from-pcaps/tsv/zeek-traces-nmap-vsn.conn.log": "192.168.1.71",
    "zeek-conn/zeek-8.2-from-pcaps/tsv/zeek-traces-rfb_vnc-scanner.conn.log": "192.168.0.11",
    "zeek-conn/zeek-8.2-from-pcaps/tsv/zeek-traces-dhcp_dhcp_flood.conn.log": None,
}
#: ctu50-008 and IoT-23 34-1 hold scans (the floor); the rest show C&C and benign-only rates.
CONTAMINATED = (
    "zeek-conn/ctu50-008/conn.log.labeled",
    "zeek-conn/iot23/CTU-Malware-Capture-34-1-labeled.csv",
    "zeek-conn/iot23/CTU-Malware-Capture-8-1-labeled.csv",
    "zeek-conn/iot23/CTU-Malware-Capture-20-1-labeled.csv",
    "zeek-conn/iot23/CTU-Malware-Capture-21-1-labeled.csv",
    "zeek-conn/iot23/CTU-Malware-Capture-42-1-labeled.csv",
    "zeek-conn/iot23/CTU-Malware-Capture-44-1-labeled.csv",
    "zeek-conn/iot23/CTU-Honeypot-Capture-4-1-labeled.csv",
    "zeek-conn/iot23/CTU-Honeypot-Capture-5-1-labeled.csv",
    "zeek-conn/iot23/CTU-Honeypot-Capture-7-1-labeled.csv",
)


def load(path: str | Path) -> FlowBatch:
    """Every flow of a file, in the order a sensor gets them: by end (Zeek logs a flow when it
    ends; some shared files are sorted by start)."""
    batch = FlowBatch.concat(list(read_batches([path], ReadStats())))
    end = batch.numeric("ts") + np.maximum(batch.numeric("duration"), 0.0)
    return batch.take(np.argsort(end, kind="stable"))


def halves(batch: FlowBatch) -> tuple[FlowBatch, FlowBatch]:
    """First and second half of the flows, in time order."""
    mid = len(batch) // 2
    return batch.slice(0, mid), batch.slice(mid)


def run(pipeline: BehaviourPipeline, batch: FlowBatch, step: int = 8192) -> list[Incident]:
    """Stream ``batch`` through ``pipeline`` in pieces, as a sensor would; all incidents."""
    for off in range(0, len(batch), step):
        pipeline.process(batch.slice(off, step))
    return pipeline.finish()


@dataclass
class AttackResult:
    capture: str
    attacker: str
    flows: int
    share: float  # attacker's flows inside an incident about it
    behaviours: list[str]
    titles: list[str]

    @property
    def passed(self) -> bool:
        return self.share >= 0.9 and bool(self.behaviours)


def clean(
    data: Path, quantile: float = DEFAULT_QUANTILE, margin: float = DEFAULT_MARGIN
) -> dict[str, Any]:
    """The clean measurement (see the module docstring)."""
    train, test = halves(load(data / BENIGN))
    thr = learn([train], quantile=quantile, margin=margin)
    benign = run(BehaviourPipeline(thr), test)
    attacks = []
    for rel, attacker in ATTACKS.items():
        batch = load(data / rel)
        incs = run(BehaviourPipeline(thr), batch)
        if attacker is None:  # spoofed: the flooded service is what an analyst can act on
            svc = (
                pc.binary_join_element_wise(
                    batch.column("proto"), pc.cast(batch.column("resp_p"), "string"), "/"
                )
            ).to_numpy(zero_copy_only=False)
            values, counts = np.unique(np.asarray(svc, dtype=str), return_counts=True)
            who = str(values[counts.argmax()])
            mine = np.asarray(svc, dtype=str) == who
            about = [i for i in incs if i.role == "service" and i.host == who]
        else:
            who = attacker
            mine = np.asarray(pc.equal(batch.column("orig_h"), attacker).fill_null(False))
            about = [i for i in incs if i.host == attacker or i.peer == attacker]
        share = float((covered(about, batch) & mine).sum() / max(mine.sum(), 1))
        attacks.append(
            AttackResult(
                Path(rel).name,
                who,
                int(mine.sum()),
                share,
                sorted({i.behaviour for i in about}),
                [i.title for i in about],
            )
        )
    return {"thresholds": thr, "benign_incidents": benign, "attacks": attacks}


def contaminated(
    data: Path, rel: str, quantile: float = DEFAULT_QUANTILE, margin: float = DEFAULT_MARGIN
) -> dict[str, Any]:
    """The contaminated measurement for one labeled capture (see the module docstring)."""
    train, test = halves(load(data / rel))
    windows = HostWindows()
    thr = learn([train], quantile=quantile, margin=margin, windows=windows)
    incs = run(BehaviourPipeline(thr, windows=windows), test)
    inside = covered(incs, test)
    label = np.asarray(test.column("label").fill_null("").to_numpy(zero_copy_only=False), str)
    mal = np.char.startswith(np.char.lower(label), "malicious")
    ben = np.char.startswith(np.char.lower(label), "benign")
    tp = int((inside & mal).sum())
    fp = int((inside & ben).sum())
    fn = int((~inside & mal).sum())
    precision = tp / max(tp + fp, 1)
    recall = tp / max(tp + fn, 1)
    return {
        "capture": rel,
        "test_flows": len(test),
        "malicious": int(mal.sum()),
        "benign": int(ben.sum()),
        "malicious_inside": recall,
        "benign_inside": fp / max(int(ben.sum()), 1),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / max(precision + recall, 1e-12),
        "incidents": incs,
    }


def throughput(
    data: Path, copies: int = 8, minutes: float = 10.0, capture: str = CONTAMINATED[1]
) -> float:
    """Flows per second through windows, detectors and incidents, on dense traffic: a real
    capture laid ``copies`` times over itself (each copy's addresses made distinct) with its
    day compressed into ``minutes``, fed in 50,000-flow batches as a busy sensor would."""
    base = load(data / capture)
    train, _ = halves(base)
    thr = learn([train])
    ts = base.numeric("ts")
    t0, span = float(ts.min()), float(ts.max() - ts.min()) + 1.0
    squeeze = minutes * 60.0 / span
    parts = []
    for k in range(copies):
        t = base.table
        t = t.set_column(0, "ts", pa.array(t0 + (ts - t0) * squeeze))
        t = t.set_column(
            t.schema.get_field_index("duration"),
            "duration",
            pc.multiply(base.column("duration"), squeeze),
        )
        for col in ("orig_h", "resp_h"):
            i = t.schema.get_field_index(col)
            t = t.set_column(i, col, pc.binary_join_element_wise(f"c{k}", t.column(col), ":"))
        parts.append(FlowBatch(t))
    stream = FlowBatch.concat(parts)
    end = stream.numeric("ts") + np.maximum(stream.numeric("duration"), 0.0)
    stream = stream.take(np.argsort(end, kind="stable"))
    pipe = BehaviourPipeline(thr)
    start = time.perf_counter()
    run(pipe, stream, step=50_000)
    return len(stream) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--quantile", type=float, default=DEFAULT_QUANTILE)
    ap.add_argument("--margin", type=float, default=DEFAULT_MARGIN)
    args = ap.parse_args(argv)
    res = clean(args.data, args.quantile, args.margin)
    print(f"clean: benign second half -> {len(res['benign_incidents'])} incidents (floor <= 3)")
    for inc in res["benign_incidents"]:
        print(f"  [{inc.severity}] {inc.title}")
    for a in res["attacks"]:
        mark = "ok " if a.passed else "MISS"
        print(
            f"{mark} {a.capture}: {a.attacker} {a.flows} flows, {a.share:.0%} in an incident, "
            f"{', '.join(a.behaviours) or 'no incident'}"
        )
        for t in a.titles[:3]:
            print(f"     {t}")
    for rel in CONTAMINATED:
        r = contaminated(args.data, rel, args.quantile, args.margin)
        print(
            f"contaminated {Path(rel).name}: malicious inside {r['malicious_inside']:.1%} "
            f"(of {r['malicious']}), benign inside {r['benign_inside']:.1%} (of {r['benign']}), "
            f"P {r['precision']:.3f} R {r['recall']:.3f} F1 {r['f1']:.3f}, "
            f"{len(r['incidents'])} incidents"
        )
        for inc in sorted(r["incidents"], key=lambda i: -i.flows)[:4]:
            print(f"  [{inc.severity}] {inc.title}")
    print(
        f"throughput, IoT-23 34-1 x8 (185k flows, few hosts): {throughput(args.data):,.0f} flows/s"
    )
    wide = throughput(args.data, copies=40, capture=CONTAMINATED[0])
    print(f"throughput, CTU-50 008 x40 (226k flows, 64k hosts, evicting): {wide:,.0f} flows/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
