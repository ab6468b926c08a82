"""Run every benchmark in this folder, one after another, and print their numbers.

Usage: ``python benchmarks/run.py [--quick]`` (``--quick`` skips the 10M-row memory check).
Each benchmark is a script ``bench_*.py`` that prints its own figures; they run in separate
processes so one's memory does not colour another's. Quote ratios from one run: the machines
are shared and noisy.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="skip the 10M-row memory check")
    args = ap.parse_args()
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        extra = ["--big"] if script.name == "bench_e2e.py" and not args.quick else []
        print(f"== {script.name} {' '.join(extra)}", flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script), *extra])
        print(f"   ({time.perf_counter() - start:.0f}s, exit {rc})\n", flush=True)
        if rc:
            failed.append(script.name)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
