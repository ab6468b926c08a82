"""Finding and loading Broker's native Python bindings (``import broker``).

The bindings are a compiled extension that ships with Zeek, not with PyPI, so they are looked
for in the places an installation puts them, in this order: ``$NETANOMD_BROKER_PYTHON_DIR``
(an override: when set, it is used or loading fails), ``zeek-config --python_dir`` (the
bindings of the Zeek that will be peered with), a ``broker`` already importable (PYTHONPATH),
``/opt/zeek/lib/zeek/python`` (and the lib64 / /usr/local variants), then Debian's
``python3-broker`` in ``/usr/lib/python3/dist-packages``. Only the ``broker`` package is
imported from the directory found; the directory is never put on ``sys.path``, so nothing else
from a system site-packages leaks into the virtualenv.

Broker peers only with its own generation: 1.x (Debian's ``python3-broker`` 1.4) with Zeek
3.x, 2.x with Zeek >= 4 (and 2.3+, Zeek >= 5, broke compatibility again). When a local Zeek is
known (``zeek-config --version``), :func:`check_peerable` refuses bindings that cannot peer
with it, naming both versions, instead of retrying a connection that can never succeed.

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


ZEEK_CONFIGS = ("/opt/zeek/bin/zeek-config", "/usr/local/zeek/bin/zeek-config")


def zeek_config_python_dir(zeek_config: str | None = None) -> str | None:
    """What ``zeek-config --python_dir`` prints, or None without a Zeek installation."""
    exe = _zeek_config(zeek_config)
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--python_dir"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _zeek_config(zeek_config: str | None) -> str | None:
    exe = zeek_config or shutil.which("zeek-config")
    if exe is None:
        exe = next((p for p in ZEEK_CONFIGS if Path(p).exists()), None)
    return exe if exe is not None and Path(exe).exists() else None


def zeek_version(zeek_config: str | None = None) -> str | None:
    """What ``zeek-config --version`` prints (the local Zeek's version), or None."""
    exe = _zeek_config(zeek_config)
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def candidate_dirs(env: dict[str, str] | None = None, zeek_config: str | None = None) -> list[str]:
    """Directories that may hold a ``broker`` package, in the order they are tried (after the
    override and Zeek's own directory, an importable ``broker`` is tried first)."""
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


def _importable() -> ModuleType | None:
    try:
        return importlib.import_module("broker")
    except ImportError:
        return None


def load_broker(
    dirs: list[str] | None = None,
    *,
    env: dict[str, str] | None = None,
    zeek_config: str | None = None,
) -> ModuleType:
    """The ``broker`` module: from the override directory (which must work), Zeek's own
    directory, an importable ``broker``, or the first compatible fixed directory. ``dirs``
    replaces that search with an explicit list."""
    if "broker" in sys.modules:
        return sys.modules["broker"]
    env = dict(os.environ) if env is None else env
    tried: list[str] = []
    if dirs is None:
        override = env.get(ENV_DIR)
        if override:
            module = _try(override, tried)
            if module is None:
                raise TransportError(
                    f"{ENV_DIR}={override}: no usable Broker bindings there ({tried[-1]})"
                )
            return module
        zc = zeek_config_python_dir(zeek_config)
        if zc:
            module = _try(zc, tried)
            if module is not None:
                return module
        module = _importable()
        if module is not None:
            return module
        dirs = [d for d in FIXED_DIRS if d != zc]
    for d in dirs:
        module = _try(d, tried)
        if module is not None:
            return module
    raise TransportError(
        "Broker's Python bindings were not found; tried: "
        + "; ".join(tried)
        + f". Install Zeek (its bindings are in `zeek-config --python_dir`), or on Debian "
        f"`apt-get install python3-broker`, or set {ENV_DIR}; or use --transport ws"
    )


def _try(directory: str, tried: list[str]) -> ModuleType | None:
    pkg = Path(directory) / "broker"
    if not _compatible(pkg):
        py = f"{sys.version_info[0]}.{sys.version_info[1]}"
        tried.append(f"{directory} (no broker bindings for Python {py})")
        return None
    try:
        return _import_from(directory)
    except ImportError as exc:
        tried.append(f"{directory} ({exc})")
        return None


def version(broker: ModuleType) -> str:
    v = getattr(broker, "Version", None)
    if v is not None and hasattr(v, "string"):
        return str(v.string())
    return str(getattr(broker, "__version__", "unknown"))


def _major(version_text: str) -> int | None:
    head = version_text.strip().split(".", 1)[0]
    return int(head) if head.isdigit() else None


def peerable_zeek(broker_version: str) -> str:
    """Which Zeek versions bindings of ``broker_version`` can peer with."""
    return "Zeek 3.x" if _major(broker_version) == 1 else "Zeek >= 4 (the one they came with)"


def check_peerable(broker: ModuleType, zeek: str | None) -> None:
    """Refuse bindings that cannot peer with the local Zeek ``zeek`` (None: not known here)."""
    if zeek is None:
        return
    b, z = _major(version(broker)), _major(zeek)
    if b is None or z is None:
        return
    if (b == 1) != (z < 4):
        raise TransportError(
            f"Broker {version(broker)} bindings ({getattr(broker, '__file__', '?')}) cannot "
            f"peer with Zeek {zeek}: they peer only with {peerable_zeek(version(broker))}. "
            f"Use Zeek's own bindings (`zeek-config --python_dir`, or set {ENV_DIR}), or "
            "--transport ws"
        )


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
