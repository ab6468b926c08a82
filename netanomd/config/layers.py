"""The layers of the configuration data: defaults < file < environment < ``--set`` < options.

Owns the defaults as data (from the schema), merging a layer onto another, the spelling of
overrides (``NETANOMD_<SECTION>__<KEY>`` variables, ``--set key.path=value`` items, and
:class:`Option`, a command-line option that sets one key), and setting a value at a key path.
"""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from netanomd.config.masking import MASK
from netanomd.config.problems import KeyPath, format_path
from netanomd.config.schema import SCHEMA, resolve

__all__ = [
    "ENV_PREFIX",
    "Option",
    "defaults",
    "env_overrides",
    "fill_defaults",
    "merge",
    "parse_set_path",
    "parse_value",
    "set_path",
]

ENV_PREFIX = "NETANOMD_"


@dataclass(frozen=True)
class Option:
    """A command-line option that sets one key, applied after ``--set``: the commands'
    options (``netanomd es setup --url``, ``netanomd score --es-namespace``) go through the
    same validation as the daemon's file. ``value`` is already typed (``None``: not given)."""

    flag: str
    key: str
    value: Any

    def path(self) -> KeyPath:
        parsed = parse_set_path(self.key)
        if parsed is None:
            raise ValueError(f"{self.flag}: {self.key!r} is not a key path")
        return parsed

    def describe(self, secret: bool) -> str:
        """The option as typed (``--es-namespace 'a b'``), a secret value masked."""
        values = self.value if isinstance(self.value, list | tuple) else [self.value]
        shown = [MASK if secret else shlex.quote(str(v)) for v in values]
        return " ".join([self.flag, *shown])


def fill_defaults(schema: Mapping[str, Any], value: Any) -> None:
    """Add the schema's defaults for missing keys, in place (source items by their type)."""
    schema = resolve(schema)
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                fill_defaults(sub, value[key])
        for branch in schema.get("allOf", ()):
            const = branch.get("if", {}).get("properties", {}).get("type", {}).get("const")
            if const is not None and value.get("type") == const:
                fill_defaults(branch["then"], value)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            fill_defaults(schema["items"], item)


def defaults() -> dict[str, Any]:
    """The defaults, except that source items stay bare (``{"type": "zeek_ws"}``): their
    defaults depend on a type that later layers may change, so they are filled last."""
    data: dict[str, Any] = {}
    fill_defaults(SCHEMA, data)
    data["sources"] = copy.deepcopy(SCHEMA["properties"]["sources"]["default"])
    return data


def merge(base: dict[str, Any], over: Mapping[Any, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: mappings merge key by key, anything else replaces."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def parse_value(text: str) -> Any:
    """A YAML scalar (``true``, ``5``, ``1.5``, ``null``, ``'quoted'``) or flow collection
    (``[a, b]``); anything else stays the literal text."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, list | dict):
        return value if text.lstrip().startswith(("[", "{")) else text
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return text  # dates, binary, sets: keep what was typed


_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[[0-9]+\])*)")


def parse_set_path(text: str) -> KeyPath | None:
    """``sources[1].path`` or ``sources.1.path`` -> ``("sources", 1, "path")``; None when
    malformed."""
    path: list[str | int] = []
    for part in text.split("."):
        m = _SEGMENT.fullmatch(part)
        if m is None:
            return None
        name = m.group(1)
        path.append(int(name) if name.isdigit() else name)
        path.extend(int(i) for i in re.findall(r"\[([0-9]+)\]", m.group(2)))
    return tuple(path)


def set_path(data: dict[str, Any], path: KeyPath, value: Any) -> str | None:
    """Set ``path`` in ``data``, creating mappings on the way (a list index equal to the
    length appends). Returns why it cannot, or None."""
    node: Any = data
    for i, key in enumerate(path):
        last = i == len(path) - 1
        here = format_path(path[:i])
        if isinstance(key, int):
            if not isinstance(node, list):
                return f"{here} is not a list, cannot index it with [{key}]"
            if key > len(node):
                return (
                    f"{here} has {len(node)} item(s); [{key}] is out of range "
                    f"(use [{len(node)}] to add one)"
                )
            if key == len(node):
                node.append(None)
        elif not isinstance(node, dict):
            return f"{here} is not a mapping, cannot set {key!r} in it"
        if last:
            node[key] = value
        else:
            child = node[key] if isinstance(key, int) or key in node else None
            if child is None:
                child = [] if isinstance(path[i + 1], int) else {}
                node[key] = child
            node = child
    return None


def env_overrides(env: Mapping[str, str]) -> Iterator[tuple[str, KeyPath | None, str]]:
    """(variable, key path or None if malformed, raw value) for the config variables."""
    top = set(SCHEMA["properties"])
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name.removeprefix(ENV_PREFIX).lower()
        if "__" not in rest and rest not in top:
            continue  # another NETANOMD_ variable (NETANOMD_ES_PASSWORD, ...)
        parts = rest.split("__")
        if not all(parts):
            yield name, None, env[name]
            continue
        yield name, tuple(int(p) if p.isdigit() else p for p in parts), env[name]
