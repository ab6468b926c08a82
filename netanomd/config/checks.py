"""What ``netanomd config check`` checks beyond validation: what can be checked on this machine
without starting the daemon.

Owns :func:`check_environment` and :class:`Finding`. Validation (:mod:`~netanomd.config.validation`)
already refused what the values alone show (types, choices, ports outside 1-65535, malformed
URLs, unreadable CA files); here, with the files and sockets of the machine:

* ``model.path``: the file exists and loads as a model this netanomd reads (format, version,
  digest: :meth:`netanomd.model.Model.load`);
* log sources (``zeek_log``, ``suricata_eve``): every file the path or glob matches is a readable
  file; when none matches yet, its directory exists and can be read;
* ``suricata_socket``: the socket's directory exists and is writable; a file already there is a
  socket nobody serves (the daemon replaces it);
* ``zeek_broker.listen`` and ``sinks.metrics.listen``: the port can be bound now (so a running
  netanomd holding it is reported too);
* ``sinks.sqlite.path`` and ``state_dir``: the directory exists and is writable, or can be
  created by this user (a note, not a problem: the daemon creates it); an existing database
  file is a writable SQLite file;
* ``sinks.metrics``: the token file holds one token, the TLS certificate and key load as a pair.

Each finding names the key path and the value and says what is wrong; the command exits
non-zero when any is a problem.
"""

from __future__ import annotations

import errno
import glob
import os
import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netanomd.config.problems import KeyPath, format_path
from netanomd.config.sections import Config
from netanomd.config.sources import (
    SuricataEveSourceConfig,
    SuricataSocketSourceConfig,
    ZeekBrokerSourceConfig,
    ZeekLogSourceConfig,
)
from netanomd.config.validation import show
from netanomd.errors import NetanomError

__all__ = ["Finding", "check_environment"]

#: The first bytes of every SQLite 3 database file.
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class Finding:
    """One thing ``config check`` found: a problem (the command fails) or a note."""

    path: KeyPath
    value: Any
    message: str
    problem: bool = True

    def render(self) -> str:
        kind = "" if self.problem else "note: "
        return f"{kind}{format_path(self.path)}: {show(self.path, self.value)}: {self.message}"


def _load_model(path: str) -> None:
    from netanomd.model import Model  # scikit-learn and numba: only when checking

    Model.load(path)


def check_environment(
    config: Config, *, load_model: Callable[[str], object] = _load_model
) -> list[Finding]:
    """Everything :mod:`this module <netanomd.config.checks>` checks, in key order."""
    out: list[Finding] = list(_model(config, load_model))
    for i, src in enumerate(config.sources):
        where: KeyPath = ("sources", i)
        if isinstance(src, ZeekLogSourceConfig | SuricataEveSourceConfig):
            out.extend(_log_path((*where, "path"), src.path))
        elif isinstance(src, SuricataSocketSourceConfig):
            out.extend(_socket_path((*where, "path"), src.path))
        elif isinstance(src, ZeekBrokerSourceConfig) and src.listen:
            out.extend(_bindable((*where, "listen"), src.listen))
    sqlite = config.sinks.sqlite
    if sqlite.enabled:
        out.extend(_database(("sinks", "sqlite", "path"), sqlite.path))
    out.extend(_directory(("state_dir",), config.state_dir, config.state_dir))
    metrics = config.sinks.metrics
    if metrics.enabled:
        out.extend(_bindable(("sinks", "metrics", "listen"), metrics.listen))
        out.extend(_endpoint_files(config))
    return out


def _model(config: Config, load_model: Callable[[str], object]) -> Iterator[Finding]:
    path: KeyPath = ("model", "path")
    value = config.model.path
    if not os.path.exists(value):
        yield Finding(path, value, "no such file (make one with netanomd train)")
    elif not os.path.isfile(value) or not os.access(value, os.R_OK):
        yield Finding(path, value, "is not a readable file")
    else:
        try:
            load_model(value)
        except NetanomError as exc:
            yield Finding(path, value, str(exc).removeprefix(f"{value}: "))


