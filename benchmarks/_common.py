"""What the benchmark scripts share: the output folder, the generated logs and the model they
score with (made by ``netanomd train`` with its default flags), one measured child process
(CPU seconds, wall seconds, peak RSS), and the table rows that ``run.py`` collects into the
README.

A benchmark reports a figure for the README table with :func:`row`; it prints an ordinary line
too, so a benchmark run on its own reads the same.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
# This checkout's netanomd, whatever else is installed: a script's own folder, not the
# checkout, is first on sys.path, so an editable install of another checkout (the venv's) would
# be measured instead. Every benchmark imports this module before netanomd.
sys.path.insert(0, str(HERE.parent))
OUT = HERE / "out"
NETANOMD = [sys.executable, "-m", "netanomd"]
#: Prefix of a line ``run.py`` puts in the README table (``what<TAB>figure``).
ROW_MARK = "@row "
#: One core, one thread, for every measured child.
ONE_CORE_ENV = {
    "NUMBA_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "ARROW_NUM_THREADS": "1",
}


def row(what: str, figure: str) -> None:
    """One line of the README benchmark table."""
    print(f"{ROW_MARK}{what}\t{figure}", flush=True)


def out_dir() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    return OUT


def ensure_log(rows: int, attacks: bool = False) -> Path:
    """A generated Zeek TSV conn.log of ``rows`` rows (made once, kept in ``out/``)."""
    path = out_dir() / f"conn-{rows}{'-attacks' if attacks else ''}.log"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        extra = ["--with-attacks"] if attacks else []
        subprocess.run(
            [sys.executable, str(HERE / "gen_connlog.py"), str(rows), str(tmp), *extra],
            check=True,
        )
        tmp.rename(path)
    return path


def ensure_model() -> Path:
    """The model ``netanomd train`` makes with its default flags from the bundled baseline."""
    model = out_dir() / "bench-model.npz"
    if not model.exists():
        from netanomd.data import baseline_files

        files = [str(p) for p in baseline_files()]
        subprocess.run(
            [*NETANOMD, "train", "--model", str(model), "--input", *files],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return model


@dataclass(frozen=True)
class Usage:
    """What one child process cost."""

    cpu: float  # user + system seconds
    wall: float
    rss_mib: float  # peak resident set
    stdout: str


#: Runs the measured command (``argv[2:]``) as its child and writes the child's CPU and peak RSS
#: to the descriptor ``argv[1]``. A
#: child the benchmark starts itself reports the benchmark's own peak RSS as a floor (Linux keeps
#: the high-water mark of the memory it leaves at exec, and the child shares the parent's until
#: then), so the command is started from this small process instead.
_LAUNCHER = """
import os, sys
report = int(sys.argv[1])
pid = os.fork()
if pid == 0:
    os.close(report)
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    except OSError as e:
        print(f"{sys.argv[2]}: {e}", file=sys.stderr)
        os._exit(127)
_, status, use = os.wait4(pid, 0)
code = os.waitstatus_to_exitcode(status)
os.write(report, f"{use.ru_utime + use.ru_stime} {use.ru_maxrss} {code}".encode())
"""


def measure(cmd: list[str], *, core: int = 0) -> Usage:
    """Run ``cmd`` pinned to one core and single-threaded, from the checkout's root (so
    ``python -m netanomd`` is this checkout's); raise when it fails. CPU and peak RSS are the
    command's own (see :data:`_LAUNCHER`)."""
    env = dict(os.environ, **ONE_CORE_ENV)
    start = time.perf_counter()
    read, write = os.pipe()
    proc = subprocess.Popen(
        ["taskset", "-c", str(core), sys.executable, "-c", _LAUNCHER, str(write), *cmd],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
        cwd=HERE.parent,
        pass_fds=(write,),
    )
    os.close(write)
    out = proc.stdout.read() if proc.stdout else ""
    proc.wait()
    with os.fdopen(read, "rb") as fh:
        report = fh.read().split()
    wall = time.perf_counter() - start
    if len(report) != 3 or int(report[2]) != 0:
        why = f"exit {int(report[2])}" if len(report) == 3 else f"launcher exit {proc.returncode}"
        raise SystemExit(f"{' '.join(cmd)} failed ({why}):\n{out}")
    return Usage(float(report[0]), wall, int(report[1]) / 1024, out)
