"""How netanomd writes its own files: with an explicit mode, never trusting the umask.

Alerts, spooled alert documents, offsets, quarantined flows and models describe the monitored
network; they are readable by the service's user and group only (``0640``), whatever umask the
process was started with. Replacements are atomic (temporary file, fsync, rename).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

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