def _log_path(path: KeyPath, value: str) -> Iterator[Finding]:
    matches = sorted(glob.glob(value))
    for name in matches:
        if not os.path.isfile(name):
            yield Finding(path, value, f"{name} is not a file")
        elif not os.access(name, os.R_OK):
            yield Finding(path, value, f"{name} cannot be read (permission denied)")
    if matches:
        return
    folder = os.path.dirname(value) or "."
    if glob.has_magic(folder):
        if not glob.glob(folder):
            yield Finding(path, value, f"no file matches and no directory matches {folder}")
        return
    if not os.path.isdir(folder):
        yield Finding(path, value, f"no such file, and its directory {folder} does not exist")
    elif not os.access(folder, os.R_OK | os.X_OK):
        yield Finding(path, value, f"no such file yet, and its directory {folder} cannot be read")
    else:
        yield Finding(path, value, "no such file yet: it is waited for", problem=False)


def _socket_path(path: KeyPath, value: str) -> Iterator[Finding]:
    folder = os.path.dirname(value) or "."
    if not os.path.isdir(folder):
        yield Finding(path, value, f"directory {folder} does not exist")
        return
    if not os.access(folder, os.W_OK | os.X_OK):
        yield Finding(path, value, f"directory {folder} is not writable (the socket is made there)")
    if not os.path.lexists(value):
        return
    if not stat.S_ISSOCK(os.lstat(value).st_mode):
        yield Finding(path, value, "exists and is not a socket (the daemon would replace it)")
        return
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_UNIX, kind) as s:
            try:
                s.connect(value)
            except OSError:
                continue
        yield Finding(path, value, "is in use: something serves this socket already")
        return


def _bindable(path: KeyPath, value: str) -> Iterator[Finding]:
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        yield Finding(path, value, f"cannot resolve {host!r} ({exc})")
        return
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            s.bind(address)
        except OSError as exc:
            why = exc.strerror or str(exc)
            if exc.errno == errno.EADDRINUSE:
                why += " (is netanomd, or another service, running on it?)"
            yield Finding(path, value, f"cannot listen there: {why}")


def _creatable(folder: Path) -> Path | None:
    """The nearest existing ancestor of ``folder`` when this user may create ``folder`` in it."""
    parent = folder
    while not parent.exists():
        if parent.parent == parent:
            return None
        parent = parent.parent
    if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return parent
    return None


def _directory(path: KeyPath, value: str, folder: str) -> Iterator[Finding]:
    d = Path(folder)
    if d.is_dir():
        if not os.access(d, os.W_OK | os.X_OK):
            yield Finding(path, value, f"directory {d} is not writable")
        return
    if d.exists():
        yield Finding(path, value, f"{d} is not a directory")
    elif _creatable(d) is not None:
        yield Finding(path, value, f"directory {d} does not exist; it will be made", problem=False)
    else:
        yield Finding(path, value, f"directory {d} does not exist and cannot be made")


def _database(path: KeyPath, value: str) -> Iterator[Finding]:
    db = Path(value)
    yield from _directory(path, value, str(db.parent))
    if not db.exists():
        return
    if not db.is_file():
        yield Finding(path, value, "is not a file")
    elif not os.access(db, os.R_OK | os.W_OK):
        yield Finding(path, value, "cannot be read and written")
    elif db.stat().st_size:
        with db.open("rb") as fh:
            if fh.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                yield Finding(path, value, "is not an SQLite database")


def _endpoint_files(config: Config) -> Iterator[Finding]:
    from netanomd.daemon.httpserver import tls_context
    from netanomd.fsutil import read_token

    metrics = config.sinks.metrics
    where: KeyPath = ("sinks", "metrics")
    if metrics.token_file:
        try:
            read_token(metrics.token_file, "sinks.metrics.token_file")
        except NetanomError as exc:
            message = str(exc).removeprefix("sinks.metrics.token_file: ")
            yield Finding((*where, "token_file"), metrics.token_file, message)
    if metrics.tls_cert and metrics.tls_key:
        for key, name in (("tls_cert", metrics.tls_cert), ("tls_key", metrics.tls_key)):
            if not os.access(name, os.R_OK) or not os.path.isfile(name):
                yield Finding((*where, key), name, "no such file, or it cannot be read")
                return
        try:
            tls_context(metrics.tls_cert, metrics.tls_key)
        except NetanomError as exc:
            message = str(exc).removeprefix("sinks.metrics.tls_cert/tls_key: ")
            yield Finding((*where, "tls_cert"), metrics.tls_cert, message)
