"""File scoring end to end, whole process, against its peers measured in the same run.

``netanomd score`` (the model ``netanomd train`` makes with default flags; read + features +
score + decide + incidents + SQLite) on generated Zeek conn.logs: 1M benign rows, 1M rows with
~20% attack rows and, unless ``--quick``, 10M benign rows (peak memory must not grow with file
length; issue 16 states its ratio goals at this size, so the seed-style peer and the bare parse run
on it too); and on a 10-row file (start-up). Peers, in their own virtualenv
(``benchmarks/out/peers-venv``, made here from ``peers/requirements.txt``): the seed-style
pipeline (``pandas.read_csv`` + scikit-learn IsolationForest fit/predict), zat's documented
pipeline (``LogToDataFrame`` + ``DataFrameToMatrix`` + IsolationForest), and a bare typed
``pyarrow.csv`` parse of the same file. Every process is pinned to one core; figures are flows
per CPU-second of the whole process (user + system, start-up included) and ratios within this
run. Usage: ``python benchmarks/bench_e2e.py [--rows N] [--quick]``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import venv
from pathlib import Path

from _common import HERE, NETANOMD, Usage, ensure_log, ensure_model, measure, out_dir, row

PEERS = HERE / "peers"


def peers_python() -> tuple[Path | None, str]:
    """The peers' virtualenv interpreter (made on first use), or None and why not."""
    env_dir = out_dir() / "peers-venv"
    python = env_dir / "bin" / "python"
    reqs = PEERS / "requirements.txt"
    stamp = env_dir / "requirements.txt"
    if python.exists() and stamp.exists() and stamp.read_text() == reqs.read_text():
        return python, ""
    print(f"  making the peers' virtualenv in {env_dir} (pip install -r {reqs.name})", flush=True)
    venv.create(env_dir, with_pip=True, clear=True)
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(reqs)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return None, (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
    stamp.write_text(reqs.read_text())
    return python, ""


def score(model: Path, log: Path) -> tuple[Usage, int, int]:
    """(usage, rows, flow alerts) of one ``netanomd score`` run."""
    db = out_dir() / "bench-alerts.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    cmd = [*NETANOMD, "score", "--model", str(model), "--input", str(log), "--db", str(db)]
    use = measure([*cmd, "--top", "0", "--incidents", "0"])
    rows = re.search(r"([\d,]+) flows read", use.stdout)
    alerts = re.search(r"([\d,]+) flow alerts", use.stdout)
    if rows is None or alerts is None:
        raise SystemExit(f"netanomd score said something unexpected:\n{use.stdout}")
    return use, int(rows.group(1).replace(",", "")), int(alerts.group(1).replace(",", ""))


def peer(python: Path, script: str, log: Path) -> tuple[Usage, int]:
    use = measure([str(python), str(PEERS / script), str(log)])
    m = re.search(r"rows (\d+)", use.stdout)
    if m is None:
        raise SystemExit(f"{script} said something unexpected:\n{use.stdout}")
    return use, int(m.group(1))


def rate(rows: int, use: Usage) -> float:
    return rows / use.cpu if use.cpu > 0 else 0.0


def line(name: str, rows: int, use: Usage, extra: str = "") -> None:
    print(
        f"  {name:<48} {rows:>11,} rows {use.cpu:7.2f} CPU-s {rate(rows, use):>10,.0f} "
        f"flows/CPU-s  peak RSS {use.rss_mib:7.1f} MiB{extra}",
        flush=True,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="skip the 10x-rows run")
    args = ap.parse_args()
    n = args.rows
    big = n * 10
    model = ensure_model()
    benign, attacks = ensure_log(n), ensure_log(n, attacks=True)
    tiny = ensure_log(10)
    python, why_not = peers_python()

    print("file scoring, whole process, one core (flows per CPU-second, start-up included)")
    score(model, tiny)  # a fresh clone compiles its numba kernels into the cache here
    up, _, _ = score(model, tiny)
    line("netanomd score, 10-row file (start-up)", 10, up)
    mine, rows, alerts = score(model, benign)
    line("netanomd score, benign", rows, mine, f"  {alerts:,} alerts")
    hot, hot_rows, hot_alerts = score(model, attacks)
    line("netanomd score, ~20% attack rows", hot_rows, hot, f"  {hot_alerts:,} alerts")
    arrow = seed = zat = None
    if python is not None:
        arrow, _ = peer(python, "arrow_parse.py", benign)
        line("bare typed pyarrow.csv parse", rows, arrow)
        seed, _ = peer(python, "seed_style.py", benign)
        line("seed-style pandas.read_csv + IsolationForest", rows, seed)
        zat, _ = peer(python, "zat_pipeline.py", benign)
        line("zat LogToDataFrame + DataFrameToMatrix + IForest", rows, zat)
    else:
        print(f"  peers not measured: their virtualenv could not be made ({why_not})")
    if not args.quick:
        big_log = ensure_log(big)
        mine_big, big_rows, big_alerts = score(model, big_log)
        line("netanomd score, benign, 10x", big_rows, mine_big, f"  {big_alerts:,} alerts")
        arrow_big = seed_big = None
        if python is not None:
            arrow_big = peer(python, "arrow_parse.py", big_log)[0]
            line("bare typed pyarrow.csv parse, 10x", big_rows, arrow_big)
            seed_big = peer(python, "seed_style.py", big_log)[0]
            line("seed-style pandas.read_csv + IsolationForest, 10x", big_rows, seed_big)

    r = rate(rows, mine)
    row(
        f"`netanomd score`, {rows:,}-row benign conn.log, whole process",
        f"{r:,.0f} flows/CPU-s ({mine.cpu:.1f} CPU-s, {alerts:,} alerts); "
        f"peak RSS {mine.rss_mib:.0f} MiB",
    )
    row(
        f"the same, {hot_rows:,} rows with ~20% attack rows ({hot_alerts:,} alerts)",
        f"{rate(hot_rows, hot):,.0f} flows/CPU-s: {rate(hot_rows, hot) / r:.2f}x the benign rate",
    )
    if not args.quick:
        row(
            f"the same, {big_rows:,} benign rows",
            f"{rate(big_rows, mine_big):,.0f} flows/CPU-s; peak RSS {mine_big.rss_mib:.0f} MiB "
            f"({mine_big.rss_mib / mine.rss_mib:.2f}x the {rows:,}-row run's)",
        )
    for name, use in (
        ("seed-style `pandas.read_csv` + scikit-learn IsolationForest fit/predict", seed),
        ("zat `LogToDataFrame` + `DataFrameToMatrix` + IsolationForest", zat),
        ("a bare typed `pyarrow.csv` parse (no scoring)", arrow),
    ):
        if use is not None:
            row(
                f"{name}, same {rows:,} rows",
                f"{rate(rows, use):,.0f} flows/CPU-s, peak RSS {use.rss_mib:.0f} MiB; "
                f"netanomd is {r / rate(rows, use):.2f}x its rate",
            )
    if python is None:
        row("peers (seed-style, zat, pyarrow.csv)", f"not measured: {why_not}")
    if not args.quick and seed_big is not None:
        rs = rate(big_rows, seed_big)
        row(
            f"seed-style `pandas.read_csv` + scikit-learn IsolationForest, {big_rows:,} rows",
            f"{rs:,.0f} flows/CPU-s, peak RSS {seed_big.rss_mib:,.0f} MiB; "
            f"netanomd is {rate(big_rows, mine_big) / rs:.2f}x its rate (goal >= 4x)",
        )
    if not args.quick and arrow_big is not None:
        rb = rate(big_rows, arrow_big)
        row(
            f"a bare typed `pyarrow.csv` parse, {big_rows:,} rows",
            f"{rb:,.0f} flows/CPU-s; netanomd is {rate(big_rows, mine_big) / rb:.2f}x its rate "
            "(goal >= 0.5x)",
        )
    row(
        "`netanomd score` on a 10-row file (start-up: imports, model load, numba cache)",
        f"{up.cpu:.2f} CPU-s, {up.wall:.2f} s wall",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
