"""Where each configuration value came from, and the problems found, one line each.

Owns :class:`ConfigValidationError` (every problem at once), the origins a key path can have
(``file:line``, ``env NAME``, ``--set key=value``, a command-line option) and
:func:`format_path` (``("sources", 1, "path")`` -> ``sources[1].path``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from netanomd.errors import ConfigError

__all__ = ["ConfigValidationError", "KeyPath", "Origin", "Origins", "Problem", "format_path"]

PathKey = str | int
KeyPath = tuple[PathKey, ...]


class ConfigValidationError(ConfigError):
    """Invalid configuration; :attr:`problems` holds one line per problem (also the message)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        n = len(self.problems)
        head = f"invalid configuration ({n} problem{'s' if n != 1 else ''}):"
        super().__init__("\n".join([head, *self.problems]))


def format_path(path: KeyPath) -> str:
    """``("sources", 1, "path")`` -> ``sources[1].path``."""
    out = ""
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out += f".{key}" if out else str(key)
    return out or "(top level)"


#: Layers in the order they apply (and problems are listed).
_RANK = {"file": 0, "env": 1, "set": 2, "option": 3}


@dataclass(frozen=True)
class Origin:
    """Where a value came from: a file line, an environment variable, a ``--set`` item, or a
    command-line option (``where`` is then the option as typed, e.g. ``--es-namespace 'a b'``)."""

    kind: Literal["file", "env", "set", "option"]
    where: str
    line: int | None = None
    order: int = 0  # of env variables, --set items and options, for sorting

    def describe(self) -> str:
        if self.kind == "file":
            return f"{self.where}:{self.line}" if self.line else self.where
        if self.kind == "env":
            return f"env {self.where}"
        if self.kind == "set":
            return f"--set {self.where}"
        return self.where


@dataclass(frozen=True)
class Problem:
    origin: Origin | None
    path: KeyPath
    message: str

    def sort_key(self) -> tuple[int, int, str]:
        if self.origin is None:
            return len(_RANK), 0, format_path(self.path)
        return (
            _RANK[self.origin.kind],
            self.origin.line or self.origin.order,
            format_path(self.path),
        )

    def render(self) -> str:
        where = self.origin.describe() if self.origin else "defaults"
        if not self.path:
            return f"{where}: {self.message}"
        return f"{where}: {format_path(self.path)}: {self.message}"


class Origins:
    """Which layer set each key path."""

    def __init__(self) -> None:
        self._by_path: dict[KeyPath, Origin] = {}

    def set(self, path: KeyPath, origin: Origin) -> None:
        n = len(path)
        for p in [p for p in self._by_path if len(p) > n and p[:n] == path]:
            del self._by_path[p]
        self._by_path[path] = origin

    def find(self, path: KeyPath) -> Origin | None:
        """The origin of ``path``; else of its closest descendant (an override of ``a.b.c``
        creates ``a.b`` when it did not exist); else of its closest ancestor."""
        if path in self._by_path:
            return self._by_path[path]
        n = len(path)
        below = sorted((p for p in self._by_path if len(p) > n and p[:n] == path), key=len)
        if below:
            return self._by_path[below[0]]
        for m in range(n - 1, -1, -1):
            origin = self._by_path.get(path[:m])
            if origin is not None:
                return origin
        return None
