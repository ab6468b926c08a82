"""How netanomd writes its own files (with an explicit mode, never trusting the umask), and
reads the secret files an operator gives it (:func:`read_token`).

Alerts, spooled alert documents, offsets, quarantined flows and models describe the monitored
network; they are readable by the service's user and group only (``0640``), whatever umask the
process was started with. Replacements are atomic (temporary file, fsync, rename).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from netanomd.errors import ConfigError

#: Mode of every file netanomd creates.
FILE_MODE = 0o640


def open_append(path: str | os.PathLike[str]) -> BinaryIO:
    """Open for appending bytes, creating the file with :data:`FILE_MODE`."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # also for a file an older version created with the umask
    return os.fdopen(fd, "ab")


def write_atomic(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically; the file has :data:`FILE_MODE`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def restrict(path: str | os.PathLike[str]) -> None:
    """Give an existing file :data:`FILE_MODE` (for files another library creates, e.g. SQLite)."""
    os.chmod(path, FILE_MODE)


def read_token(path: str, key: str) -> str:
    """The bearer token in ``path`` (surrounding whitespace dropped; never logged). Errors
    name ``key``, the setting or option that gave the path."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc}") from None
    if not token or any(c.isspace() for c in token):
        raise ConfigError(
            f"{key}: {path} must hold one token (no spaces), not "
            + ("nothing" if not token else "several words")
        )
    return token
