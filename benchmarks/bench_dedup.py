"""The community-id deduplicator alone: CPU per flow on the scoring thread, for two streams of
1,000-flow batches, the clock advancing as at 150k flows/s with the pipeline's default window
(120 s), and how much the process's peak RSS grew over the run (the table):

* ``unique``: real Suricata flow records (``$SHARED_DATA/suricata/test6-malicious.suricata.json``,
  default ``../shared/data``), each with a community id of its own, as a live sensor's flows
  (every id remembered, none found again);
* ``mixed``: Zeek's conn.log and Suricata's flow events of the same pcaps, in start order (about
  half the rows have a twin from the other sensor, in the same batch or the next): the shared
  data's ``zeek-conn/zeek-8.2-from-pcaps/json`` logs and the flows Suricata (no rules,
  community-id on) writes for the same ``pcaps``, run here; replayed with the ids renamed per
  replay so each replay's connections are new.

``--against DIR`` measures another checkout's deduplicator (e.g. ``/work/main``) in the same run,
interleaved, each in a process of its own; the ratio is printed. Usage:
``python benchmarks/bench_dedup.py [--flows N] [--against DIR] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared/data"))
#: Pcaps with Zeek's conn.log in the shared data (``<folder>-<name>.conn.log``).
PCAPS = [
    "slips/test7-malicious",
    "slips/test-cc-capture-1",
    "slips/test-cc-capture-2",
    "dns/dns-normal",
    "zeek-traces/dhcp_dhcp_flood",
    "slips/malicious-ssh-bruteforce",
]
BATCH = 1_000
RATE = 150_000.0  # flows a second: how fast the clock moves between batches


def _cid(key: bytes) -> str:
    return "1:" + base64.b64encode(hashlib.sha1(key).digest()).decode()


def _with(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def unique_stream(n: int) -> list[pa.Table]:
    from netanomd.flow import FlowBatch
    from netanomd.sources.files import open_source

    eve = SHARED / "suricata/test6-malicious.suricata.json"
    flows = FlowBatch.concat(list(open_source(eve).batches())).table
    reps = -(-n // len(flows))
    table = pa.concat_tables([flows] * reps).slice(0, n)
    table = _with(table, "community_id", pa.array([_cid(b"%d" % i) for i in range(n)]))
    return [table.slice(i, BATCH) for i in range(0, n, BATCH)]


def mixed_stream(n: int) -> list[pa.Table]:
    from netanomd.flow import FlowBatch
    from netanomd.sources.files import open_source

    parts: list[pa.Table] = []
    with tempfile.TemporaryDirectory() as tmp:
        for pcap in PCAPS:
            name = pcap.replace("/", "-")
            out = Path(tmp) / name
            out.mkdir()
            subprocess.run(
                ["suricata", "-r", str(SHARED / f"pcaps/{pcap}.pcap"), "-l", str(out), "-k",
                 "none", "--runmode", "single",
                 "--set", "outputs.1.eve-log.community-id=true",
                 "--set", "outputs.1.eve-log.types.0=flow"],
                check=True, capture_output=True,
            )  # fmt: skip
            zeek = SHARED / f"zeek-conn/zeek-8.2-from-pcaps/json/{name}.conn.log"
            for path in (zeek, out / "eve.json"):
                parts.extend(b.table for b in open_source(path).batches())
    pair = FlowBatch.concat([FlowBatch(t) for t in parts]).table.sort_by("ts")
    ids = pair.column("community_id").to_pylist()
    replays = []
    for r in range(-(-n // len(pair))):
        renamed = [None if c is None else _cid(b"%d:%s" % (r, c.encode())) for c in ids]
        replays.append(_with(pair, "community_id", pa.array(renamed, pa.string())))
    table = pa.concat_tables(replays).slice(0, n)
    return [table.slice(i, BATCH) for i in range(0, n, BATCH)]


def measure(which: str, n: int) -> None:
    """One stream through a fresh deduplicator of this process's checkout: prints JSON."""
    try:
        from netanomd.daemon.dedup import Deduplicator
    except ImportError:  # a checkout from before the module (the deduplicator in the pipeline)
        from netanomd.daemon.pipeline import Deduplicator  # type: ignore[attr-defined]
    from netanomd.flow import FlowBatch

    batches = [FlowBatch(t) for t in (unique_stream if which == "unique" else mixed_stream)(n)]
    warm = Deduplicator(120.0)
    for b in batches[:3]:  # compiled kernels loaded, first allocations made
        warm.apply(b, 0.0)
    dedup = Deduplicator(120.0)
    dropped = 0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu = time.process_time()
    for k, b in enumerate(batches):
        dropped += dedup.apply(b, k * BATCH / RATE)[1]
    cpu = time.process_time() - cpu
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
    print(json.dumps({"cpu": cpu, "flows": n, "dropped": dropped, "mib": grown}))


def run(checkout: Path, which: str, n: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    cmd = [sys.executable, __file__, "--measure", which, "--flows", str(n)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, cwd="/")
    got: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=200_000)
    ap.add_argument("--against", type=Path, help="another checkout, measured in the same run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--measure", choices=["unique", "mixed"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        measure(args.measure, args.flows)
        return
    checkouts = [ROOT, *([args.against] if args.against else [])]
    for which in ("unique", "mixed"):
        best: dict[Path, float] = {}
        for r in range(args.rounds):
            for c in checkouts if r % 2 == 0 else checkouts[::-1]:
                got = run(c, which, args.flows)
                us = got["cpu"] / got["flows"] * 1e6
                best[c] = min(best.get(c, us), us)
                print(
                    f"dedup {which}, {c}: {us:.3f} us a flow ({got['flows'] / got['cpu']:,.0f} "
                    f"flows per CPU-second, {got['dropped']:,} of {got['flows']:,} dropped; "
                    f"peak RSS +{got['mib']:.0f} MiB over the run)",
                    flush=True,
                )
        if args.against:
            print(
                f"  {which}: {best[args.against] / best[ROOT]:.1f}x less CPU a flow than "
                f"{args.against} (best of {args.rounds} each)"
            )


if __name__ == "__main__":
    main()
