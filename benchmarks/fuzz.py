"""Long fuzzing passes over every parser (the targets of tests/fuzz_targets.py).

    python benchmarks/fuzz.py --inputs 1000000            # every parser, one after the other
    python benchmarks/fuzz.py --inputs 200000 --only eve,broker-json --jobs 2
    python benchmarks/fuzz.py --engine random --seconds 600

Engines: ``atheris`` (coverage-guided libFuzzer, used when ``atheris`` imports: the seed
corpus and the mutator of fuzz_targets.py are its starting points, the package is
instrumented) or ``random`` (the mutator alone). Each parser runs in its own process; a crash
(an exception the parser does not document, a broken contract, a hang) is recorded and the pass
goes on. Prints, per parser, inputs tried, distinct crashes and the first input of each, and
writes every crashing input to ``--crash-dir``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _record(state: dict[str, Any], crash: Any, crash_dir: Path) -> None:
    entry = state["crashes"].setdefault(crash.signature, {"count": 0, "file": None, "tb": ""})
    entry["count"] += 1
    if entry["file"] is None:
        path = crash_dir / f"{crash.target}-{len(state['crashes'])}.bin"
        path.write_bytes(crash.data)
        entry["file"] = str(path)
        entry["tb"] = crash.traceback.strip().splitlines()[-1][:300]


def _save(state: dict[str, Any], out: Path) -> None:
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(out)


def worker_random(name: str, inputs: int, seconds: float, out: Path, crash_dir: Path) -> None:
    from tests.fuzz_targets import TARGETS, check, mutate

    target = TARGETS[name]
    seeds = target.seeds()
    rng = random.Random(int.from_bytes(os.urandom(8), "little"))
    state: dict[str, Any] = {"target": name, "engine": "random", "inputs": 0, "crashes": {}}
    start = last = time.monotonic()
    for seed in seeds:  # the seeds themselves must pass
        crash = check(target, seed)
        state["inputs"] += 1
        if crash is not None:
            _record(state, crash, crash_dir)
    while state["inputs"] < inputs and time.monotonic() - start < seconds:
        data = mutate(rng.choice(seeds), rng, seeds)
        crash = check(target, data)
        state["inputs"] += 1
        if crash is not None:
            _record(state, crash, crash_dir)
        if time.monotonic() - last > 5:
            last = time.monotonic()
            state["elapsed"] = last - start
            _save(state, out)
    state["elapsed"] = time.monotonic() - start
    _save(state, out)


def worker_atheris(name: str, inputs: int, seconds: float, out: Path, crash_dir: Path) -> None:
    import atheris

    import netanomd.model  # loaded first, uninstrumented: numba compiles it
    import netanomd.sources.eve_states
    import netanomd.sources.evescan  # numba kernels too

    parsers = ["netanomd.sources", "netanomd.zeek", "netanomd.config", "netanomd.daemon"]
    with atheris.instrument_imports(include=parsers):
        import netanomd.config
        import netanomd.daemon.score_api
        import netanomd.sources.files
        import netanomd.sources.formats
        import netanomd.sources.zeek_ws
        import netanomd.zeek.brokerjson  # noqa: F401
    from tests.fuzz_targets import TARGETS, check, mutate

    target = TARGETS[name]
    seeds = target.seeds()
    state: dict[str, Any] = {"target": name, "engine": "atheris", "inputs": 0, "crashes": {}}
    start = time.monotonic()
    last = [start]

    def one(data: bytes) -> None:
        crash = check(target, data)
        state["inputs"] += 1
        if crash is not None:
            _record(state, crash, crash_dir)
        now = time.monotonic()
        if now - last[0] > 5:
            last[0] = now
            state["elapsed"] = now - start
            _save(state, out)

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.5:
            return atheris.Mutate(data, max_size)
        try:
            return mutate(data or rng.choice(seeds), rng, seeds)[: max(max_size, 1 << 20)]
        except Exception:  # a mutator bug must not end the pass
            return atheris.Mutate(data, max_size)

    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-corpus-{name}-"))
    for i, seed in enumerate(seeds):
        (corpus / f"seed{i}").write_bytes(seed)
    import atexit

    def done() -> None:
        state["elapsed"] = time.monotonic() - start
        _save(state, out)

    atexit.register(done)
    args = [
        sys.argv[0],
        str(corpus),
        f"-runs={inputs}",
        f"-max_total_time={int(seconds)}",
        "-max_len=1048576",
        "-timeout=30",
        "-rss_limit_mb=4096",
        "-print_final_stats=1",
    ]
    atheris.Setup(args, one, custom_mutator=custom_mutator)
    atheris.Fuzz()


def main() -> int:
    from tests.fuzz_targets import TARGETS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--inputs", type=int, default=1_000_000, help="inputs per parser")
    ap.add_argument("--seconds", type=float, default=86_400.0, help="time limit per parser")
    ap.add_argument("--only", default="", help="comma-separated parsers: " + ", ".join(TARGETS))
    ap.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    ap.add_argument("--jobs", type=int, default=1, help="parsers fuzzed at the same time")
    ap.add_argument("--crash-dir", type=Path, default=Path("fuzz-crashes"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "random"
    if args.worker:
        logging.disable(logging.WARNING)  # every skipped line would be logged
        run = worker_atheris if engine == "atheris" else worker_random
        run(args.worker, args.inputs, args.seconds, args.out, args.crash_dir)
        return 0

    names = [n for n in args.only.split(",") if n] or list(TARGETS)
    unknown = set(names) - set(TARGETS)
    if unknown:
        ap.error(f"unknown parsers: {', '.join(sorted(unknown))} (known: {', '.join(TARGETS)})")
    args.crash_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="netanomd-fuzz-"))
    queue = list(names)
    running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    results: dict[str, dict[str, Any]] = {}
    print(f"engine {engine}, {args.inputs:,} inputs per parser, parsers: {', '.join(names)}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the workers are stopped too
    try:
        _run_all(args, engine, work, queue, running, results)
    finally:  # interrupted: stop the workers too
        for proc, _ in running.values():
            proc.terminate()
    total = sum(len(s["crashes"]) for s in results.values())
    print(f"\n{'parser':<14}{'inputs':>12}{'seconds':>10}{'crashes':>9}")
    for name in names:
        s = results[name]
        print(f"{name:<14}{s['inputs']:>12,}{s.get('elapsed', 0):>10.0f}{len(s['crashes']):>9}")
    print(f"logs in {work}")
    return 1 if total else 0


def _run_all(
    args: argparse.Namespace,
    engine: str,
    work: Path,
    queue: list[str],
    running: dict[str, tuple[subprocess.Popen[bytes], Path]],
    results: dict[str, dict[str, Any]],
) -> None:
    while queue or running:
        while queue and len(running) < args.jobs:
            name = queue.pop(0)
            out = work / f"{name}.json"
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                name,
                "--out",
                str(out),
                "--engine",
                engine,
                "--inputs",
                str(args.inputs),
                "--seconds",
                str(args.seconds),
                "--crash-dir",
                str(args.crash_dir),
            ]
            log = (work / f"{name}.log").open("wb")
            running[name] = (subprocess.Popen(cmd, stdout=log, stderr=log), out)
        time.sleep(1)
        for name, (proc, out) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            state = json.loads(out.read_text()) if out.exists() else {"inputs": 0, "crashes": {}}
            state["exit"] = proc.returncode
            results[name] = state
            _report(name, state, work)


def _report(name: str, state: dict[str, Any], work: Path) -> None:
    crashes = state["crashes"]
    print(
        f"{name}: {state['inputs']:,} inputs in {state.get('elapsed', 0):.0f} s, "
        f"{len(crashes)} distinct crashes (exit {state['exit']})",
        flush=True,
    )
    for sig, c in crashes.items():
        print(f"  {sig} x{c['count']}: {c['tb']} ({c['file']})")
    if state["exit"] not in (0, None) and not crashes:
        print(f"  worker failed, see {work / (name + '.log')}")


if __name__ == "__main__":
    sys.exit(main())
