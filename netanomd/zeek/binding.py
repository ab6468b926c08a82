"""Finding and loading Broker's native Python bindings (``import broker``).

The bindings are a compiled extension that ships with Zeek, not with PyPI, so they are looked
for in the places an installation puts them, in this order: ``$NETANOMD_BROKER_PYTHON_DIR``,
``zeek-config --python_dir``, ``/opt/zeek/lib/zeek/python`` (and the lib64 / /usr/local
variants), then Debian's ``python3-broker`` in ``/usr/lib/python3/dist-packages``. Only the
``broker`` package is imported from the directory found; the directory is never put on
``sys.path``, so nothing else from a system site-packages leaks into the virtualenv.

Owns the differences between binding generations too: Broker 1.x endpoints are plain objects
closed with ``shutdown()``; Broker 2.x (Zeek >= 6, required with Zeek 8's Broker 2.8) wants
``with broker.Endpoint() as ep``. :func:`endpoint` hides that.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from netanomd.errors import TransportError

ENV_DIR = "NETANOMD_BROKER_PYTHON_DIR"
FIXED_DIRS = (
    "/opt/zeek/lib/zeek/python",
    "/opt/zeek/lib64/zeek/python",
    "/usr/local/zeek/lib/zeek/python",
    "/usr/lib/python3/dist-packages",
)


def zeek_config_python_dir(zeek_config: str | None = None) -> str | None:
    """What ``zeek-config --python_dir`` prints, or None without a Zeek installation."""
    exe = zeek_config or shutil.which("zeek-config") or "/opt/zeek/bin/zeek-config"
    if not Path(exe).exists():
        return None
    try:
        out = subprocess.run(
            [exe, "--python_dir"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def candidate_dirs(env: dict[str, str] | None = None, zeek_config: str | None = None) -> list[str]:
    """Directories that may hold a ``broker`` package, in the order they are tried."""
    env = dict(os.environ) if env is None else env
    dirs = []
    if env.get(ENV_DIR):
        dirs.append(env[ENV_DIR])
    zc = zeek_config_python_dir(zeek_config)
    if zc:
        dirs.append(zc)
    dirs.extend(FIXED_DIRS)
    return list(dict.fromkeys(dirs))


def _compatible(pkg: Path) -> bool:
    """The directory has the bindings, compiled for this interpreter."""
    if not (pkg / "__init__.py").is_file():
        return False
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    return any(tag in p.name or p.name == "_broker.so" for p in pkg.glob("_broker*.so"))


def _import_from(directory: str) -> ModuleType:
    pkg = Path(directory) / "broker"
    spec = importlib.util.spec_from_file_location(
        "broker", pkg / "__init__.py", submodule_search_locations=[str(pkg)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {pkg}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["broker"] = module  # broker/zeek.py does `import broker`
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["broker"]
        raise
    return module


def load_broker(dirs: list[str] | None = None) -> ModuleType:
    """The ``broker`` module: already importable, or from the first compatible directory."""
    if "broker" in sys.modules:
        return sys.modules["broker"]
    try:
        return importlib.import_module("broker")
    except ImportError:
        pass
    tried = []
    for d in candidate_dirs() if dirs is None else dirs:
        pkg = Path(d) / "broker"
        if not _compatible(pkg):
            py = f"{sys.version_info[0]}.{sys.version_info[1]}"
            tried.append(f"{d} (no broker bindings for Python {py})")
            continue
        try:
            return _import_from(d)
        except ImportError as exc:
            tried.append(f"{d} ({exc})")
    raise TransportError(
        "Broker's Python bindings were not found; tried: "
        + "; ".join(tried)
        + f". Install Zeek (its bindings are in `zeek-config --python_dir`), or on Debian "
        f"`apt-get install python3-broker`, or set {ENV_DIR}; or use --transport ws"
    )


def version(broker: ModuleType) -> str:
    v = getattr(broker, "Version", None)
    if v is not None and hasattr(v, "string"):
        return str(v.string())
    return str(getattr(broker, "__version__", "unknown"))


@contextmanager
def endpoint(broker: ModuleType) -> Iterator[Any]:
    """A Broker endpoint for either binding generation, shut down on exit."""
    ep = broker.Endpoint()
    if hasattr(ep, "__enter__"):
        with ep as entered:
            yield entered if entered is not None else ep
        return
    try:
        yield ep
    finally:
        ep.shutdown()
